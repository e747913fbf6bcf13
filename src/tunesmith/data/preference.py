"""Preference data: pairs of a chosen and a rejected answer to one prompt (DPO, ORPO, SimPO) and single answers
labelled good or bad (KTO), in the shapes other tools write, detected over all rows like the SFT formats.

Shapes (`PREFERENCE_FORMATS`):
  trl            TRL standard: prompt, chosen, rejected (text, or message lists: prompt = the turns before,
                 chosen/rejected = the assistant turn)
  trl_implicit   TRL implicit prompt: chosen and rejected are whole conversations sharing every turn but the last
  alpaca_ranking LLaMA-Factory: instruction, input, chosen, rejected
  sharegpt_ranking LLaMA-Factory: conversations (from/value) + chosen / rejected message objects
  chatml_intel   Axolotl: system, question, chosen, rejected
  chatml_argilla Axolotl: instruction, chosen_response, rejected_response
  kto            unpaired: prompt, completion, label (true = good)
A row that cannot be used is skipped and counted with its location and why (chosen == rejected, a side missing,
an empty side), as every reader does; `warnings` say what silently hurts (chosen systematically longer than
rejected: the length bias DPO learns; one prompt whose pairs contradict each other).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith import thinking
from tunesmith.data import llamafactory, parts, readers
from tunesmith.format_names import CALL_ROLES, ROLE_ALIASES, TOOL_ROLES
from tunesmith.errors import TunesmithError
from tunesmith.records import Message, RawRecord, Skip

LENGTH_BIAS_SHARE = 0.7  # chosen longer than rejected in at least this share of pairs: warn
LENGTH_BIAS_MIN_PAIRS = 10


@dataclass(frozen=True)
class Pair:
    """One preference: the conversation so far (ending on a user turn), then the chosen and the rejected answer."""

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    source: str

    def to_json(self) -> dict[str, Any]:  # TRL's conversational standard format
        return {"prompt": _turns(self.prompt),
                "chosen": [{"role": "assistant", "content": self.chosen}],
                "rejected": [{"role": "assistant", "content": self.rejected}]}

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str) -> Pair:
        """The conversational rows `to_json` writes (a run folder's data/*_pairs.jsonl)."""
        return cls(_messages(obj["prompt"]), _text(obj["chosen"], "chosen"), _text(obj["rejected"], "rejected"),
                   obj.get("source", source))


@dataclass(frozen=True)
class Rated:
    """One KTO example: a prompt and an answer marked good (True) or bad (False)."""

    prompt: tuple[Message, ...]
    completion: str
    good: bool
    source: str

    def to_json(self) -> dict[str, Any]:  # TRL's conversational unpaired (KTO) format
        return {"prompt": _turns(self.prompt), "completion": [{"role": "assistant", "content": self.completion}],
                "label": self.good}


def _turns(messages: tuple[Message, ...]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


@dataclass(frozen=True)
class PreferenceRead:
    """What one preference file holds: pairs or rated answers, skipped rows, and warnings."""

    path: Path
    encoding: str
    format: str
    pairs: tuple[Pair, ...]
    rated: tuple[Rated, ...]
    skipped: tuple[Skip, ...]
    warnings: tuple[str, ...]
    evidence: dict[str, int]
    unused: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)  # field -> (rows, a few values)
    described_by: str = ""  # a LLaMA-Factory ranking entry that named its fields

    @property
    def rows_read(self) -> int:  # pairs + rated + skipped: every row counted once
        return len(self.pairs) + len(self.rated) + len(self.skipped)


class _Bad(ValueError):
    def __init__(self, kind: str, what: str) -> None:
        super().__init__(what)
        self.kind = kind


def _parts(content: Any, where: str) -> Any:
    """A content list of text parts (OpenAI style) as its joined text (parts.joined), else as it is."""
    try:
        return parts.joined(content, where)
    except parts.NotTextPart as err:
        raise _Bad("not_text", str(err)) from None


def _text(value: Any, side: str) -> str:
    """An answer: text, a message object, or a list of messages whose last is the answer."""
    if isinstance(value, list) and value and isinstance(value[-1], dict) and "type" not in value[-1]:
        value = value[-1]
    reasoning = None
    if isinstance(value, dict):
        _no_calls(value, f"the {side} answer")
        reasoning = _reasoning(value, f"the {side} answer")
        value = value.get("content", value.get("value"))
    value = _parts(value, f"the {side} answer")
    if value is None:
        raise _Bad("pair_side_missing", f"no {side} answer")
    if not isinstance(value, str):
        raise _Bad("not_text", f"the {side} answer is {type(value).__name__}, expected text")
    if not value.strip():
        raise _Bad("empty_turn", f"the {side} answer is empty")
    text = unicodedata.normalize("NFC", value).strip()
    return thinking.answer_text(reasoning, text) if reasoning else text


def _reasoning(turn: dict, what: str) -> str | None:
    """An answer message's reasoning (thinking.MESSAGE_KEYS), which a pair keeps in the answer's text as the
    thinking block (thinking.answer_text), so that it is compared with the answer, never dropped."""
    found = [turn[k] for k in thinking.MESSAGE_KEYS if turn.get(k) not in (None, "")]
    if not found:
        return None
    text = _parts(found[0], f"{what}'s reasoning")
    if not isinstance(text, str) or len({str(v) for v in found}) > 1:
        raise _Bad("malformed", f"{what}'s reasoning is not one text")
    return unicodedata.normalize("NFC", text).strip() or None


def _no_calls(turn: dict, what: str) -> None:
    """A turn that calls a function, or a tool's output: preference pairs are read as text turns only, so such a row
    is a skip that says so (it read as a pair without its answer)."""
    role = str(turn.get("role", turn.get("from", ""))).strip().lower()
    if turn.get("tool_calls") or turn.get("function_call") or role in (*TOOL_ROLES, *CALL_ROLES):
        raise _Bad("pair_calls", f"{what} calls a function or is a tool's output")


def _messages(turns: Any) -> tuple[Message, ...]:
    out = []
    for t in turns:
        _no_calls(t, f"a turn ({t.get('role', t.get('from'))})")
        role = ROLE_ALIASES.get(str(t.get("role", t.get("from", ""))).strip().lower())
        content = _parts(t.get("content", t.get("value")), f"a {role or 'turn'} turn")
        if role is None or not isinstance(content, str):
            raise _Bad("malformed", f"a turn with role {t.get('role', t.get('from'))!r} and {type(content).__name__} "
                                    "content")
        text = unicodedata.normalize("NFC", content).strip()
        reasoning = _reasoning(t, f"a {role} turn")
        if reasoning and role != "assistant":
            raise _Bad("malformed", f"a {role} turn with reasoning (only an answer has one)")
        out.append(Message(role, thinking.answer_text(reasoning, text) if reasoning else text))
    return tuple(out)


def _user(text: Any, system: Any = None) -> tuple[Message, ...]:
    if not isinstance(text, str) or not text.strip():
        raise _Bad("no_prompt", "no prompt text")
    head = (Message("system", system.strip()),) if isinstance(system, str) and system.strip() else ()
    return (*head, Message("user", unicodedata.normalize("NFC", text).strip()))


def _prompt(value: Any) -> tuple[Message, ...]:
    return _messages(value) if isinstance(value, list) else _user(value)


def _implicit(row: dict) -> tuple[tuple[Message, ...], str, str]:
    chosen, rejected = _messages(row["chosen"]), _messages(row["rejected"])
    if not chosen or not rejected or chosen[:-1] != rejected[:-1]:
        raise _Bad("malformed", "chosen and rejected do not share every turn before their last")
    return chosen[:-1], _text(chosen[-1].content, "chosen"), _text(rejected[-1].content, "rejected")


def _is_turns(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, dict) for t in value)


Convert = Callable[[dict], tuple[tuple[Message, ...], str, str]]
PAIRED: dict[str, tuple[Callable[[Any], bool], Convert]] = {
    "trl": (lambda r: {"prompt", "chosen", "rejected"} <= set(r),
            lambda r: (_prompt(r["prompt"]), _text(r["chosen"], "chosen"), _text(r["rejected"], "rejected"))),
    "trl_implicit": (lambda r: {"chosen", "rejected"} <= set(r) and not {"prompt", "instruction", "question",
                                                                         "conversations"} & set(r)
                     and _is_turns(r["chosen"]) and _is_turns(r["rejected"]), _implicit),
    "alpaca_ranking": (lambda r: {"instruction", "chosen", "rejected"} <= set(r),
                       lambda r: (_user(r["instruction"] + (f"\n\n{r['input']}" if isinstance(r.get("input"), str)
                                                            and r["input"].strip() else "")),
                                  _text(r["chosen"], "chosen"), _text(r["rejected"], "rejected"))),
    "sharegpt_ranking": (lambda r: {"conversations", "chosen", "rejected"} <= set(r),
                         lambda r: (_messages(r["conversations"]), _text(r["chosen"], "chosen"),
                                    _text(r["rejected"], "rejected"))),
    "chatml_intel": (lambda r: {"question", "chosen", "rejected"} <= set(r),
                     lambda r: (_user(r["question"], r.get("system")), _text(r["chosen"], "chosen"),
                                _text(r["rejected"], "rejected"))),
    "chatml_argilla": (lambda r: {"instruction", "chosen_response", "rejected_response"} <= set(r),
                       lambda r: (_user(r["instruction"]), _text(r["chosen_response"], "chosen"),
                                  _text(r["rejected_response"], "rejected"))),
}
KTO = "kto"
PREFERENCE_FORMATS = (*PAIRED, KTO)
READS = {"trl": {"prompt", "chosen", "rejected"}, "trl_implicit": {"chosen", "rejected"},  # the fields each reads
         "alpaca_ranking": {"instruction", "input", "chosen", "rejected"},
         "sharegpt_ranking": {"conversations", "chosen", "rejected"},
         "chatml_intel": {"system", "question", "chosen", "rejected"},
         "chatml_argilla": {"instruction", "chosen_response", "rejected_response"},
         KTO: {"prompt", "completion", "label"}}
SIDES = {**{name: ("chosen", "rejected") for name in PAIRED}, "chatml_argilla": ("chosen_response", "rejected_response")}


def _is_kto(row: dict) -> bool:
    return {"prompt", "completion", "label"} <= set(row) and isinstance(row["label"], bool)


def detect(rows: list[Any]) -> tuple[str | None, Counter]:
    """The preference shape most rows fit (ties go to the earlier one), or None when no row fits any."""
    votes: Counter = Counter()
    for row in rows:
        if isinstance(row, dict):
            votes.update(name for name, (fits, _) in PAIRED.items() if fits(row))
            votes.update([KTO] if _is_kto(row) else [])
    if not votes:
        return None, votes
    return max(PREFERENCE_FORMATS, key=lambda n: (votes[n], -PREFERENCE_FORMATS.index(n))), votes


def looks_like_preferences(path: Path, encoding: str = "auto") -> bool:
    """Whether most rows of the file fit a preference shape (inspect and train ask before the SFT formats do)."""
    raw, _, _, _ = _read(path, encoding)
    fmt, votes = detect([r.fields for r in raw])
    return fmt is not None and votes[fmt] * 2 > len(raw)


def _read(path: Path, encoding: str) -> tuple[list[RawRecord], list[Skip], str, str]:
    """The file's records, with the fields a LLaMA-Factory ranking or KTO entry (dataset_info.json) names read
    as the ones its shapes use; and that entry's line for inspect ("" where none)."""
    raw, skipped, enc = readers.read(path, encoding)
    described = llamafactory.describe(path)
    if described is not None and described.ranking:
        raw = [RawRecord(r.location, llamafactory.renamed(r.fields, described.columns)) for r in raw]
    elif described is not None and described.kto_tag:
        raw = [RawRecord(r.location, llamafactory.rated(r.fields, described)) for r in raw]
    else:
        return raw, skipped, enc, ""
    return raw, skipped, enc, described.line()


def preference_files(specs: list[Path], encoding: str = "auto") -> list[Path] | None:
    """The files behind `specs` (files, folders, globs) when every one holds preference data, else None: inspect
    and preview ask this before taking their preference path."""
    files = [f for spec in specs for f in readers.expand(spec)]
    return files if files and all(looks_like_preferences(f, encoding) for f in files) else None


def load(path: Path, *, encoding: str = "auto") -> PreferenceRead:
    """Read one preference file: every row a pair (or a rated answer), or a skip with its location and why."""
    raw, skipped, enc, described_by = _read(path, encoding)
    skipped = list(skipped)
    fmt, votes = detect([r.fields for r in raw])
    if fmt is None:
        raise TunesmithError("no row has a preference shape (prompt/chosen/rejected, or prompt/completion/label)",
                             where=str(path), fix="see the shapes tunesmith reads in docs/preference.md")
    pairs, rated = [], []
    for rec in raw:
        row = rec.fields
        try:
            if not isinstance(row, dict) or not (_is_kto(row) if fmt == KTO else PAIRED[fmt][0](row)):
                sides = SIDES.get(fmt, ())
                missing = [side for side in sides if isinstance(row, dict) and side not in row]
                if len(missing) == 1:
                    raise _Bad("pair_side_missing", f"no {missing[0]} answer")
                raise _Bad("wrong_format", f"does not fit the {fmt} shape of the other rows")
            if fmt == KTO:
                rated.append(Rated(_prompt(row["prompt"]), _text(row["completion"], "completion"), row["label"],
                                   rec.location))
                continue
            prompt, chosen, rejected = PAIRED[fmt][1](row)
            if not prompt or prompt[-1].role != "user":
                raise _Bad("no_prompt", "the prompt does not end on a user turn")
            if " ".join(chosen.split()) == " ".join(rejected.split()):
                raise _Bad("chosen_is_rejected", "the chosen and the rejected answer are the same text")
            pairs.append(Pair(prompt, chosen, rejected, rec.location))
        except _Bad as err:
            skipped.append(Skip(rec.location, str(err), err.kind))
        except (KeyError, TypeError, AttributeError) as err:
            skipped.append(Skip(rec.location, f"malformed {fmt} row ({type(err).__name__}: {err})", "malformed"))
    used = {r.source for r in (*pairs, *rated)}
    lists = sum(parts.lists_in(rec.fields) for rec in raw if rec.location in used)
    joined = [f"{lists} answers or turns give their content as a list of text parts (OpenAI style): each read as "
              "its parts' texts one after another, as chat templates render them"] if lists else []
    return PreferenceRead(path, enc, fmt, tuple(pairs), tuple(rated), tuple(skipped),
                          tuple(joined + length_bias(pairs) + contradictions(pairs)), dict(votes),
                          readers.unused_fields([rec.fields for rec in raw if rec.location in used],
                                                lambda row: READS[fmt]), described_by)



def length_bias(pairs: list[Pair]) -> list[str]:
    """The warning for chosen answers that are mostly the longer ones: DPO then learns "longer is better"."""
    if len(pairs) < LENGTH_BIAS_MIN_PAIRS:
        return []
    longer = sum(len(p.chosen) > len(p.rejected) for p in pairs) / len(pairs)
    ratio = sum(len(p.chosen) for p in pairs) / max(sum(len(p.rejected) for p in pairs), 1)
    if longer < LENGTH_BIAS_SHARE:
        return []
    return [f"the chosen answer is the longer one in {longer:.0%} of {len(pairs)} pairs ({ratio:.1f}x as long on "
            "average): DPO learns to prefer length itself; add pairs where the chosen answer is the shorter one, "
            "or use SimPO / ORPO, which normalise by length"]


def contradictions(pairs: list[Pair]) -> list[str]:
    """One prompt with a pair (a over b) and another (b over a): the two cancel out in training."""
    seen: dict[tuple, Pair] = {}
    found = []
    for p in pairs:
        key = (p.prompt, p.chosen, p.rejected)
        flipped = seen.get((p.prompt, p.rejected, p.chosen))
        if flipped is not None:
            found.append(f"{flipped.source} and {p.source}")
        seen[key] = p
    if not found:
        return []
    return [f"{len(found)} pairs contradict an earlier pair of the same prompt (the chosen answer of one is the "
            f"rejected answer of the other; they cancel out): {', '.join(found[:3])}"
            + (f" and {len(found) - 3} more" if len(found) > 3 else "")]
