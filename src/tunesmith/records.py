"""The nouns a record becomes on its way from file to report; one small frozen dataclass per stage.

path --readers--> RawRecord --formats--> Conversation --prepare--> PreparedData
     --template--> Example --train--> TrainResult --evaluate--> EvalResult --report--> report.html
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class RawRecord:
    """One row as read from a file, before its format is known. `location` is 'file:line' or 'file[index]'."""

    location: str
    fields: Any


@dataclass(frozen=True)
class Message:
    role: str  # one of ROLES
    content: str


@dataclass(frozen=True)
class Conversation:
    """A validated conversation: optional system turn, then user/assistant turns, ending on an assistant turn."""

    messages: tuple[Message, ...]
    source: str  # where it came from, 'file:line' or 'file[index]'

    def to_json(self) -> dict[str, Any]:
        return {"messages": [{"role": m.role, "content": m.content} for m in self.messages],
                "source": self.source}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Conversation:
        return cls(tuple(Message(m["role"], m["content"]) for m in obj["messages"]), obj.get("source", ""))


@dataclass(frozen=True)
class Skip:
    """A row that was not used, and why. Skips are always counted and reported, never silent."""

    location: str
    reason: str


@dataclass(frozen=True)
class ReadResult:
    """What the readers and formats made of one data file."""

    path: Path
    encoding: str
    format: str
    conversations: tuple[Conversation, ...]
    skipped: tuple[Skip, ...]
    rows_read: int  # conversations' worth of rows: rows_read = len(conversations) + len(skipped)
    records: int = 0  # records as stored in the file (turns, for a flat turn list)
    evidence: dict[str, int] = field(default_factory=dict)  # how many rows fit each format
    roles: dict[str, str] = field(default_factory=dict)  # role name in the file -> role used


@dataclass(frozen=True)
class PreparedData:
    """Deduplicated, split conversations; the counts add up: read = train + eval + skipped + duplicates."""

    train: tuple[Conversation, ...]
    eval: tuple[Conversation, ...]
    files: tuple[ReadResult, ...]
    duplicates: tuple[Skip, ...]  # each removed copy, with the location of the conversation it repeats
    warnings: tuple[str, ...] = ()

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def skipped(self) -> tuple[Skip, ...]:
        return tuple(s for f in self.files for s in f.skipped)


@dataclass(frozen=True)
class Example:
    """One tokenised training row: labels are -100 outside the supervised (assistant) spans."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    source: str
    truncated: bool = False  # cut to template.max_length: the end of the answer is not learned

    @property
    def supervised_tokens(self) -> int:
        return sum(1 for x in self.labels if x != -100)


@dataclass(frozen=True)
class TemplateCheck:
    """What the render path did to a data set, checked before any training step."""

    rows: int
    share_min: float  # supervised tokens / all tokens, per row
    share_median: float
    zero_supervised: tuple[str, ...]  # sources of rows that would have taught nothing (skipped, never trained)
    end_of_turn_missing: tuple[str, ...]  # rows whose stop token is not supervised: the model would never stop
    parity_failures: tuple[str, ...]  # rows whose prompt tokens differ from the inference render
    dropped: tuple[Skip, ...] = ()  # rows not trained for other reasons (too long)

    @property
    def ok(self) -> bool:
        return not (self.zero_supervised or self.end_of_turn_missing or self.parity_failures)


@dataclass(frozen=True)
class Generation:
    """One eval row: what the model was asked, what the data says, what the model wrote."""

    source: str
    prompt: str
    reference: str
    generation: str
    stopped: bool = True  # ended with an end-of-turn token, rather than running into max_new_tokens


@dataclass(frozen=True)
class EvalResult:
    """Scores of one model (before or after training) on the held-out rows."""

    label: str  # "before" or "after"
    eval_loss: float | None
    metrics: dict[str, float]
    generations: tuple[Generation, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class Difference:
    """tuned - base on the mean sentence-level chrF, with a 95% paired bootstrap interval."""

    mean: float
    low: float
    high: float
    rows: int

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no clear difference"


@dataclass(frozen=True)
class TrainingSummary:
    """What the eval-loss curve says: where it was lowest, whether training stopped early, overfitting."""

    start_eval_loss: float  # the starting model (step 0)
    best_eval_loss: float
    best_step: int
    best_epoch: float
    last_eval_loss: float
    last_step: int
    stopped_early: bool  # fewer steps than planned: early stopping (patience) ended it
    overfitting: str | None  # a plain sentence with the numbers, when eval loss rose while train loss fell
    evals: tuple[tuple[int, float], ...] = ()  # (step, eval loss)


@dataclass(frozen=True)
class RunSummary:
    """What `tunesmith train` prints at the end."""

    run_dir: Path
    report: Path
    before: EvalResult
    after: EvalResult
    main_metric: str
    difference: Difference  # tuned - base, paired bootstrap; computed once for the terminal and the report
    training: TrainingSummary
    train_seconds: float
    wall_seconds: float
