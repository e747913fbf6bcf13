"""`tunesmith chat RUN --collect prefs.jsonl`: collect preferences while chatting, in a file that trains.

For each prompt two answers are shown: two samples of the run's model, or (`--versus base`) the tuned and the
base model's answers in a random order. The user picks one (1 / 2), marks both bad (b), edits one (e1 / e2:
the edit becomes `chosen`, the original `rejected`), or rates a single answer (+1 / -1 / +2 / -2). Pairs are
written in TRL's conversational standard format (prompt / chosen / rejected) to the file named; ratings as
KTO rows (prompt / completion / label) beside it, `<name>.kto.jsonl`. Each row is appended and fsync'ed as it
is made (diskio.append_jsonl), so an interrupted session loses nothing; a re-run continues the same files and
never writes a row twice. `train --set train.objective=dpo` (or kto) reads them as they are.

The board's Chat tab collects through the same Collector.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.chat import Reply, Session, checked_text, prompt_for, stream
from tunesmith.data.preference import Pair, Rated
from tunesmith.diskio import append_jsonl, cut_torn_tail, read_jsonl
from tunesmith.errors import TunesmithError
from tunesmith.records import Message

CHOICES = ("1 or 2: that answer is better; b: both are bad; e1 / e2: edit that answer (your text becomes the chosen "
           "one); +1 / -1 / +2 / -2: mark one answer good or bad (KTO); s: skip; /exit: stop")
SAMPLING = {"temperature": 0.8, "top_p": 0.95}  # two greedy answers would be the same answer twice


def kto_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.kto.jsonl")


def _key(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(row, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


@dataclass
class Collector:
    """The two files being written and the rows already in them (a re-run continues them without repeats)."""

    path: Path
    seen: set[str] = field(default_factory=set)
    pairs: int = 0  # written this session
    rated: int = 0
    repeated: int = 0  # rows already in the files, not written again
    before: int = 0  # rows the files held when the session began

    @classmethod
    def open(cls, path: Path) -> Collector:
        if path.suffix != ".jsonl":
            raise TunesmithError(f"--collect {path}: the file must end in .jsonl (one row per line, appended as "
                                 "you choose)", fix=f"--collect {path.with_suffix('.jsonl')}")
        if not path.parent.is_dir():
            raise TunesmithError(f"--collect {path}: the folder {path.parent} does not exist",
                                 fix="create it, or name a file in an existing folder")
        c = cls(path)
        for file in (path, kto_path(path)):
            if file.is_file():
                cut_torn_tail(file)  # a session killed mid-line left a torn last row: dropped, not misread
                rows = read_jsonl(file)
                c.seen |= {_key(r) for r in rows}
                c.before += len(rows)
        return c

    def _write(self, file: Path, row: dict[str, Any]) -> bool:
        key = _key(row)
        if key in self.seen:
            self.repeated += 1
            return False
        append_jsonl(file, [row])
        self.seen.add(key)
        return True

    def pair(self, prompt: tuple[Message, ...], chosen: str, rejected: str) -> bool:
        if " ".join(chosen.split()) == " ".join(rejected.split()):
            return False  # a pair of the same text teaches nothing (inspect would skip it as chosen_is_rejected)
        written = self._write(self.path, Pair(prompt, chosen, rejected, "chat").to_json())
        self.pairs += written
        return written

    def rate(self, prompt: tuple[Message, ...], completion: str, good: bool) -> bool:
        written = self._write(kto_path(self.path), Rated(prompt, completion, good, "chat").to_json())
        self.rated += written
        return written

    def summary(self) -> str:
        return (f"{self.pairs} pairs written to {self.path}, {self.rated} rated answers to {kto_path(self.path)}"
                + (f", {self.repeated} already there (not written again)" if self.repeated else "")
                + f"; train on them: tunesmith train --data {self.path} --set train.objective=dpo")


def _answer(session: Session, prompt: str, seed: int) -> str:
    settings = session.settings
    if settings.temperature < 1e-3:
        settings = settings.model_copy(update=SAMPLING)
    reply = None
    for item in stream(session.model, session.tokenizer, prompt, settings, seed=seed):
        if isinstance(item, Reply):
            reply = item
    assert reply is not None
    return reply.text


def two_answers(session: Session, other: Session | None, user: str, seed: int) -> tuple[list[str], list[str]]:
    """The two answers to show and where each came from: two samples, or tuned vs base in a seeded random order."""
    prompt = prompt_for(session, [Message("user", user)])
    if other is None:
        return [_answer(session, prompt, seed), _answer(session, prompt, seed + 1)], ["sample", "sample"]
    answers = [(_answer(session, prompt, seed), "tuned"), (_answer(other, prompt_for(other, [Message("user", user)]),
                                                                    seed), "base")]
    random.Random(seed).shuffle(answers)  # which model is 1 is not a hint
    return [a for a, _ in answers], [w for _, w in answers]


def _edit(read: Callable[[], str | None], write: Callable[[str], None]) -> str | None:
    write("your answer (one line): ")
    text = read()
    return checked_text(text.strip(), "chat --collect") if text and text.strip() else None


def apply_choice(c: Collector, prompt: tuple[Message, ...], answers: list[str], choice: str,
                 read: Callable[[], str | None], write: Callable[[str], None]) -> str | None:
    """Record one choice; returns what was recorded, or None for an unknown choice (asked again)."""
    choice = choice.strip().lower()
    if choice in ("1", "2"):
        i = int(choice) - 1
        return "pair" if c.pair(prompt, answers[i], answers[1 - i]) else "not written (the same pair, or the same text)"
    if choice == "b":
        done = [c.rate(prompt, a, False) for a in answers]
        return f"both marked bad ({sum(done)} rated rows)"
    if choice in ("+1", "-1", "+2", "-2"):
        return "rated" if c.rate(prompt, answers[int(choice[1]) - 1], choice[0] == "+") else "already rated"
    if choice in ("e1", "e2"):
        edited = _edit(read, write)
        if edited is None:
            return "no edit given: nothing written"
        return "edit written as the chosen answer" if c.pair(prompt, edited, answers[int(choice[1]) - 1]) else \
            "not written (the same pair, or the edit is the answer)"
    if choice == "s":
        return "skipped"
    return None


def collect(session: Session, other: Session | None, c: Collector, read: Callable[[], str | None],
            write: Callable[[str], None]) -> Collector:
    """The loop: a prompt, two answers, a choice; until /exit or the end of input."""
    write(f"collecting preferences into {c.path} ({c.before} rows there already). {CHOICES}\n")
    turn = 0
    while (line := read()) is not None:
        user = line.strip()
        if not user:
            continue
        if user in ("/exit", "/quit"):
            break
        try:
            answers, origins = two_answers(session, other, checked_text(user, "chat --collect"),
                                           session.settings.seed + 2 * turn)
        except TunesmithError as err:
            write(f"error: {err.render()}\n")
            continue
        turn += 1
        for i, a in enumerate(answers, 1):
            write(f"[{i}] {a}\n")
        system = (Message("system", session.system),) if session.system else ()
        prompt = (*system, Message("user", user))
        while True:
            write("choice> ")
            choice = read()
            if choice is None:
                return c
            done = apply_choice(c, prompt, answers, choice, read, write)
            if done is not None:
                break
            write(f"unknown choice {choice.strip()!r}; {CHOICES}\n")
        shown = f" ([1] was {origins[0]}, [2] {origins[1]})" if other is not None else ""
        write(f"({done}{shown})\n")
    write(c.summary() + "\n")
    return c
