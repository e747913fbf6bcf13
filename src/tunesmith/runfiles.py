"""The run folder's own file formats, one frozen record each: plan.json (Plan), data/summary.json (DataReport,
FileReport), manifest.json (Manifest), metrics.jsonl (LogRow) and eval/summary.json (records.EvalReport, whose
reader keeps the older summaries' verdicts). rundir.RunDir reads and writes each one through
these; each `from_json` also reads what older tunesmith versions wrote (a missing newer field takes its default).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, fields
from collections.abc import Callable
from typing import Any

from tunesmith.records import (SKIP_KINDS, Difference, EvalReport, EvalSettings, JudgeSummary, ModelEval, PreparedData,
                               Retention, RetentionModel, Skip, load_fields)


@dataclass(frozen=True)
class Plan:
    """plan.json: the plan as printed, and the step counts the training summary is measured against."""

    lines: tuple[str, ...]
    steps_per_epoch: int
    total_steps: int
    # The batch settings training ran with (the plan may fit them to the machine's memory); a resumed run keeps
    # them. None in run folders written before the fit.
    batch_size: int | None = None
    grad_accum: int | None = None
    gradient_checkpointing: bool | None = None
    # The eval's new-token limit where the plan raised it (answers that think: plan.thinking_room), so that
    # `tunesmith eval` later generates as the run's own eval did; None where it is the config's.
    eval_max_new_tokens: int | None = None

    @classmethod
    def of(cls, lines: list[str], steps: tuple[int, int], cfg: Any, eval_max_new_tokens: int | None = None) -> Plan:
        t = cfg.train
        return cls(tuple(lines), *steps, t.batch_size, t.grad_accum, t.gradient_checkpointing, eval_max_new_tokens)

    def apply(self, cfg: Any) -> Any:
        """`cfg` (a RunConfig) with this plan's batch settings."""
        knobs = {"batch_size": self.batch_size, "grad_accum": self.grad_accum,
                 "gradient_checkpointing": self.gradient_checkpointing}
        return cfg.model_copy(update={"train": cfg.train.model_copy(update=knobs)})

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "lines": list(self.lines)}

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "a plan") -> Plan:
        data = load_fields(cls, obj, where)
        return cls(**{**data, "lines": tuple(data["lines"])})


@dataclass(frozen=True)
class FileReport:
    """One data file's line in data/summary.json."""

    path: str
    format: str
    encoding: str
    rows_read: int
    usable: int
    skipped: int


@dataclass(frozen=True)
class DataReport:
    """data/summary.json: rows_read = train + eval + skipped (unreadable) + duplicates + not_trained (template)."""

    rows_read: int
    train: int
    eval: int
    duplicates: int
    files: tuple[FileReport, ...]
    skipped: tuple[Skip, ...]
    not_trained: tuple[Skip, ...] = ()  # absent from run folders written before it was counted
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, data: PreparedData) -> DataReport:
        files = tuple(FileReport(str(f.path), f.format, f.encoding, f.rows_read, len(f.conversations), len(f.skipped))
                      for f in data.files)
        return cls(data.rows_read, len(data.train), len(data.eval), len(data.duplicates), files, data.skipped,
                   data.dropped, data.warnings)

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        # One table row per kind; run folders written before reading skips had kinds group by their reason.
        return dict(Counter(SKIP_KINDS[s.kind] if s.kind != "unreadable" else s.reason
                            for s in self.skipped).most_common())

    @property
    def not_trained_by_reason(self) -> dict[str, int]:
        # One table row per kind ("3036 tokens, longer than template.max_length=384: dropped" is a too_long);
        # older run folders stored no kind: their reason is grouped without its token count.
        return dict(Counter(SKIP_KINDS[s.kind] if s.kind != "unreadable"
                            else re.sub(r"^\d+ tokens, ", "", s.reason).split(":")[0]
                            for s in self.not_trained).most_common())

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)  # the by-reason counts are derived; saved for people who read the JSON
        return {**out, "skipped_by_reason": self.skipped_by_reason,
                "not_trained_by_reason": self.not_trained_by_reason}

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "a data report") -> DataReport:
        data = load_fields(cls, obj, where)
        skips = {k: tuple(Skip(**s) for s in data.get(k, ())) for k in ("skipped", "not_trained")}
        return cls(data["rows_read"], data["train"], data["eval"], data["duplicates"],
                   tuple(FileReport(**load_fields(FileReport, f, where)) for f in data["files"]),
                   skips["skipped"], skips["not_trained"], tuple(data.get("warnings", ())))


@dataclass(frozen=True)
class Manifest:
    """manifest.json: what a run's numbers were made with, and the sha256 of every data file read."""

    tunesmith_git_commit: str | None
    seed: int
    data_seed: int
    model: str
    model_resolved: str
    data_files: dict[str, str]  # path -> sha256 (a resumed run must read the same bytes)
    packages: dict[str, str | None]
    python: str
    platform: str
    hardware: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "a manifest") -> Manifest:
        return cls(**load_fields(cls, obj, where))


@dataclass(frozen=True)
class LogRow:
    """One line of metrics.jsonl: a training log (loss ...) or an evaluation (eval_loss ...) at a step."""

    step: int
    epoch: float = 0.0
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    mean_token_accuracy: float | None = None
    eval_mean_token_accuracy: float | None = None
    tokens_per_s: float | None = None
    peak_memory_mb: float | None = None
    rewards_accuracies: float | None = None  # preference objectives (TRL's rewards/accuracies): chosen won
    rewards_margins: float | None = None
    eval_rewards_accuracies: float | None = None
    eval_rewards_margins: float | None = None
    reward: float | None = None  # grpo: the mean reward of the answers written in the step (TRL's reward)
    reward_std: float | None = None
    eval_reward: float | None = None  # grpo: the mean reward of answers written to the held-out prompts
    rewards: dict[str, float] | None = None  # grpo: each reward's mean apart (TRL's rewards/<name>/mean)
    eval_rewards: dict[str, float] | None = None
    logged_at: float | None = None  # Unix time of the line: the UI's ETA (steps per second of wall time)

    @classmethod
    def of(cls, step: int, epoch: float, logs: dict[str, Any]) -> LogRow:
        """From the Trainer's log dict ("rewards/margins" read as rewards_margins; grpo's "rewards/NAME/mean" as
        rewards[NAME]); keys tunesmith does not keep are left out."""
        apart = {prefix: {k[len(prefix) + 1:-5]: float(v) for k, v in logs.items()
                          if k.startswith(prefix + "/") and k.endswith("/mean")} or None
                 for prefix in ("rewards", "eval_rewards")}
        logs = {k.replace("/", "_"): v for k, v in logs.items()}
        return cls(step, epoch, **{f.name: logs[f.name] for f in fields(cls)[2:] if f.name in logs} | apart)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "a metrics row") -> LogRow:
        return cls(**load_fields(cls, obj, where))


@dataclass(frozen=True)
class WrittenAnswer:
    """One line of answers.jsonl (train.objective grpo): an answer the model wrote in a step, to a training prompt
    or (held_out) to an eval prompt, with each reward's score of it (None where a reward does not apply)."""

    step: int
    prompt: str
    answer: str
    rewards: dict[str, float | None]
    held_out: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "an answers row") -> WrittenAnswer:
        return cls(**load_fields(cls, obj, where))


# eval/summary.json: an EvalReport without its generations (those are eval/<model>.jsonl, see rundir.EvalDir).

def retention_json(ret: Retention) -> dict[str, Any]:
    return {"passages": [list(p) for p in ret.passages], "prompts": [list(p) for p in ret.prompts],
            "models": [{"label": m.label, "text_nll": [list(x) for x in m.text_nll],
                        "answer_nll": [list(x) for x in m.answer_nll], "answers": list(m.answers)}
                       for m in ret.models],
            "differences": {label: {k: asdict(d) for k, d in ds.items()} for label, ds in ret.differences.items()}}


def read_retention(obj: dict[str, Any], where: str = "an eval summary") -> Retention:
    data = load_fields(Retention, obj, where)
    models = tuple(RetentionModel(m["label"], tuple((float(s), int(n)) for s, n in m["text_nll"]),
                                  tuple((float(s), int(n)) for s, n in m["answer_nll"]), tuple(m["answers"]))
                   for m in data["models"])
    diffs = {label: {k: Difference(**d) for k, d in ds.items()} for label, ds in data["differences"].items()}
    return Retention(tuple((i, lang) for i, lang in data["passages"]),
                     tuple((i, lang) for i, lang in data["prompts"]), models, diffs)


def eval_summary_json(report: EvalReport) -> dict[str, Any]:
    return {"lang": report.lang, "bleu_tokenize": report.bleu_tokenize, "embedder": report.embedder,
            "settings": report.settings.to_json(), "judge": report.judge and report.judge.to_json(),
            "retention": report.retention and retention_json(report.retention),
            "models": {m.label: {"spec": m.spec, "eval_loss": m.eval_loss, "metrics": m.metrics,
                                 "rows": list(m.rows)} for m in report.models},
            "differences": {label: {k: {**asdict(d), "verdict": d.verdict} for k, d in diffs.items()}
                            for label, diffs in report.differences.items()}}


def read_eval_summary(obj: dict[str, Any], generations: Callable[[str], Any],
                      where: str = "an eval summary") -> EvalReport:
    """`generations(label)` gives a model's Generation rows (read from its own file)."""
    data = load_fields(EvalReport, obj, where)
    models = tuple(ModelEval(label, m["spec"], m["metrics"], tuple(m["rows"]), tuple(generations(label)),
                             m["eval_loss"]) for label, m in data["models"].items())
    # Older summaries have no direction per difference: take it from the stored verdict.
    diffs = {label: {k: Difference(d["mean"], d["low"], d["high"], d["rows"],
                                   d.get("direction", _direction_of(d["verdict"], d["low"] > 0)))
                     for k, d in ds.items()} for label, ds in data["differences"].items()}
    return EvalReport(models, diffs, data["lang"], data["bleu_tokenize"], data["embedder"],
                      EvalSettings.from_json(data["settings"], where),
                      JudgeSummary.from_json(data["judge"], where) if data.get("judge") else None,
                      read_retention(data["retention"], where) if data.get("retention") else None)


def _direction_of(verdict: str, up: bool) -> int:
    if verdict in ("higher", "lower"):
        return 0
    return -1 if (verdict == "better") != up and verdict != "no clear difference" else 1
