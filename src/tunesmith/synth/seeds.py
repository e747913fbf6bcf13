"""Seed words: one per line, trimmed; blank lines, '#' comments and repeats removed and counted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.readers import decode
from tunesmith.errors import TunesmithError


@dataclass(frozen=True)
class Seeds:
    words: tuple[str, ...]
    read: int  # lines read
    removed: dict[str, int]  # reason -> lines


def read_seeds(path: Path) -> Seeds:
    """The seed words of `path` in file order (any encoding tunesmith reads: UTF-8, UTF-16, cp949).

    A repeat is the same words after collapsing whitespace and case ("전세  계약" = "전세 계약").
    """
    if not path.is_file():
        raise TunesmithError(f"seed file {path} not found", where="synth", fix="pass --seeds FILE: a text file "
                             "with one seed word or phrase per line")
    text, _ = decode(path)
    lines = text.splitlines()
    removed: Counter[str] = Counter()
    seen: set[str] = set()
    words = []
    for line in lines:
        word = " ".join(line.split())
        if not word:
            removed["empty"] += 1
        elif word.startswith("#"):
            removed["comment"] += 1
        elif word.casefold() in seen:
            removed["duplicate"] += 1
        else:
            seen.add(word.casefold())
            words.append(word)
    if not words:
        raise TunesmithError(f"{path} has no seed words ({len(lines)} lines: "
                             + ", ".join(f"{n} {why}" for why, n in removed.items()) + ")", where="synth",
                             fix="write one seed word or phrase per line")
    return Seeds(tuple(words), len(lines), dict(removed))
