"""The preference path's template stage and pre-training checks (pipeline.render's counterpart for pairs).

Pairs (or, for KTO, rated answers) render through pairs.py; rows the template cannot use leave train/eval once,
with their reason, so every count printed afterwards agrees. For the plan each trained pair stands as one
Example holding both of its sequences (prompt + chosen, prompt + rejected: what a step runs through the model),
so rows, steps, tokens, memory and time come from the plan's own arithmetic; each held-out pair stands as its
prompt + chosen answer, which is what the generation eval runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunesmith import skips, template
from tunesmith.config import RunConfig
from tunesmith.data.prefdata import PreferenceData, unpaired
from tunesmith.data.preference import Pair
from tunesmith.errors import TunesmithError
from tunesmith.pairs import RenderedPairs, render_pairs, render_rated
from tunesmith.records import IGNORE, Example, PreparedData


@dataclass(frozen=True)
class PrefRendered:
    train: RenderedPairs  # what trains: pairs, or rated answers (kto)
    eval: RenderedPairs  # what the trainer's held-out loss is computed on (the same kind as train)
    eval_pairs: tuple[Pair, ...]  # held-out pairs that rendered: preference accuracy, base vs tuned


def _unit(prompt: tuple[int, ...], *answers: tuple[int, ...], source: str) -> Example:
    ids, labels = [], []
    for answer in answers:
        ids += [*prompt, *answer]
        labels += [IGNORE] * len(prompt) + list(answer)
    return Example(tuple(ids), tuple(labels), source)


def units(rendered: RenderedPairs) -> list[Example]:
    """One plan Example per trained pair (both sequences) or rated answer."""
    if rendered.rated:
        return [_unit(r.prompt_ids, r.completion_ids, source=r.source) for r in rendered.rated]
    return [_unit(p.prompt_ids, p.chosen_ids, p.rejected_ids, source=p.source) for p in rendered.pairs]


def _base(source: str) -> str:
    return source.split("#", 1)[0]  # a KTO answer taken from a pair is "<row>#chosen" / "<row>#rejected"


def render(tokenizer: Any, pd: PreferenceData, cfg: RunConfig, say: Callable[[str], None], context: int | None,
           context_is: str) -> tuple[PreparedData, PrefRendered, list[Example], list[Example]]:
    """(data with unusable rows moved to `dropped`, the rendered pairs, plan units for train and eval)."""
    kto = cfg.train.objective == "kto"
    tcfg = cfg.template
    train = render_rated(tokenizer, pd.train, tcfg, context=context) if kto else \
        render_pairs(tokenizer, pd.train, tcfg, context=context)  # type: ignore[arg-type]
    held = render_pairs(tokenizer, pd.eval, tcfg, context=context)
    for line in template.describe(train.checks):
        say(f"check: {line}")
    skipped = (*train.skipped, *held.skipped)
    for line in skips.block(f"not trained or evaluated: {skips.rows_text(len(skipped))} (all of them: "
                            "data/summary.json in the run folder)", skipped, train.max_length, context, context_is):
        say(line)
    gone = {_base(s.location) for s in skipped}
    data = dataclasses.replace(pd.data, train=tuple(c for c in pd.data.train if c.source not in gone),
                               eval=tuple(c for c in pd.data.eval if c.source not in gone),
                               dropped=(*pd.data.dropped, *skipped))
    eval_pairs = tuple(p for p in pd.eval if p.source not in gone)
    if kto:  # the trainer's held-out loss is KTO's own: held-out pairs taken apart, or a KTO file's good answers
        rated = [r for p in eval_pairs for r in unpaired(p)] or [r for r in pd.held_rated if r.source not in gone]
        trainer_eval = render_rated(tokenizer, rated, tcfg, context=context)
    else:
        trainer_eval = held
    if not train.rows or not trainer_eval.rows:
        raise TunesmithError(f"no {'trainable' if not train.rows else 'held-out'} pairs left after templating",
                             fix="see the skipped rows above (a longer template.max_length keeps long pairs)")
    if train.checks.end_of_turn_missing or train.checks.parity_failures:
        raise TunesmithError("the template checks failed (see 'check:' above); training would teach the wrong thing",
                             fix="set template.chat_template, or report the model to tunesmith")
    chosen = {e.source: e for e in held.examples}
    eval_units = [chosen[f"{p.source}#chosen"] for p in held.pairs] or units(trainer_eval)
    return data, PrefRendered(train, trainer_eval, eval_pairs), units(train), eval_units


def objective_line(cfg: RunConfig) -> str:
    """What a preference objective computes each step, and what its reference model costs."""
    t, p = cfg.train, cfg.preference
    beta = p.beta_for(t.objective)
    reference = ("the base model under the adapter (PEFT's disabled adapter: no second copy of the weights)"
                 if t.method == "lora" else "the starting model (no second copy kept)")
    if cfg.continue_from is not None and t.method == "lora":
        reference = "the run continued from (a copy of its adapter)"
    reference += "; its log-probs computed once before training (one no-grad pass over the train and eval rows)"
    return {
        "dpo": f"objective: DPO (TRL DPOTrainer, sigmoid loss, beta {beta}): each row is a pair, run as two "
               f"sequences (prompt + chosen, prompt + rejected); loss = -log sigmoid(beta x (chosen's minus "
               f"rejected's log-prob gain over the reference)); reference: {reference}",
        "kto": f"objective: KTO (TRL KTOTrainer, beta {beta}, desirable x{p.desirable_weight}, undesirable "
               f"x{p.undesirable_weight}): each row an answer marked good or bad; reference: {reference}",
        "orpo": f"objective: ORPO (TRL ORPOTrainer, lambda {beta}): each row a pair run as two sequences; loss = "
                "cross-entropy on the chosen answer + lambda x -log sigmoid(log odds chosen - log odds rejected); "
                "no reference model (no extra memory, no extra forward)",
        "simpo": f"objective: SimPO (TRL CPOTrainer loss simpo, beta {beta}, gamma {p.simpo_gamma}): each row a "
                 "pair run as two sequences; loss = -log sigmoid(beta x (mean log-prob per token of chosen - of "
                 "rejected) - gamma); no reference model (no extra memory, no extra forward)",
    }[t.objective]

