"""Preference pairs through the template stage: each pair is rendered as two conversations (the prompt with the
chosen answer, the prompt with the rejected one) by `template.render_dataset`, the render path every SFT row takes,
so the prompt is the model's chat template and each answer is supervised with its end-of-turn token. The two
renders must share the prompt tokens exactly; a pair whose side the template cannot use (too long, nothing
supervised) is skipped with that side's reason.

    render_pairs(tokenizer, pairs, cfg) -> RenderedPairs(pairs: (RenderedPair, ...), skipped, checks, max_length)
    RenderedPair: prompt_ids, chosen_ids, rejected_ids (what TRL's preference trainers take), source
    render_rated(tokenizer, rated, cfg) -> RenderedPairs(rated: (RenderedRated, ...), ...)   (KTO)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.config import TemplateConfig
from tunesmith.data.preference import Pair, Rated
from tunesmith.records import IGNORE, Conversation, Example, Message, Skip, TemplateCheck
from tunesmith.template import render_dataset

SIDES = ("chosen", "rejected")


@dataclass(frozen=True)
class RenderedPair:
    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]  # the chosen answer, its end-of-turn token included
    rejected_ids: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class RenderedRated:
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]  # the answer, its end-of-turn token included
    good: bool
    source: str


@dataclass(frozen=True)
class RenderedPairs:
    pairs: tuple[RenderedPair, ...]
    skipped: tuple[Skip, ...]
    checks: TemplateCheck  # the template stage's checks over both sides of every pair
    max_length: int
    examples: tuple[Example, ...]  # both sides as the template rendered them (preview shows their masks)
    rated: tuple[RenderedRated, ...] = ()  # KTO: rated answers instead of pairs

    @property
    def rows(self) -> int:
        return len(self.pairs) + len(self.rated)


def conversations(pair: Pair) -> tuple[Conversation, Conversation]:
    return tuple(Conversation((*pair.prompt, Message("assistant", getattr(pair, side))), f"{pair.source}#{side}")
                 for side in SIDES)  # type: ignore[return-value]


def _split(example: Example) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(prompt ids, answer ids): the answer starts at the first supervised token and runs to the end."""
    start = next(i for i, label in enumerate(example.labels) if label != IGNORE)
    return example.input_ids[:start], example.input_ids[start:]


def render_pairs(tokenizer: Any, pairs: Sequence[Pair], cfg: TemplateConfig, *,
                 context: int | None = None) -> RenderedPairs:
    convs = [c for p in pairs for c in conversations(p)]
    # Only the last answer is the pair's: earlier assistant turns of a multi-turn prompt are context, not learned.
    rendered = render_dataset(tokenizer, convs, cfg.model_copy(update={"supervise": "last"}), context=context)
    by_source = {e.source: e for e in rendered.examples}
    why = {s.location: s for s in rendered.skipped}
    out, skipped = [], []
    for p in pairs:
        sides = [by_source.get(f"{p.source}#{side}") for side in SIDES]
        if None in sides:
            lost = why[next(f"{p.source}#{side}" for side, e in zip(SIDES, sides) if e is None)]
            skipped.append(Skip(p.source, f"{lost.location.rsplit('#', 1)[1]} side: {lost.reason}", lost.kind,
                                lost.tokens))
            continue
        (prompt, chosen), (other, rejected) = (_split(e) for e in sides)  # type: ignore[arg-type]
        if prompt != other:  # the same prompt must render to the same tokens on both sides
            skipped.append(Skip(p.source, "the prompt renders differently before the chosen and the rejected "
                                          "answer", "malformed"))
            continue
        out.append(RenderedPair(prompt, chosen, rejected, p.source))
    return RenderedPairs(tuple(out), tuple(skipped), rendered.checks, rendered.max_length, rendered.examples)


def render_rated(tokenizer: Any, rated: Sequence[Rated], cfg: TemplateConfig, *,
                 context: int | None = None) -> RenderedPairs:
    """Rated answers (KTO) through the same template stage: the prompt, then the answer supervised."""
    convs = [Conversation((*r.prompt, Message("assistant", r.completion)), r.source) for r in rated]
    rendered = render_dataset(tokenizer, convs, cfg.model_copy(update={"supervise": "last"}), context=context)
    good = {r.source: r.good for r in rated}
    out = tuple(RenderedRated(*_split(e), good[e.source], e.source) for e in rendered.examples)
    return RenderedPairs((), tuple(rendered.skipped), rendered.checks, rendered.max_length, rendered.examples, out)
