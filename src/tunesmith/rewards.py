"""The rewards train.objective grpo scores written answers with: TRL's GRPOTrainer calls each on a batch of answers,
with each row's own answer (its `reference`, as eval's template.prompt_text gives it) beside them. Each compares as
eval's metrics do (the answer after its thinking, calls in any template's form), so that what training moves
toward is what the report measures. A reward that does not apply to a row (no number in its answer) is None there,
which TRL leaves out of that row's sum.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from tunesmith import thinking, toolcalls
from tunesmith.config import REWARDS, GrpoConfig
from tunesmith.records import Conversation

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def answer(completions: Sequence[str], reference: Sequence[str], **_: Any) -> list[float]:
    """chrF of the answer (after its thinking) against the row's answer, 0-1: eval's main metric, row by row."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    return [chrf.sentence_score(thinking.answer_only(c), [thinking.answer_only(r)]).score / 100
            for c, r in zip(completions, reference, strict=True)]


def _last_number(text: str) -> str | None:
    found = _NUMBER.findall(thinking.answer_only(text))
    return found[-1].replace(",", "") if found else None


def number(completions: Sequence[str], reference: Sequence[str], **_: Any) -> list[float | None]:
    """1 where the answer's last number is the row's answer's last number (a sum, a count, a date's year), 0 where
    not; None on rows whose answer has no number."""
    out: list[float | None] = []
    for c, r in zip(completions, reference, strict=True):
        want = _last_number(r)
        out.append(None if want is None else float(_last_number(c) == want))
    return out


def thinks(completions: Sequence[str], reference: Sequence[str], **_: Any) -> list[float]:
    """1 where the answer thinks before answering exactly where the row's does, and its thinking ends (an answer
    cut inside its thinking has none); eval's 'thinks before answering when due' and 'thinking ended'."""
    out = []
    for c, r in zip(completions, reference, strict=True):
        made = thinking.split(c)
        wanted = bool(thinking.split(r).reasoning)
        out.append(float(bool(made.reasoning) == wanted and made.finished))
    return out


def calls(completions: Sequence[str], reference: Sequence[str], **_: Any) -> list[float]:
    """1 where the answer makes the row's function calls (names and arguments, any order; none where it makes
    none): eval's 'function calls right' and 'calls a function when due' in one."""
    return [float(sorted(toolcalls.calls_in(thinking.answer_only(c))) == sorted(toolcalls.calls_in(
        thinking.answer_only(r)))) for c, r in zip(completions, reference, strict=True)]


FUNCTIONS: dict[str, Callable[..., list[Any]]] = {"answer": answer, "number": number, "thinks": thinks,
                                                   "calls": calls}
assert tuple(FUNCTIONS) == REWARDS, "config.REWARDS names these functions"


def chosen(cfg: GrpoConfig, convs: Sequence[Conversation]) -> list[str]:
    """The rewards a run trains with: grpo.rewards as set, or for auto the answer's, and the thinking's and the
    calls' where any row thinks or calls a function."""
    if cfg.rewards != "auto":
        return list(dict.fromkeys(cfg.rewards))
    return ["answer", *(["thinks"] if any(m.reasoning for c in convs for m in c.messages) else []),
            *(["calls"] if any(c.calls_tools for c in convs) else [])]
