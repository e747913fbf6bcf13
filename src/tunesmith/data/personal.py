"""Personal data in the rows: text that looks like a phone number, an e-mail address, a Korean resident registration
number (주민등록번호) or a card number. People's own files (counselling notes, chat exports) hold them, and a tuned
model can repeat what it was trained on, most of all in the answers it learns to write. `inspect` says how many rows
hold each kind and where, `train` and `plan` warn in one line (and the report shows it); the rows are neither changed
nor left out (what to mask is the owner's call).

The patterns are deliberately narrow (a hyphen or the exact digit layout each number has), so that a count is worth
reading: a 13-digit id without its hyphen or a landline without an area code is not counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tunesmith.records import Conversation

PATTERNS = {
    "phone number": re.compile(r"(?<!\d)(?:\+82[- ]?1[016789]|01[016789])[- .]?\d{3,4}[- .]\d{4}(?!\d)|"
                               r"(?<!\d)0(?:2|[3-6][1-5])-\d{3,4}-\d{4}(?!\d)"),
    "e-mail address": re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "resident registration number": re.compile(
        r"(?<!\d)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])-[1-8]\d{6}(?!\d)"),
    "card number": re.compile(r"(?<!\d)\d{4}([- ])\d{4}\1\d{4}\1\d{4}(?!\d)"),
}


@dataclass(frozen=True)
class Found:
    """Rows holding one kind of personal data: how many, how many of them in an answer, the first few."""

    kind: str
    rows: int
    in_answers: int
    where: tuple[str, ...]

    def to_json(self) -> dict:
        return {"kind": self.kind, "rows": self.rows, "in_answers": self.in_answers, "where": list(self.where)}


def scan(convs: Sequence[Conversation], shown: int = 3) -> tuple[Found, ...]:
    """Each kind of personal data found in `convs`, by rows (a row counts once per kind)."""
    found = []
    for kind, pattern in PATTERNS.items():
        hits = [(c, {m.role for m in c.messages if pattern.search(m.content)}) for c in convs]  # one search a turn
        rows = [(c, roles) for c, roles in hits if roles]
        if rows:
            answers = sum("assistant" in roles for _, roles in rows)
            found.append(Found(kind, len(rows), answers, tuple(c.source for c, _ in rows[:shown])))
    return tuple(found)


def warning(convs: Sequence[Conversation]) -> list[str]:
    """The one line train, plan and the report give (PreparedData.warnings), where `convs` hold personal data."""
    found = scan(convs)
    if not found:
        return []
    return ["privacy: " + "; ".join(f"{f.rows} row{'s' * (f.rows != 1)} with what looks like {_a(f.kind)} "
                                    f"({f.in_answers} in an answer)" for f in found)
            + ": a tuned model can repeat what it was trained on; `tunesmith inspect` shows where"]


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def lines(found: Sequence[Found]) -> list[str]:
    """What inspect prints: a line per kind, then why it matters and what to do."""
    if not found:
        return []
    out = [f"privacy: {f.rows} {'row holds' if f.rows == 1 else 'rows hold'} what looks like {_a(f.kind)} "
           f"({f.in_answers} in an answer the model learns to write), e.g. {', '.join(f.where)}" for f in found]
    return out + ["  a tuned model can repeat what it was trained on: mask or remove them before training "
                  "(e.g. 010-****-****); tunesmith trains on the rows as they are"]
