"""Turn raw records into validated Conversations. The format is detected over all rows, not the first.

`FORMATS` is a plain registry: name -> (does this row look like it?, row -> list of (role, content)).
A row that does not fit the detected format, or fails validation, is skipped with its location and reason.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, Message, RawRecord, ReadResult, Skip
from tunesmith.data import readers

Turns = list[tuple[str, Any]]

# Role names other tools write for the same three roles (ShareGPT's human/gpt, Gemma's model).
ROLE_ALIASES = {"system": "system", "user": "user", "assistant": "assistant",
                "human": "user", "gpt": "assistant", "model": "assistant"}

# prompt/completion-like column pairs, in the order users most often name them.
PAIR_KEYS = (("prompt", "completion"), ("question", "answer"), ("query", "response"),
             ("instruction", "response"), ("input", "output"))


def _is_turn_list(value: Any, role_key: str, content_key: str) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, dict) and role_key in t and content_key in t for t in value)


def _messages(row: dict) -> Turns:
    return [(t["role"], t["content"]) for t in row["messages"]]


def _sharegpt(row: dict) -> Turns:
    return [(t["from"], t["value"]) for t in row["conversations"]]


def _alpaca(row: dict) -> Turns:
    instruction, extra = row["instruction"], row.get("input") or ""
    prompt = f"{instruction}\n\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
    return [("user", prompt), ("assistant", row["output"])]


def _pair_keys(row: Any) -> tuple[str, str] | None:
    if isinstance(row, dict):
        for a, b in PAIR_KEYS:
            if a in row and b in row:
                return a, b
    return None


def _prompt_completion(row: dict) -> Turns:
    a, b = _pair_keys(row)  # type: ignore[misc]
    return [("user", row[a]), ("assistant", row[b])]


def _bare_pair(row: list) -> Turns:
    return [("user", row[0]), ("assistant", row[1])]


FORMATS: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Turns]]] = {
    "messages": (lambda r: isinstance(r, dict) and _is_turn_list(r.get("messages"), "role", "content"),
                 _messages),
    "sharegpt": (lambda r: isinstance(r, dict) and _is_turn_list(r.get("conversations"), "from", "value"),
                 _sharegpt),
    "alpaca": (lambda r: isinstance(r, dict) and "instruction" in r and "output" in r, _alpaca),
    "prompt_completion": (lambda r: _pair_keys(r) is not None, _prompt_completion),
    "turns": (lambda r: _is_turn_list(r, "role", "content"), lambda r: [(t["role"], t["content"]) for t in r]),
    "pairs": (lambda r: isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r), _bare_pair),
}


def detect(records: list[RawRecord]) -> tuple[str, Counter]:
    """The format most rows fit (ties go to the earlier registry entry), with the per-format counts as evidence."""
    votes: Counter = Counter()
    for rec in records:
        for name, (fits, _) in FORMATS.items():
            if fits(rec.fields):
                votes[name] += 1
    if not votes:
        return "unknown", votes
    best = max(FORMATS, key=lambda n: (votes[n], -list(FORMATS).index(n)))
    return best, votes


def _clean(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def validate(turns: Turns, source: str, system: str | None) -> Conversation:
    """Check roles, alternation and content; raise ValueError with the reason a row must be skipped."""
    msgs: list[Message] = []
    for i, (role, content) in enumerate(turns):
        mapped = ROLE_ALIASES.get(str(role).strip().lower())
        if mapped is None:
            raise ValueError(f"turn {i}: unknown role {role!r} (expected system, user or assistant)")
        if not isinstance(content, str):
            raise ValueError(f"turn {i} ({mapped}): content is {type(content).__name__}, expected text")
        if not content.strip():
            raise ValueError(f"turn {i} ({mapped}): empty content")
        msgs.append(Message(mapped, _clean(content)))
    if system is not None:
        msgs = [Message("system", system)] + [m for m in msgs if m.role != "system"]
    body = msgs[1:] if msgs and msgs[0].role == "system" else msgs
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m.role != expected:
            raise ValueError(f"turn {i}: {m.role} where {expected} was expected (turns must alternate, user first)")
    if not body or body[-1].role != "assistant":
        raise ValueError("no assistant turn to learn from at the end of the conversation")
    return Conversation(tuple(msgs), source)


def load(path: Path, *, system: str | None = None) -> ReadResult:
    """Read one file and convert every row; unusable rows are skipped and counted, never dropped silently."""
    records, skipped, encoding = readers.read(path)
    unparsed = len(skipped)
    fmt, votes = detect(records)
    if fmt == "unknown":
        sample = records[0].fields if records else None
        raise TunesmithError(
            "cannot tell the data format: no row looks like messages, ShareGPT, alpaca, prompt/completion "
            "or [user, assistant] pairs", where=str(path),
            fix=f"first row was {str(sample)[:200]!r}; rename its fields to e.g. prompt/completion")
    fits, convert = FORMATS[fmt]
    conversations = []
    for rec in records:
        if not fits(rec.fields):
            skipped.append(Skip(rec.location, f"does not fit the {fmt} format of the other rows"))
            continue
        try:
            conversations.append(validate(convert(rec.fields), rec.location, system))
        except ValueError as err:
            skipped.append(Skip(rec.location, str(err)))
    return ReadResult(path, encoding, fmt, tuple(conversations), tuple(skipped),
                      rows_read=len(records) + unparsed)
