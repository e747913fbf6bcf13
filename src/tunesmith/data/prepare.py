"""Deduplicate and split conversations; write nothing here (the pipeline saves them via rundir).

The split is seeded and grouped by prompt: rows sharing the same first user turn never straddle
train and eval, because real data sets repeat one paragraph with several questions.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import DataConfig
from tunesmith.data import formats, personal
from tunesmith.data import readers
from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, Message, PreparedData, ReadResult, Skip
from tunesmith.skips import skip_problems

MEANINGFUL_EVAL = 20  # below this many eval rows a before/after difference is mostly noise


def _key(conv: Conversation) -> str:
    # Whitespace- and Unicode-normalised, so "a  b" and "a b" count as the same conversation; calls and the tools
    # offered are part of it (the same question answered with other calls, or with other tools at hand, differs), and
    # so is an answer's reasoning (the same answer reached by other thinking is another row to learn from).
    text = "\x1e".join(f"{m.role}\x1f{_plain(m.content)}" + "".join(f"\x1d{c.name}{c.arguments}" for c in m.tool_calls)
                       + (f"\x1c{_plain(m.reasoning)}" if m.reasoning else "") for m in conv.messages) \
        + (f"\x1e{conv.tools}" if conv.tools else "")
    return hashlib.sha256(text.encode()).hexdigest()


def _prompt_group(conv: Conversation) -> str:
    """Rows that open with the same question split together; a text row (no user turn) by its first part."""
    first_user = next((m.content for m in conv.messages if m.role == "user"), conv.messages[0].content)
    return hashlib.sha256(" ".join(first_user.split()).encode()).hexdigest()


def dedup(convs: list[Conversation], seen: dict[str, tuple[str, tuple]] | None = None
          ) -> tuple[list[Conversation], list[Skip]]:
    """Keep the first of each (whitespace/Unicode-normalised) conversation; the rest are reported.

    `seen` (normalised key -> first source and its messages) carries over between calls, so eval rows
    can claim their conversations before the train rows are deduplicated against them.
    """
    seen = {} if seen is None else seen
    out, dups = [], []
    for c in convs:
        k = _key(c)
        if k in seen:
            first, messages = seen[k]
            how = "" if messages == c.messages else " (same after whitespace/Unicode normalisation)"
            dups.append(Skip(c.source, f"duplicate of {first}{how}", "duplicate"))
        else:
            seen[k] = (c.source, c.messages)
            out.append(c)
    return out, dups


@dataclass(frozen=True)
class Contradiction:
    """One prompt (the conversation before its last answer, normalised) answered differently in several rows."""

    prompt: str
    sources: tuple[str, ...]
    answers: tuple[str, ...]  # the distinct answers, in file order

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "sources": list(self.sources), "answers": list(self.answers)}


def contradictions(convs: list[Conversation]) -> list[Contradiction]:
    """Prompts that several rows answer differently: trained on both, the model learns neither answer."""
    groups: dict[str, list[Conversation]] = {}
    for c in convs:
        if c.messages[-1].role == "assistant":
            groups.setdefault(_key(Conversation(c.messages[:-1], c.source, tools=c.tools)), []).append(c)
    out = []
    for rows in groups.values():
        answers = list(dict.fromkeys(_answer(c.messages[-1]) for c in rows))
        if len(answers) > 1:
            prompt = next(m.content for m in reversed(rows[0].messages[:-1]) if m.role == "user")
            out.append(Contradiction(prompt, tuple(c.source for c in rows), tuple(answers)))
    return out


def contradiction_lines(found: tuple[Contradiction, ...] | list[Contradiction], shown: int = 3) -> list[str]:
    """The warning inspect and plan print: the count, then a few prompts with their answers."""
    if not found:
        return []
    rows = sum(len(c.sources) for c in found)
    lines = [f"{len(found)} prompt{' is' if len(found) == 1 else 's are'} answered differently in different rows "
             f"({rows} rows, all kept and trained; if only one answer is right, keep that row):"]
    for c in found[:shown]:
        answers = " / ".join(repr(a[:60]) for a in c.answers)
        lines.append(f"  {', '.join(c.sources[:4])}: {c.prompt[:60]!r} -> {answers}")
    return lines + ([f"  ... and {len(found) - shown} more"] if len(found) > shown else [])


def _answer(m: Message) -> str:
    """An answer as contradictions compare it: its text, then its calls."""
    return " ".join([_plain(m.content), *(f"{c.name}({c.arguments})" for c in m.tool_calls)]).strip()


def _plain(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def split(convs: list[Conversation], fraction: float, min_eval: int, seed: int
          ) -> tuple[list[Conversation], list[Conversation]]:
    """Seeded split by prompt group: the same data and seed always give the same split."""
    groups: dict[str, list[Conversation]] = {}
    for c in convs:
        groups.setdefault(_prompt_group(c), []).append(c)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    want = max(min_eval, round(len(convs) * fraction))
    if want >= len(convs):
        raise TunesmithError(f"only {len(convs)} usable conversations; cannot hold out {want} for eval",
                             fix="add data, lower data.min_eval, or give an explicit data.eval file")
    eval_rows: list[Conversation] = []
    train_rows: list[Conversation] = []
    for k in keys:
        (eval_rows if len(eval_rows) < want else train_rows).extend(groups[k])
    return train_rows, eval_rows


def read_all(specs: list[Path], cfg: DataConfig) -> list[ReadResult]:
    """Read every file behind `specs` (files, folders, globs) with the config's format options."""
    return [formats.load(p, format=cfg.format, roles=cfg.roles, columns=cfg.columns, system=cfg.system,
                         encoding=cfg.encoding, group_by=cfg.group_by) for spec in specs for p in readers.expand(spec)]


def check_strict(files: list[ReadResult]) -> None:
    skipped = [s for f in files for s in f.skipped]
    if skipped:
        raise TunesmithError(f"{len(skipped)} unusable rows (data.strict is on)", problems=skip_problems(skipped),
                             fix="fix these rows, or turn data.strict off to skip and count them")


def prepare(cfg: DataConfig) -> PreparedData:
    """Read every configured file, dedup, and split (or use the explicit eval files).

    >>> prepare(DataConfig(train=[Path("a.jsonl")]))  # doctest: +SKIP
    """
    train_files = read_all(cfg.train, cfg)
    eval_files = read_all(cfg.eval, cfg)
    files: tuple[ReadResult, ...] = (*train_files, *eval_files)
    if cfg.strict:
        check_strict(list(files))
    seen: dict[str, tuple[str, tuple]] = {}
    if eval_files:
        # Explicit eval rows win: a train row that repeats one is a duplicate, so nothing leaks into eval.
        eval_rows, dups = dedup([c for f in eval_files for c in f.conversations], seen)
        train_rows, train_dups = dedup([c for f in train_files for c in f.conversations], seen)
        dups += train_dups
    else:
        pool, dups = dedup([c for f in train_files for c in f.conversations], seen)
        if pool:
            try:
                train_rows, eval_rows = split(pool, cfg.eval_fraction, cfg.min_eval, cfg.seed)
            except TunesmithError as err:  # too few rows: the rows that were not read are the likely cause
                raise TunesmithError(err.what, where=err.where, fix=err.fix,
                                     problems=skip_problems([s for f in files for s in f.skipped])) from None
        else:
            train_rows, eval_rows = [], []
    if not train_rows:
        raise TunesmithError("no usable conversations in the training data",
                             problems=skip_problems([s for f in files for s in f.skipped]),
                             fix="run `tunesmith inspect FILE` to see how each row was read")
    warnings = [*contradiction_lines(contradictions([*train_rows, *eval_rows])), *unused_lines(files),
                *personal.warning([*train_rows, *eval_rows])]
    if len(eval_rows) < MEANINGFUL_EVAL:
        warnings.append(f"only {len(eval_rows)} eval rows: before/after differences will be mostly noise")
    raw = sum(c.untemplated for c in (*train_rows, *eval_rows))
    if cfg.system is not None and raw:
        warnings.append(f"data.system is not added to the {raw} plain-text or segments rows: they are trained as "
                        "written, without a chat template to carry a system turn")
    train_rows, left_out = limit_rows(train_rows, cfg)
    return PreparedData(tuple(train_rows), tuple(eval_rows), files, tuple(dups), tuple(warnings), left_out)


def unused_lines(files: tuple[ReadResult, ...]) -> list[str]:
    return [f"{f.path.name}: field {k!r} is read but not used ({n} rows; e.g. {', '.join(map(repr, v))}); "
            f"--set data.group_by={k} breaks the report down by it" for f in files for k, (n, v) in f.unused.items()]


def limit_rows(rows: list[Conversation], cfg: DataConfig) -> tuple[list[Conversation], tuple[Skip, ...]]:
    """`data.max_rows`: the first rows of the (seeded, shuffled by prompt group) train split; the rest counted."""
    if cfg.max_rows is None or len(rows) <= cfg.max_rows:
        return rows, ()
    why = f"left out by data.max_rows={cfg.max_rows}"
    return rows[: cfg.max_rows], tuple(Skip(c.source, why, "row_limit") for c in rows[cfg.max_rows:])
