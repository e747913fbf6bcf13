"""Optional LLM-as-judge: which of two answers is better, asked of any OpenAI-compatible chat endpoint.

Public API:
    judge_pairs(base, tuned, *, url, model, timeout=60.0, workers=4, resamples=2000, seed=0) -> JudgeResult
    JudgeResult(model, rows, difference): .tuned_wins .base_wins .ties .unparsed .summary()
    Preference(source, picks, replies): .winner ('tuned' | 'base' | 'tie') and .score (+1 | -1 | 0)
    parse_verdict(reply) -> 'A' | 'B' | 'tie' | None

Judges favour whichever answer they read first (Zheng et al. 2023, "Judging LLM-as-a-judge", section 3.3),
so every row is asked twice, base shown first and then tuned shown first; a model wins the row only when
both orders pick it, anything else is a tie. A reply with no readable verdict counts as no preference for
that order and is counted in `unparsed`, never dropped.

The API key is read from TUNESMITH_JUDGE_KEY or OPENAI_API_KEY when each request is made (tunesmith.endpoint:
never stored, printed or put into an error; `user:password@` in the url is HTTP Basic auth).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tunesmith import thinking
from tunesmith.endpoint import Endpoint
from tunesmith.metrics import paired_bootstrap
from tunesmith.records import Difference, Generation, JudgeSummary

KEY_VARIABLES = ("TUNESMITH_JUDGE_KEY", "OPENAI_API_KEY")
ORDERS = (("base", "tuned"), ("tuned", "base"))  # who is answer A, who is answer B

SYSTEM = ("You compare two answers to the same request. Decide which answer better does what the request asks. "
          "The reference answer shows what a good answer looks like; an answer may differ from it and still be "
          "good. Do not let length or the order of the answers sway you. Explain briefly, then end with one "
          "line: 'Verdict: A', 'Verdict: B' or 'Verdict: tie'.")

# 'Verdict: A', 'verdict is **B**', 'Final verdict: [[A]]', 'verdict: a tie'; A/B must be capitals ('a' is a word)
_VERDICT = re.compile(r"(?i:verdict\W*(?:is\W+)?(?:a\s+)?)(A|B|(?i:tie))\b|\[\[(A|B|(?i:tie))\]\]")
_BARE = re.compile(r"\W*(A|B|(?i:tie))\W*")


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

    def summary(self) -> JudgeSummary:
        d = self.difference
        return JudgeSummary(self.model, len(self.rows), self.tuned_wins, self.base_wins, self.ties, self.unparsed,
                            d.mean, d.low, d.high, d.verdict)


def parse_verdict(reply: str) -> str | None:
    """The last verdict in a reply, or a bare 'A'/'B'/'tie' as its last line; None when there is none.

    >>> parse_verdict("B is kinder, but A answers the question.\\nVerdict: **A**")
    'A'
    >>> parse_verdict("[[B]]"), parse_verdict("Both are fine.\\nTie."), parse_verdict("A is better")
    ('B', 'tie', None)
    """
    found = [m.group(1) or m.group(2) for m in _VERDICT.finditer(reply)]
    lines = reply.strip().splitlines()
    bare = _BARE.fullmatch(lines[-1]) if lines else None
    choice = found[-1] if found else bare.group(1) if bare else None
    return "tie" if choice and choice.lower() == "tie" else choice


def judge_pairs(base: Sequence[Generation], tuned: Sequence[Generation], *, url: str, model: str,
                timeout: float = 60.0, workers: int = 4, resamples: int = 2000, seed: int = 0) -> JudgeResult:
    """Ask the judge about every row in both orders; `url` is the API base (…/v1) or the full
    …/chat/completions address.

    >>> judge_pairs(before.generations, after.generations, url="http://localhost:8000/v1",
    ...             model="qwen2.5-7b-instruct").summary().net_win_share  # doctest: +SKIP
    0.35
    """
    if [(g.source, g.prompt) for g in base] != [(g.source, g.prompt) for g in tuned]:
        raise ValueError("base and tuned generations must be the same rows in the same order")
    judge = Endpoint.open(url, model, KEY_VARIABLES, who="judge")
    asks = [_messages(b, *({"base": b, "tuned": t}[who] for who in order))
            for b, t in zip(base, tuned) for order in ORDERS]
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        replies = list(pool.map(lambda m: judge.chat(m, temperature=0, timeout=timeout), asks))
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, don't send the requests still queued
    per_row = zip(replies[::2], replies[1::2])  # (base shown first, tuned shown first)
    rows = tuple(Preference(b.source, (_pick(first, ORDERS[0]), _pick(second, ORDERS[1])), (first, second))
                 for b, (first, second) in zip(base, per_row))
    scores = [float(r.score) for r in rows]
    return JudgeResult(model, rows, paired_bootstrap([0.0] * len(scores), scores, resamples, seed))


def _messages(row: Generation, a: Generation, b: Generation) -> list[dict[str, str]]:
    """The judge's request: the answers without the thinking before them (thinking.py), as eval's metrics score
    them (an answer cut inside its thinking gives the judge nothing to prefer)."""
    said = thinking.answer_only
    user = (f"[Request]\n{row.prompt}\n\n[Reference answer]\n{said(row.reference)}\n\n"
            f"[Answer A]\n{said(a.generation)}\n\n[Answer B]\n{said(b.generation)}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _pick(reply: str, order: tuple[str, str]) -> str:
    choice = parse_verdict(reply)
    return {"A": order[0], "B": order[1], "tie": "tie", None: "unparsed"}[choice]
