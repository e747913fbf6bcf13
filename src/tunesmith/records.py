"""The nouns a record becomes on its way from file to report; one small frozen dataclass per stage.

path --readers--> RawRecord --formats--> Conversation --prepare--> PreparedData
     --template--> Example --train--> TrainingSummary --evaluate--> EvalReport --report--> report.html
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
    """Deduplicated, split conversations; the counts add up: read = train + eval + skipped + duplicates + dropped.

    `dropped` is filled by the render step (template.encode_all): rows that were read and split but cannot be
    trained or evaluated as rendered (too long for max_length, nothing supervised). They leave train/eval, so
    every count printed from one PreparedData (plan, data/summary.json, report) is the same.
    """

    train: tuple[Conversation, ...]
    eval: tuple[Conversation, ...]
    files: tuple[ReadResult, ...]
    duplicates: tuple[Skip, ...]  # each removed copy, with the location of the conversation it repeats
    warnings: tuple[str, ...] = ()
    dropped: tuple[Skip, ...] = ()  # not trained or evaluated after templating, with the reason

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
class ModelEval:
    """One model's generations on the eval rows and its scores (keys: tunesmith.metrics.METRICS)."""

    label: str  # "base" (the model training started from), "tuned", or a name given to `eval --models`
    spec: str  # what was loaded, for the report
    metrics: dict[str, float]  # corpus values
    rows: tuple[dict[str, float], ...] = field(repr=False, default=())  # per-row values, in eval-row order
    generations: tuple[Generation, ...] = field(repr=False, default=())
    eval_loss: float | None = None  # the trainer's eval loss for this model, where training measured it


@dataclass(frozen=True)
class Scores:
    """Corpus values and per-row values of the same metric keys (see METRICS); corpus adds 'perplexity'."""

    corpus: dict[str, float]
    rows: list[dict[str, float]]
    lang: str
    bleu_tokenize: str  # the sacrebleu tokenizer BLEU used, for the report


@dataclass(frozen=True)
class Difference:
    """tuned - base on the mean of a per-row metric, with a 95% paired bootstrap interval."""

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
class TrainResult:
    model: Any  # the trained model (PEFT-wrapped for LoRA), best weights loaded when train.load_best
    seconds: float
    train_tokens: int


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
class Preference:
    """One row judged in both orders. `picks` are per order (base shown first, tuned shown first)."""

    source: str
    picks: tuple[str, str]  # each 'base' | 'tuned' | 'tie' | 'unparsed'
    replies: tuple[str, str] = field(repr=False)  # the judge's words, for anyone who wants to check it

    @property
    def winner(self) -> str:
        return self.picks[0] if self.picks[0] == self.picks[1] and self.picks[0] in ("base", "tuned") else "tie"

    @property
    def score(self) -> int:
        return {"tuned": 1, "base": -1, "tie": 0}[self.winner]


@dataclass(frozen=True)
class JudgeResult:
    """Per-row preferences and tuned-win share minus base-win share, with a paired bootstrap interval."""

    model: str
    rows: tuple[Preference, ...]
    difference: Difference  # mean of +1 (tuned) / 0 / -1 (base) per row

    @property
    def tuned_wins(self) -> int:
        return sum(r.winner == "tuned" for r in self.rows)

    @property
    def base_wins(self) -> int:
        return sum(r.winner == "base" for r in self.rows)

    @property
    def ties(self) -> int:
        return sum(r.winner == "tie" for r in self.rows)

    @property
    def unparsed(self) -> int:
        """Replies (two per row) with no readable verdict."""
        return sum(p == "unparsed" for r in self.rows for p in r.picks)

    def summary(self) -> dict[str, Any]:
        d = self.difference
        return {"judge": self.model, "rows": len(self.rows), "tuned_wins": self.tuned_wins,
                "base_wins": self.base_wins, "ties": self.ties, "unparsed_replies": self.unparsed,
                "net_win_share": d.mean, "low": d.low, "high": d.high, "verdict": d.verdict}


@dataclass(frozen=True)
class Comparison:
    models: tuple[str, ...]
    templates: tuple[str, ...]  # per model: "own chat template" or the fallback used
    prompts: tuple[Conversation, ...]
    outputs: tuple[tuple[str, ...], ...]  # per prompt, one generation per model
    stopped: tuple[tuple[bool, ...], ...]
    skipped: tuple[Skip, ...] = ()


@dataclass(frozen=True)
class EvalReport:
    """Several models on the same rows; each later model compared with the first (the base)."""

    models: tuple[ModelEval, ...]
    differences: dict[str, dict[str, Difference]]  # label -> metric -> (label - first model), paired bootstrap
    verdicts: dict[str, dict[str, str]]  # label -> metric -> better / worse / higher / lower / no clear difference
    lang: str  # language of the references: decides character- or word-level BLEU and ROUGE-L
    bleu_tokenize: str
    embedder: str | None
    settings: dict[str, Any] = field(default_factory=dict)  # generation settings the rows were made with
    judge: dict[str, Any] | None = None  # the LLM judge's summary, when one was asked

    def model(self, label: str) -> ModelEval:
        return next(m for m in self.models if m.label == label)


@dataclass(frozen=True)
class RunSummary:
    """What `tunesmith train` prints at the end."""

    run_dir: Path
    report: Path
    evaluation: EvalReport
    training: TrainingSummary
    train_seconds: float
    wall_seconds: float
