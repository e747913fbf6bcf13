"""What `tunesmith inspect` shows: one whole-dataset report, before any training, in text or JSON.

It reads through the same readers/formats/dedup as training, so what it reports is what `train` will use.
"""

from __future__ import annotations


import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import toolcalls
from tunesmith.config import DataConfig
from tunesmith.data import personal
from tunesmith.data.prepare import Contradiction, check_strict, contradiction_lines, contradictions, dedup, read_all
from tunesmith.data.preference import PreferenceRead
from tunesmith.format_names import SEGMENT
from tunesmith.records import Conversation, Message, ReadResult, Skip
from tunesmith.skips import skip_lines

SAMPLES_SHOWN = 3


@dataclass(frozen=True)
class DataSummary:
    files: tuple[ReadResult, ...]
    usable: tuple[Conversation, ...]  # after dedup
    duplicates: tuple[Skip, ...]
    char_lengths: tuple[int, ...]
    token_lengths: tuple[int, ...] = ()  # only with a model
    max_length: int | None = None  # the configured one, or what `auto` would choose
    notices: tuple[str, ...] = ()  # what the template stage did to make the rows renderable
    contradictions: tuple[Contradiction, ...] = ()  # one prompt, different answers (all kept, all trained)
    personal: tuple[personal.Found, ...] = ()  # rows with phone numbers, e-mail addresses, ... (all kept)

    @property
    def skipped(self) -> tuple[Skip, ...]:
        return tuple(s for f in self.files for s in f.skipped)


def _stats(values: tuple[int, ...]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"min": ordered[0], "median": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


def summarize(specs: list[Path], cfg: DataConfig, *, model: str | None = None,
              max_length: int | str = "auto") -> DataSummary:
    """Read, validate and dedup `specs`; with a model, also measure every conversation in tokens.

    >>> summarize([Path("corpus.json")], DataConfig(train=[Path("corpus.json")])).usable  # doctest: +SKIP
    """
    files = read_all(specs, cfg)
    if cfg.strict:
        check_strict(files)
    usable, dups = dedup([c for f in files for c in f.conversations])
    clashes = tuple(contradictions(usable))
    chars = tuple(sum(len(m.content) + len(m.reasoning or "") for m in c.messages) for c in usable)
    tokens: tuple[int, ...] = ()
    notices: tuple[str, ...] = ()
    limit = None
    if model is not None and usable:
        from tunesmith import models
        from tunesmith.config import TemplateConfig
        from tunesmith.template import UNLIMITED, max_length_used, render_dataset

        _, tok = models.load(model, tokenizer_only=True)
        # Untruncated, through the same template stage as training: the point is to see what max_length drops.
        r = render_dataset(tok, usable, TemplateConfig(max_length=UNLIMITED))
        length = {e.source: len(e.input_ids) for e in r.examples} | {s.location: s.tokens or 0 for s in r.skipped}
        tokens, notices = tuple(length[c.source] for c in usable), r.notices
        limit = max_length_used(TemplateConfig(max_length=max_length), r.examples, models.context_length(model))
    return DataSummary(tuple(files), tuple(usable), tuple(dups), chars, tokens, limit, notices, clashes,
                       personal.scan(usable))


def to_json(s: DataSummary) -> dict[str, Any]:
    formats = sorted({f.format for f in s.files})
    encodings = sorted({f.encoding for f in s.files})
    roles: dict[str, str] = {}
    for f in s.files:
        roles.update(f.roles)
    out: dict[str, Any] = {
        "format": formats[0] if len(formats) == 1 else formats,
        "encoding": encodings[0] if len(encodings) == 1 else encodings,
        "conversations": len(s.usable),
        "assistant_turns": sum(1 for c in s.usable for m in c.messages if m.role == "assistant"),
        "untrained_turns": sum(1 for c in s.usable for m in c.messages if m.role == "assistant" and not m.train),
        "segments": {"learned": sum(1 for c in s.usable for m in c.messages if m.role == SEGMENT and m.train),
                     "context": sum(1 for c in s.usable for m in c.messages if m.role == SEGMENT and not m.train)},
        "function_calling": {"rows": sum(1 for c in s.usable if c.calls_tools),
                             "offering_tools": sum(1 for c in s.usable if c.tools is not None),
                             "calls": sum(len(m.tool_calls) for c in s.usable for m in c.messages),
                             "tool_outputs": sum(1 for c in s.usable for m in c.messages if m.role == "tool")},
        "reasoning": {"rows": sum(1 for c in s.usable if any(m.reasoning for m in c.messages)),
                      "answers": sum(1 for c in s.usable for m in c.messages if m.reasoning)},
        "rows_read": sum(f.rows_read for f in s.files),
        "skipped": [{"location": k.location, "reason": k.reason, "kind": k.kind} for k in s.skipped],
        "duplicates": len(s.duplicates),
        "duplicate_rows": [{"location": k.location, "reason": k.reason} for k in s.duplicates],
        "roles": roles,
        "files": [{"path": str(f.path), "format": f.format, "encoding": f.encoding, "records": f.records,
                   "rows_read": f.rows_read, "conversations": len(f.conversations), "skipped": len(f.skipped),
                   "evidence": f.evidence, "text_parts_joined": f.text_parts, "set_aside": f.set_aside,
                   "described_by": f.described_by,
                   "unused_fields": {k: {"rows": n, "values": list(v)} for k, (n, v) in f.unused.items()}}
                  for f in s.files],
        "contradictions": [c.to_json() for c in s.contradictions],
        "personal": [f.to_json() for f in s.personal],
        "chars": _stats(s.char_lengths),
    }
    if s.token_lengths:
        out["tokens"] = {**_stats(s.token_lengths),
                         "per_char": round(sum(s.token_lengths) / max(sum(s.char_lengths), 1), 3),
                         "max_length": s.max_length,
                         "over_max_length": sum(1 for n in s.token_lengths if n > (s.max_length or 0))}
        out["notices"] = list(s.notices)
    return out


def render(s: DataSummary) -> str:
    """The human view: what was understood, what was not, and three samples."""
    j = to_json(s)
    lines = []
    for f in j["files"]:
        why = ", ".join(f"{n} rows fit {k}" for k, n in sorted(f["evidence"].items(), key=lambda kv: -kv[1]))
        lines.append(f"{f['path']}\n  encoding {f['encoding']}; format {f['format']}"
                     + (f" ({why})" if why else " (set explicitly)")
                     + f"\n  {f['records']} records -> {f['conversations']} usable, {f['skipped']} skipped")
        if f["described_by"]:
            lines.append(f"  {f['described_by']}")
        if f["text_parts_joined"]:
            lines.append(f"  {f['text_parts_joined']} turns give their content as a list of text parts (OpenAI "
                         "style): each read as its parts' texts one after another, as chat templates render them")
        lines.extend(f"  not read as turns: {n} {what}" for what, n in f["set_aside"].items())
        lines.extend(_unused_line(k, u).lstrip("\n") for k, u in f["unused_fields"].items())
    parts = (f"{j['segments']['learned']} learned segments, {j['segments']['context']} context only"
             if any(j["segments"].values()) else f"{j['assistant_turns']} assistant turns")
    lines.append(f"\n{j['conversations']} usable conversations ({parts}), "
                 f"{len(j['skipped'])} rows skipped, {j['duplicates']} duplicates removed "
                 f"(read {j['rows_read']} = {j['conversations']} + {len(j['skipped'])} + {j['duplicates']})")
    if j["untrained_turns"]:
        lines.append(f"{j['untrained_turns']} assistant turns have weight 0 (OpenAI's mark, or inside a "
                     "prompt-completion row's prompt): kept in the prompt, not trained on")
    if (fc := j["function_calling"])["rows"]:
        n = lambda count, word: f"{count} {word}{'' if count == 1 else 's'}"  # noqa: E731
        lines.append(f"function calling in {n(fc['rows'], 'row')}: {n(fc['calls'], 'call')}, "
                     f"{n(fc['tool_outputs'], 'tool output')} (context, not trained on), tools offered in "
                     f"{n(fc['offering_tools'], 'row')}")
    if (th := j["reasoning"])["rows"]:
        lines.append(f"reasoning (thinking before the answer) in {th['rows']} rows, {th['answers']} answers: learned "
                     "with the answer, scored apart from it")
    if j["roles"]:
        lines.append("roles: " + ", ".join(f"{k} -> {v}" for k, v in j["roles"].items()))
    if s.skipped or s.duplicates:  # a few lines per kind of problem, whatever the file's size
        lines.append("\nnot used:")
        lines.extend(f"  {line}" for line in skip_lines((*s.skipped, *s.duplicates), s.max_length))
    if s.contradictions:
        lines.append("")
        lines.extend(contradiction_lines(s.contradictions))
    if s.personal:
        lines.append("")
        lines.extend(personal.lines(s.personal))
    if j["chars"]:
        c = j["chars"]
        lines.append(f"\nlength in characters: min {c['min']}, median {c['median']:g}, p95 {c['p95']}, max {c['max']}")
    lines.extend(f"notice: {n}" for n in s.notices)
    if "tokens" in j:
        t = j["tokens"]
        lines.append(f"length in tokens:     min {t['min']}, median {t['median']:g}, p95 {t['p95']}, max {t['max']}"
                     f"; {t['per_char']} tokens/char; {t['over_max_length']} over max_length {t['max_length']}")
    for c in s.usable[:SAMPLES_SHOWN]:
        lines.append(f"\n--- {c.source}")
        if c.tools is not None:
            lines.append(f"  [tools] {', '.join(toolcalls.names(c.tools))}")
        lines.extend((f"  [thinking] {_cut(m.reasoning, 200)}\n" if m.reasoning else "")
                     + f"  [{m.role}{_untrained(m)}] {_cut(m.content, 300)}"
                     + "".join(f"\n  [call] {k.name}({k.arguments[:200]})" for k in m.tool_calls) for m in c.messages)
    return "\n".join(lines)


def _cut(text: str, n: int) -> str:
    return f"{text[:n]}{'...' if len(text) > n else ''}"


def _unused_line(key: str, u: dict[str, Any]) -> str:
    return f"\n  field {key!r} is read but not used ({u['rows']} rows; e.g. {', '.join(map(repr, u['values']))})"


def _untrained(m: Message) -> str:
    return "" if m.train else ", label false: context only" if m.role == SEGMENT else ", weight 0: not trained on"


def preference_json(reads: list[PreferenceRead]) -> dict[str, Any]:
    """`inspect --json` on preference files: pairs (or KTO examples), skips, warnings, per file."""
    formats = sorted({r.format for r in reads})
    return {"format": formats[0] if len(formats) == 1 else formats, "kind": "preference",
            "pairs": sum(len(r.pairs) for r in reads), "examples": sum(len(r.rated) for r in reads),
            "rows_read": sum(r.rows_read for r in reads),
            "skipped": [{"location": k.location, "reason": k.reason, "kind": k.kind} for r in reads for k in r.skipped],
            "warnings": [w for r in reads for w in r.warnings],
            "files": [{"path": str(r.path), "format": r.format, "encoding": r.encoding, "pairs": len(r.pairs),
                       "examples": len(r.rated), "skipped": len(r.skipped), "evidence": r.evidence,
                       "described_by": r.described_by,
                       "unused_fields": {k: {"rows": n, "values": list(v)} for k, (n, v) in r.unused.items()}}
                      for r in reads]}


def render_preferences(reads: list[PreferenceRead]) -> str:
    j = preference_json(reads)
    lines = [f"{f['path']}\n  encoding {f['encoding']}; preference format {f['format']}\n  "
             f"{f['pairs'] + f['examples'] + f['skipped']} rows -> {f['pairs']} pairs"
             + (f", {f['examples']} rated answers" if f["examples"] else "") + f", {f['skipped']} skipped"
             + (f"\n  {f['described_by']}" if f["described_by"] else "")
             + "".join(_unused_line(k, u) for k, u in f["unused_fields"].items()) for f in j["files"]]
    skipped = tuple(k for r in reads for k in r.skipped)
    if skipped:
        lines += ["\nnot used:", *(f"  {line}" for line in skip_lines(skipped))]
    lines += [f"warning: {w}" for w in j["warnings"]]
    for r in reads:
        for p in r.pairs[:SAMPLES_SHOWN]:
            lines.append(f"\n--- {p.source}")
            lines += [f"  [{m.role}] {m.content[:200]}" for m in p.prompt]
            lines += [f"  [chosen] {p.chosen[:200]}", f"  [rejected] {p.rejected[:200]}"]
        for x in r.rated[:SAMPLES_SHOWN]:
            lines += [f"\n--- {x.source} ({'good' if x.good else 'bad'})",
                      *(f"  [{m.role}] {m.content[:200]}" for m in x.prompt), f"  [answer] {x.completion[:200]}"]
    return "\n".join(lines)
