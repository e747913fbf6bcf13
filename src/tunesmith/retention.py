"""Retention: did tuning make the model worse outside its task ("forgetting")?

The eval rows are the task itself, so they cannot show what tuning cost elsewhere: a model tuned on 200
counselling rows may get worse at everything else. Every evaluated model is therefore also measured on a small
general-domain set shipped with tunesmith (retention_data/, written for this check): 16 short passages in English
and Korean (everyday topics: bread, bicycles, the water cycle, kimchi, the subway, hangul ...) and 12 general
prompts with reference answers. Three measures, base against each later model, with paired bootstrap intervals:

- perplexity of the passages (all, and per language): plain text, no template;
- perplexity of the reference answers given the prompts, rendered through the run's own template;
- chrF of the model's own greedy answers to those prompts against the references.

"Forgetting" is said plainly when an interval excludes zero on the worse side and the change matters: a
perplexity up by PERPLEXITY_RISE or more, or a lower chrF. A LoRA tune nearly always moves general perplexity a
little; a rise under 5% is reported with its interval but not called forgetting.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from tunesmith import generation, metrics, template
from tunesmith.config import EvalConfig, TemplateConfig
from tunesmith.records import Conversation, Difference, Example, Generation, Message, Retention, RetentionModel

PERPLEXITY_RISE = 0.05  # a perplexity up by >= 5% (interval excluding no change) is called forgetting
ANSWER_TOKENS = 64  # the references are one sentence: 7-23 tokens in English, 21-59 in Korean (SmolLM2)
TEXT_BATCH = 4  # passages a forward pass: 7.4 s for the 16 passages with SmolLM2 on 2 cores, 8.9 s at 16
AUTO_MAX_PARAMETERS = 2e9  # eval.retention auto: on a CPU, up to this size the check adds seconds, not minutes
# Measure -> (what the report calls it, kind): kind "nll" differences are log perplexity ratios.
MEASURES = {"text": ("perplexity of general text", "nll"),
            "text_en": ("perplexity of general text, English", "nll"),
            "text_ko": ("perplexity of general text, Korean", "nll"),
            "answers": ("perplexity of reference answers to general prompts", "nll"),
            "answer_chrf": ("chrF of answers to general prompts", "chrf")}


@dataclass(frozen=True)
class GeneralSet:
    passages: tuple[tuple[str, str, str], ...]  # (id, language, text)
    prompts: tuple[tuple[str, str, str, str], ...]  # (id, language, prompt, reference answer)


@functools.cache  # read once: the report asks for it per measure and model
def general_set() -> GeneralSet:
    """The shipped passages and prompts (src/tunesmith/retention_data/*.jsonl)."""
    root = resources.files("tunesmith") / "retention_data"

    def rows(name: str) -> list[dict[str, str]]:
        return [json.loads(line) for line in (root / name).read_text(encoding="utf-8").splitlines() if line]

    return GeneralSet(tuple((r["id"], r["lang"], r["text"]) for r in rows("passages.jsonl")),
                      tuple((r["id"], r["lang"], r["prompt"], r["answer"]) for r in rows("prompts.jsonl")))


def wanted(setting: str, model: Any) -> bool:
    """eval.retention: on / off, or auto = on with a GPU or a model of at most AUTO_MAX_PARAMETERS."""
    if setting != "auto":
        return setting == "on"
    return model.device.type == "cuda" or model.num_parameters() <= AUTO_MAX_PARAMETERS


def measure(label: str, model: Any, tokenizer: Any, tcfg: TemplateConfig, ecfg: EvalConfig) -> RetentionModel:
    """One model's numbers on the general set; `tcfg` is the template the model is evaluated with."""

    gs = general_set()
    # Plain text: every token after the first is scored; the tokenizer adds BOS where the model expects one.
    passages = [Example(tuple(ids), tuple(ids), pid) for pid, _, text in gs.passages
                for ids in [tokenizer(text)["input_ids"]]]
    text_nll = generation.per_row_nll(model, passages, batch_size=TEXT_BATCH)
    convs = [Conversation((Message("user", prompt), Message("assistant", answer)), pid)
             for pid, _, prompt, answer in gs.prompts]
    rendered = template.render_dataset(tokenizer, convs, tcfg.model_copy(
        update={"supervise": "last", "overflow": "truncate"}))
    answer_nll = generation.reference_nll(model, rendered, ecfg.batch_size)
    greedy = ecfg.model_copy(update={"max_rows": len(convs), "max_new_tokens": ANSWER_TOKENS, "temperature": 0.0})
    answers = {g.source: g.generation for g in generation.generate(model, tokenizer, rendered.convs, greedy)}
    # A prompt the template could not render (none in practice: overflow truncates) has no answer: "".
    return RetentionModel(label, tuple(text_nll), tuple(answer_nll), tuple(answers.get(p[0], "") for p in gs.prompts))


def _generations(gs: GeneralSet, m: RetentionModel) -> list[Generation]:
    return [Generation(pid, prompt, answer, text) for (pid, _, prompt, answer), text in zip(gs.prompts, m.answers)]


def _subset(rows: Sequence[tuple[float, int]], idx: Sequence[int]) -> list[tuple[float, int]]:
    return [rows[i] for i in idx]


def compare(models: Sequence[RetentionModel], seed: int = 0) -> Retention:
    """The first model (base) against each later one, on every measure."""
    gs = general_set()
    langs = sorted({lang for _, lang, _ in gs.passages})
    base, diffs = models[0], {}
    for m in models[1:]:
        d = {"text": metrics.nll_difference(base.text_nll, m.text_nll, seed=seed)}
        for lang in langs:
            idx = [i for i, (_, pl, _) in enumerate(gs.passages) if pl == lang]
            d[f"text_{lang}"] = metrics.nll_difference(_subset(base.text_nll, idx), _subset(m.text_nll, idx),
                                                       seed=seed)
        d["answers"] = metrics.nll_difference(base.answer_nll, m.answer_nll, seed=seed)
        d["answer_chrf"] = metrics.corpus_difference("chrf", _generations(gs, base), _generations(gs, m), "13a",
                                                     seed=seed)
        diffs[m.label] = d
    return Retention(tuple((p[0], p[1]) for p in gs.passages), tuple((p[0], p[1]) for p in gs.prompts),
                     tuple(models), diffs)


def value(ret: Retention, label: str, key: str) -> float:
    """The number shown for one model and measure: a perplexity, or the corpus chrF of its answers."""
    m = ret.model(label)
    if key == "answer_chrf":
        gs = general_set()
        return metrics.corpus_value("chrf", _generations(gs, m), "13a")
    if key == "answers":
        return metrics.perplexity(m.answer_nll)
    lang = key.removeprefix("text").lstrip("_")
    return metrics.perplexity([r for r, (_, pl) in zip(m.text_nll, ret.passages) if not lang or pl == lang])


def change_text(key: str, d: Difference) -> str:
    """The difference as the report shows it: a perplexity ratio in percent, or chrF points."""
    if MEASURES[key][1] == "nll":
        return f"{_ratio(d.mean)} [{_ratio(d.low)}, {_ratio(d.high)}]"
    return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def _ratio(nll_difference: float) -> str:
    """A perplexity change: +12.3% below tenfold, x3.4e+05 above (a wrecked model's percentages are unreadable)."""
    ratio = math.exp(nll_difference)
    return f"{ratio - 1:+.1%}" if ratio < 10 else f"x{ratio:.3g}"


def forgetting(ret: Retention, label: str) -> list[str]:
    """Plain sentences, one per measure on which `label` got worse enough to call it forgetting; [] if none."""
    base = ret.models[0].label
    out = []
    for key, d in ret.differences.get(label, {}).items():
        if d.verdict != "worse" or (MEASURES[key][1] == "nll" and math.expm1(d.mean) < PERPLEXITY_RISE):
            continue
        out.append(f"{MEASURES[key][0]} {value(ret, base, key):.4g} → {value(ret, label, key):.4g} "
                   f"({change_text(key, d)})")
    return out


def verdict(ret: Retention, label: str) -> str:
    """One sentence for the summary: forgetting (with the measures), or what the intervals allow saying."""
    worse = forgetting(ret, label)
    if worse:
        return (f"Forgetting: tuning made {label} worse outside the task — " + "; ".join(worse) + ".")
    d, base = ret.differences[label]["text"], value(ret, ret.models[0].label, "text")
    return (f"No forgetting found outside the task: perplexity of general text {base:.4g}"
            f" → {value(ret, label, 'text'):.4g} ({change_text('text', d)}; forgetting is a rise of "
            f"{PERPLEXITY_RISE:.0%} or more with the interval above zero, or a lower chrF of general answers).")
