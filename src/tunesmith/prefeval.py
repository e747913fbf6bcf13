"""Does the model now prefer what people chose? Preference accuracy on held-out pairs, base vs tuned.

For each held-out pair and each model: the mean log-probability per token of the chosen and of the rejected
answer given the prompt (rendered by pairs.render_pairs, scored by generation.per_row_nll: the eval path's own).
  accuracy  share of pairs whose chosen answer has the higher length-normalised log-probability (a tie counts 1/2)
  margin    mean of (chosen - rejected) in nats per token: how strongly it prefers, not only which
Each tuned-minus-base difference gets the paired bootstrap interval the other metrics use (metrics.paired_bootstrap).

    evaluate_preferences(run, cfg, say) -> PreferenceEval   (also written to eval/preference.json)
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tunesmith import rundir
from tunesmith.config import RunConfig
from tunesmith.data.preference import Pair
from tunesmith.diskio import read_json, read_jsonl, write_json
from tunesmith.generation import load_model, per_row_nll
from tunesmith.metrics import paired_bootstrap
from tunesmith.pairs import render_pairs
from tunesmith.records import Difference


@dataclass(frozen=True)
class PreferenceModel:
    label: str
    spec: str
    scores: tuple[tuple[float, float], ...]  # per pair: (chosen, rejected) mean log-prob per token

    @property
    def wins(self) -> list[float]:
        return [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in self.scores]

    @property
    def margins(self) -> list[float]:
        return [c - r for c, r in self.scores]

    @property
    def accuracy(self) -> float:
        return sum(self.wins) / len(self.scores) if self.scores else float("nan")

    @property
    def margin(self) -> float:
        return sum(self.margins) / len(self.scores) if self.scores else float("nan")

    def interval(self, which: str, seed: int = 0) -> Difference:
        """The model's own value with a 95% bootstrap interval (resampled against zero)."""
        values = self.wins if which == "accuracy" else self.margins
        return paired_bootstrap([0.0] * len(values), values, seed=seed)


@dataclass(frozen=True)
class PreferenceEval:
    sources: tuple[str, ...]  # the held-out pairs scored, in order
    models: tuple[PreferenceModel, ...]
    differences: dict[str, dict[str, Difference]]  # label -> accuracy / margin, minus the first model's
    skipped: int = 0  # held-out pairs the template could not render (too long)

    def to_json(self) -> dict[str, Any]:
        return {"sources": list(self.sources), "skipped": self.skipped,
                "models": [{"label": m.label, "spec": m.spec, "accuracy": m.accuracy, "margin": m.margin,
                            "scores": [list(s) for s in m.scores]} for m in self.models],
                "differences": {k: {n: asdict(d) for n, d in v.items()} for k, v in self.differences.items()}}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PreferenceEval:
        models = tuple(PreferenceModel(m["label"], m["spec"], tuple((float(c), float(r)) for c, r in m["scores"]))
                       for m in obj["models"])
        diffs = {k: {n: Difference(**d) for n, d in v.items()} for k, v in obj["differences"].items()}
        return cls(tuple(obj["sources"]), models, diffs, int(obj.get("skipped", 0)))


def pair_scores(model: Any, tokenizer: Any, pairs: Sequence[Pair], cfg: RunConfig
                ) -> tuple[list[str], list[tuple[float, float]], int]:
    """(sources, per pair (chosen, rejected) mean log-prob per token, pairs skipped) under one model."""
    template = cfg.template.model_copy(update={"overflow": "truncate"})  # scored as eval renders: prompts cut
    rendered = render_pairs(tokenizer, pairs, template)
    examples = {e.source: e for e in rendered.examples}
    order = [(p.source, examples[f"{p.source}#chosen"], examples[f"{p.source}#rejected"]) for p in rendered.pairs]
    nll = per_row_nll(model, [e for _, c, r in order for e in (c, r)], batch_size=cfg.eval.batch_size)
    scores = [(-nll[2 * i][0] / max(nll[2 * i][1], 1), -nll[2 * i + 1][0] / max(nll[2 * i + 1][1], 1))
              for i in range(len(order))]
    return [s for s, _, _ in order], scores, len(rendered.skipped)


def read_pairs(run: rundir.RunDir, which: str = "eval") -> list[Pair]:
    path = run.pairs(which)
    return [Pair.from_json(row, f"{path}:{i + 1}") for i, row in enumerate(read_jsonl(path))] if path.is_file() else []


def evaluate_preferences(run: rundir.RunDir, cfg: RunConfig, labels: Sequence[str] = ("base", "tuned"),
                         say: Callable[[str], None] = print) -> PreferenceEval | None:
    """Score the run's held-out pairs under each model and compare with the first; None without held-out pairs."""
    pairs = read_pairs(run)[: cfg.eval.max_rows]
    if not pairs:
        return None
    found = []
    for label in labels:
        model, tokenizer, spec = load_model(label, run, cfg)
        say(f"preference accuracy of {label} ({spec}) on {len(pairs)} held-out pairs ...")
        sources, scores, skipped = pair_scores(model, tokenizer, pairs, cfg)
        found.append(PreferenceModel(label, spec, tuple(scores)))
        del model
        gc.collect()
    base = found[0]
    diffs = {m.label: {"accuracy": paired_bootstrap(base.wins, m.wins, seed=cfg.eval.seed),
                       "margin": paired_bootstrap(base.margins, m.margins, seed=cfg.eval.seed)}
             for m in found[1:]}
    result = PreferenceEval(tuple(sources), tuple(found), diffs, skipped)
    write_json(run.evaluation().preference, result.to_json())
    return result


def read(run: rundir.RunDir) -> PreferenceEval | None:
    path = run.evaluation().preference
    return PreferenceEval.from_json(read_json(path)) if path.is_file() else None


def verdict(ev: PreferenceEval, label: str = "tuned") -> str:
    """The result in words: whether the tuned model prefers the chosen answers more often than the base did, and
    (the only change a base already at the ceiling can show) how much more strongly."""
    base, tuned = ev.models[0], next(m for m in ev.models if m.label == label)
    d, dm = ev.differences[label]["accuracy"], ev.differences[label]["margin"]
    n = len(tuned.scores)
    how = {"better": "prefers the chosen answers more often than", "worse": "prefers the chosen answers less often "
           "than"}.get(d.verdict, "cannot be told apart in how often it prefers the chosen answers from")
    strength = {"better": "more", "worse": "less"}.get(dm.verdict)
    return (f"{label} {how} {base.label} on {n} held-out pairs: {tuned.accuracy:.0%} vs {base.accuracy:.0%} "
            f"(difference {d.mean:+.0%}, 95% interval {d.low:+.0%} to {d.high:+.0%})"
            + (f"; {base.label} already preferred nearly all of them" if base.accuracy >= 0.95 else "")
            + (f"; it prefers them {strength} strongly: margin {base.margin:+.3f} -> {tuned.margin:+.3f} nats per "
               f"token ({dm.mean:+.3f}, 95% interval {dm.low:+.3f} to {dm.high:+.3f})" if strength else ""))


def table(ev: PreferenceEval) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the report's preference table: each model's value with its interval, then the
    difference from the first model with the paired interval and a verdict."""
    labels = [m.label for m in ev.models]
    header = ["metric", *labels, *(f"{m} − {labels[0]} (95% CI)" for m in labels[1:]), "verdict"]
    rows = []
    for key, name, fmt in (("accuracy", "preference accuracy", "{:.0%}"),
                           ("margin", "mean log-prob margin (nats/token)", "{:+.3f}")):
        row = [name]
        for m in ev.models:
            own = m.interval(key)
            row.append(f"{fmt.format(own.mean)} [{fmt.format(own.low)}, {fmt.format(own.high)}]")
        for m in ev.models[1:]:
            d = ev.differences[m.label][key]
            row += [f"{fmt.format(d.mean)} [{fmt.format(d.low)}, {fmt.format(d.high)}]", d.verdict]
        rows.append(row)
    return header, rows


ABOUT = ("Preference accuracy: the share of held-out pairs whose chosen answer the model gives the higher mean "
         "log-probability per token (length-normalised; a tie counts half); margin: the mean of chosen minus "
         "rejected, in nats per token. Each model's value has a 95% bootstrap interval over pairs; differences "
         "are paired (the same resampled pairs for both models, 2000 resamples). 50% is a model that cannot tell "
         "the answers apart.")
