"""Preference data for training: every configured preference file read, duplicate pairs removed, and a seeded
split by prompt (the same rule as SFT data: pairs sharing a first user turn never straddle train and eval).

Each pair also stands as one conversation (the prompt with the chosen answer, sourced at the pair's row), so
the counts, the run folder's data files, the report's data section and the held-out generations (scored
against the chosen answers) are the SFT path's own:

    prepare_preferences(cfg.data, objective) -> PreferenceData(data: PreparedData, train, eval)

KTO trains on rated answers: a KTO file's rows, or each pair taken apart (chosen = good, rejected = bad).
Held-out rows of a KTO file have no pair to compare; their good answers are the generation eval rows and the
bad ones train (a bad answer has no reference to score against).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tunesmith.config import DataConfig
from tunesmith.data import preference, readers
from tunesmith.data.prepare import MEANINGFUL_EVAL, limit_rows, split
from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, Message, PreparedData, ReadResult, Skip
from tunesmith.skips import skip_problems

Item = preference.Pair | preference.Rated
PAIRED_OBJECTIVES = ("dpo", "orpo", "simpo")


@dataclass(frozen=True)
class PreferenceData:
    data: PreparedData  # one conversation per pair or rated answer; what counts, splits and evaluates
    train: tuple[Item, ...]  # pairs (dpo, orpo, simpo) or rated answers (kto), in data.train's order
    eval: tuple[preference.Pair, ...]  # held-out pairs: preference accuracy, base vs tuned (none for a KTO file)
    held_rated: tuple[preference.Rated, ...] = ()  # a KTO file's held-out good answers (it has no pairs to hold out)


def conversation(item: Item) -> Conversation:
    answer = item.chosen if isinstance(item, preference.Pair) else item.completion
    return Conversation((*item.prompt, Message("assistant", answer)), item.source)


def _key(item: Item) -> str:
    sides = (item.chosen, item.rejected) if isinstance(item, preference.Pair) else (item.completion, str(item.good))
    text = "\x1e".join([*(f"{m.role}\x1f{' '.join(m.content.split())}" for m in item.prompt),
                        *(" ".join(s.split()) for s in sides)])
    return hashlib.sha256(text.encode()).hexdigest()


def _dedup(items: list[Item]) -> tuple[list[Item], list[Skip]]:
    seen: dict[str, str] = {}
    out, dups = [], []
    for item in items:
        first = seen.setdefault(_key(item), item.source)
        if first == item.source:
            out.append(item)
        else:
            dups.append(Skip(item.source, f"duplicate of {first}", "duplicate"))
    return out, dups


def _read(cfg: DataConfig) -> tuple[list[preference.PreferenceRead], list[preference.PreferenceRead]]:
    def files(specs: list) -> list[preference.PreferenceRead]:
        paths = [p for spec in specs for p in readers.expand(spec)]
        for p in paths:
            if not preference.looks_like_preferences(p, cfg.encoding):
                raise TunesmithError("not a preference file: train.objective dpo, orpo, simpo and kto train on pairs "
                                     "of a chosen and a rejected answer (or answers marked good or bad)",
                                     where=str(p), fix="give a preference file (docs/preference.md lists the shapes), "
                                                       "or --set train.objective=sft to learn the answers")
        return [preference.load(p, encoding=cfg.encoding) for p in paths]
    return files(cfg.train), files(cfg.eval)


def _as_read_result(r: preference.PreferenceRead) -> ReadResult:
    convs = tuple(conversation(i) for i in (*r.pairs, *r.rated))
    return ReadResult(r.path, r.encoding, r.format, convs, r.skipped, r.rows_read, r.rows_read, r.evidence)


def _check_trainable(items: list[Item], objective: str, where: str) -> None:
    if objective in PAIRED_OBJECTIVES and any(isinstance(i, preference.Rated) for i in items):
        raise TunesmithError(f"train.objective {objective} needs pairs; {where} holds answers marked good or bad",
                             fix="--set train.objective=kto trains on rated answers")


def prepare_preferences(cfg: DataConfig, objective: str) -> PreferenceData:
    """Read, deduplicate and split preference files (or use the explicit eval files)."""
    train_files, eval_files = _read(cfg)
    files = (*train_files, *eval_files)
    skipped = [s for f in files for s in f.skipped]
    if cfg.strict and skipped:
        raise TunesmithError(f"{len(skipped)} unusable rows (data.strict is on)", problems=skip_problems(skipped),
                             fix="fix these rows, or turn data.strict off to skip and count them")
    items, dups = _dedup([i for f in files for i in (*f.pairs, *f.rated)])
    _check_trainable(items, objective, ", ".join(str(f.path) for f in train_files))
    by_source = {i.source: i for i in items}
    held = {i.source for f in eval_files for i in (*f.pairs, *f.rated)}
    if eval_files:
        train_items = [i for i in items if i.source not in held]
        eval_items = [i for i in items if i.source in held]
    else:
        # Split over what can be scored: pairs, or the good answers of a rated file (bad ones always train).
        pool = [i for i in items if not isinstance(i, preference.Rated) or i.good]
        tr, ev = split([conversation(i) for i in pool], cfg.eval_fraction, cfg.min_eval, cfg.seed) if pool else ([], [])
        eval_sources = {c.source for c in ev}
        train_items = [i for i in items if i.source not in eval_sources]
        eval_items = [by_source[c.source] for c in ev]
    if not train_items:
        raise TunesmithError("no usable pairs in the training data", problems=skip_problems(skipped),
                             fix="run `tunesmith inspect FILE` to see how each row was read")
    train_convs, left_out = limit_rows([conversation(i) for i in train_items], cfg)
    kept = {c.source for c in train_convs}
    train_items = [i for i in train_items if i.source in kept]
    warnings = [w for f in files for w in f.warnings]
    if len(eval_items) < MEANINGFUL_EVAL:
        warnings.append(f"only {len(eval_items)} held-out pairs: before/after differences will be mostly noise")
    data = PreparedData(tuple(train_convs), tuple(conversation(i) for i in eval_items),
                        tuple(_as_read_result(f) for f in files), tuple(dups), tuple(warnings), left_out)
    if objective == "kto":
        train_items = [r for i in train_items for r in unpaired(i)]
    return PreferenceData(data, tuple(train_items), tuple(i for i in eval_items if isinstance(i, preference.Pair)),
                          tuple(i for i in eval_items if isinstance(i, preference.Rated)))


def unpaired(item: Item) -> tuple[preference.Rated, ...]:
    """A pair as two rated answers (KTO): the chosen one good, the rejected one bad."""
    if isinstance(item, preference.Rated):
        return (item,)
    return (preference.Rated(item.prompt, item.chosen, True, f"{item.source}#chosen"),
            preference.Rated(item.prompt, item.rejected, False, f"{item.source}#rejected"))
