"""The nouns a record becomes on its way from file to report; one small frozen dataclass per stage.

path --readers--> RawRecord --formats--> Conversation --prepare--> PreparedData
     --template--> Example --train--> TrainingSummary --evaluate--> EvalReport --report--> report.html

Only the main path's nouns live here (and SKIP_KINDS, the glossary of Skip). A type with one owner lives with it:
the run folder's files in runfiles.py (Plan, DataReport, Manifest, LogRow, and eval/summary.json's JSON),
TrainingSummary in train.py, Reply in chat.py, ExportResult in export.py, Comparison in compare.py, Scores in
metrics.py, the judge's rows in judge.py, Passage and SynthRow in synth/, RunSummary in pipeline.py.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.format_names import SEGMENT

IGNORE = -100  # the label of a token the loss skips (transformers' and PyTorch's ignore_index)


def load_fields(cls: type, obj: Any, file: str) -> dict[str, Any]:  # file: where it was read, for the message
    """The keys of `obj` that `cls` knows; a missing required key means another (older) tunesmith wrote it."""
    need = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in need if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise TunesmithError(f"no {', '.join(missing)}: it was written by an older tunesmith (or damaged)",
                             where=file, fix="re-run the command that writes it; for a whole run, train it again "
                                             "with --overwrite")
    return {f.name: obj[f.name] for f in fields(cls) if f.name in obj}


@dataclass(frozen=True)
class RawRecord:
    """One row as read from a file, before its format is known. `location` is 'file:line' or 'file[index]'."""

    location: str
    fields: Any


@dataclass(frozen=True)
class ToolCall:
    """One function call an assistant turn makes: the function's name and its arguments, a JSON object as text (as
    the file wrote it, re-serialised compactly: records stay frozen and comparable)."""

    name: str
    arguments: str

    @classmethod
    def of(cls, name: str, arguments: dict[str, Any]) -> ToolCall:
        """A call with its arguments in the one text form records keep (a TypeError where JSON has no form for one
        of them: a set, bytes)."""
        return cls(name, compact_json(arguments))


def compact_json(obj: Any) -> str:
    """JSON as records keep it: one line, key order kept, text as written (not escaped to ASCII)."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


@dataclass(frozen=True)
class Message:
    role: str  # system, user, assistant or tool (a tool's output); "text" (a plain-text row), "segment" (a part)
    content: str
    train: bool = True  # an assistant turn or segment trained on; False: OpenAI's "weight": 0, a segment's label false
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn's function calls (its content may then be empty)
    reasoning: str | None = None  # an assistant turn's thinking before its answer (thinking.py), None: it has none


@dataclass(frozen=True)
class Conversation:
    """A validated conversation: optional system turn, then user/assistant turns, ending on an assistant turn (an
    assistant turn that calls tools is followed by their outputs, "tool" turns, then the assistant again); or a
    plain-text row (one "text" message) or a segments row ("segment" parts): template.is_text / is_segments."""

    messages: tuple[Message, ...]
    source: str  # where it came from, 'file:line' or 'file[index]'
    group: str | None = None  # the row's data.group_by value, when one is named
    tools: str | None = None  # the functions the row offers the model: a JSON list of tool schemas, as text

    @property
    def calls_tools(self) -> bool:
        """A function-calling row: it offers tools, or its turns call them."""
        return self.tools is not None or any(m.tool_calls or m.role == "tool" for m in self.messages)

    @property
    def untemplated(self) -> bool:
        """A plain-text row or a segments row: trained as written, without a chat template."""
        return bool(self.messages) and self.messages[0].role in ("text", SEGMENT)

    def to_json(self) -> dict[str, Any]:
        return {"messages": [{"role": m.role, "content": m.content, **({} if m.train else {"weight": 0}),
                              **({"tool_calls": [{"name": c.name, "arguments": c.arguments} for c in m.tool_calls]}
                                 if m.tool_calls else {}),
                              **({"reasoning": m.reasoning} if m.reasoning is not None else {})}
                             for m in self.messages],
                "source": self.source, **({"group": self.group} if self.group is not None else {}),
                **({"tools": self.tools} if self.tools is not None else {})}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Conversation:
        return cls(tuple(Message(m["role"], m["content"], m.get("weight", 1) != 0,
                                 tuple(ToolCall(c["name"], c["arguments"]) for c in m.get("tool_calls", ())),
                                 m.get("reasoning"))
                         for m in obj["messages"]),
                   obj.get("source", ""), obj.get("group"), obj.get("tools"))


# The skip kinds: kind -> what the rows of that kind have in common (a table row of the report, a line of the plan)
SKIP_KINDS = {
    # reading (data/readers.py, data/formats.py)
    "bad_json": "not valid JSON",
    "ragged": "a different number of fields than the header",
    "no_header": "a value in a sheet's column that has no header",
    "wrong_format": "not in the format of the other rows",
    "malformed": "a field of the wrong type for the format",
    "not_text": "a turn whose content is not text",
    "tool_call": "a malformed function call or tool schema",
    "empty_turn": "a turn with no text",
    "control_char": "a control character in the text",
    "turn_order": "turns that do not alternate user, assistant",
    "no_answer": "no assistant turn at the end",
    "no_prompt": "no prompt",
    "pair_side_missing": "a preference row without its chosen or its rejected answer",
    "pair_calls": "a preference row whose turns call functions (not read for preference training)",
    "chosen_is_rejected": "the same text chosen and rejected",
    "unreadable": "could not be read as a conversation",  # run folders written before the kinds above
    # preparing (data/prepare.py)
    "duplicate": "duplicate of an earlier row",
    "row_limit": "left out by data.max_rows",
    # templating (template.py)
    "too_long": "longer than template.max_length",
    "answer_too_long": "the answer alone is longer than template.max_length",
    "no_supervision": "nothing to learn (no assistant text after templating)",
    "weight_unmatched": "a turn of weight 0 the chat template's marks cannot place",
}


@dataclass(frozen=True)
class Skip:
    """A row that was not used, and why. Skips are always counted and reported, never silent."""

    location: str
    reason: str
    kind: str = "unreadable"  # what went wrong, for grouping and the fix: one of SKIP_KINDS
    tokens: int | None = None  # the row's length in tokens, where the template measured it


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
    unused: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)  # field -> (rows, a few values)
    text_parts: int = 0  # turns of the usable conversations whose content was a list of text parts, joined
    set_aside: dict[str, int] = field(default_factory=dict)  # what an app export's reader passed over, by what
    described_by: str = ""  # where the file's columns and roles came from besides the config (dataset_info.json)


@dataclass(frozen=True)
class PreparedData:
    """Deduplicated, split conversations; the counts add up: read = train + eval + skipped + duplicates + dropped.

    `dropped` holds rows that were read and split but are not trained or evaluated: over data.max_rows (prepare),
    or unusable as rendered (too long for max_length, nothing supervised: pipeline.render). They leave train/eval, so
    every count printed from one PreparedData (plan, data/summary.json, report) is the same.
    """

    train: tuple[Conversation, ...]
    eval: tuple[Conversation, ...]
    files: tuple[ReadResult, ...]
    duplicates: tuple[Skip, ...]  # each removed copy, with the location of the conversation it repeats
    warnings: tuple[str, ...] = ()
    dropped: tuple[Skip, ...] = ()  # not trained or evaluated (row limit, template), with the kind and reason

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
        return sum(1 for x in self.labels if x != IGNORE)


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
class Rendered:
    """The template stage's result for a set of conversations (template.render_dataset)."""

    convs: tuple[Conversation, ...]  # as the template renders them (a rejected system turn merged)
    examples: tuple[Example, ...]  # one per usable row, in order
    skipped: tuple[Skip, ...]  # rows it cannot train on, with their kind and length
    checks: TemplateCheck
    notices: tuple[str, ...]
    max_length: int  # the max_length used: the configured one, or the one `auto` chose


@dataclass(frozen=True)
class Generation:
    """One eval row: what the model was asked, what the data says, what the model wrote."""

    source: str
    prompt: str
    reference: str
    generation: str
    stopped: bool = True  # ended with an end-of-turn token, rather than running into max_new_tokens

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "a generation") -> Generation:
        return cls(**load_fields(cls, obj, where))


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
class Difference:
    """tuned - base on the mean of a per-row metric, with a 95% paired bootstrap interval."""

    mean: float
    low: float
    high: float
    rows: int
    direction: int = 1  # +1: higher is better (chrF); -1: lower is better (nll); 0: neither (length)

    @property
    def verdict(self) -> str:
        """better / worse in the metric's direction (higher / lower where it has none), when the interval
        excludes zero."""
        if self.low <= 0 <= self.high:
            return "no clear difference"
        up = self.low > 0
        if self.direction == 0:
            return "higher" if up else "lower"
        return "better" if up == (self.direction > 0) else "worse"


@dataclass(frozen=True)
class JudgeSummary:
    """The judge's part of eval/summary.json: counts and the net win share with its interval."""

    judge: str
    rows: int
    tuned_wins: int
    base_wins: int
    ties: int
    unparsed_replies: int
    net_win_share: float
    low: float
    high: float
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "the judge's summary") -> JudgeSummary:
        return cls(**load_fields(cls, obj, where))


@dataclass(frozen=True)
class EvalSettings:
    """eval/settings.json: how the generations on disk were made; they are only continued with the same ones."""

    max_rows: int
    max_new_tokens: int
    temperature: float
    top_p: float
    repetition_penalty: float
    seed: int
    precision: str = "fp32"  # resolved (bf16, fp16, fp32); files written before it existed were made in fp32

    @classmethod
    def of(cls, ecfg: Any, precision: str) -> EvalSettings:
        """From an EvalConfig and the precision its `precision` setting resolved to on this machine."""
        return cls(**{f.name: getattr(ecfg, f.name) for f in fields(cls) if f.name != "precision"},
                   precision=precision)

    def changes(self, new: EvalSettings) -> list[str]:
        return [f"{f.name} {getattr(self, f.name)} -> {getattr(new, f.name)}" for f in fields(self)
                if getattr(self, f.name) != getattr(new, f.name)]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "eval settings") -> EvalSettings:
        return cls(**load_fields(cls, obj, where))


@dataclass(frozen=True)
class RetentionModel:
    """One model on the general-domain retention set (tunesmith/retention_data), outside the task it was tuned
    for: the likelihood of plain passages, of reference answers to general prompts, and its own answers."""

    label: str
    text_nll: tuple[tuple[float, int], ...]  # per passage: (sum of nll, tokens scored)
    answer_nll: tuple[tuple[float, int], ...]  # per general prompt: the reference answer's (sum of nll, tokens)
    answers: tuple[str, ...]  # greedy answers to the general prompts, in prompt order


@dataclass(frozen=True)
class Retention:
    """Base against every later model on the retention set. Differences are tuned - base: of the token-weighted
    nll (so a perplexity ratio) for text and answers, of the corpus chrF for the answers."""

    passages: tuple[tuple[str, str], ...]  # (id, language)
    prompts: tuple[tuple[str, str], ...]  # (id, language)
    models: tuple[RetentionModel, ...]
    differences: dict[str, dict[str, Difference]]  # label -> measure (retention.MEASURES) -> difference

    def model(self, label: str) -> RetentionModel:
        return next(m for m in self.models if m.label == label)


@dataclass(frozen=True)
class EvalReport:
    """Several models on the same rows; each later model compared with the first (the base).

    Saved as eval/summary.json without the generations, which live in eval/<model>.jsonl (see rundir.EvalDir).
    """

    models: tuple[ModelEval, ...]
    differences: dict[str, dict[str, Difference]]  # label -> metric -> (label - first model), paired bootstrap
    lang: str  # language of the references: decides character- or word-level BLEU and ROUGE-L
    bleu_tokenize: str
    embedder: str | None
    settings: EvalSettings
    judge: JudgeSummary | None = None  # the LLM judge's summary, when one was asked
    retention: Retention | None = None  # the general-domain check (eval.retention), when it ran

    def model(self, label: str) -> ModelEval:
        return next(m for m in self.models if m.label == label)

    @property
    def verdicts(self) -> dict[str, dict[str, str]]:
        """label -> metric -> better / worse / higher / lower / no clear difference."""
        return {label: {k: d.verdict for k, d in diffs.items()} for label, diffs in self.differences.items()}
