"""The prompt templates synth sends: shipped per language (synth/prompts/en.json, ko.json), any of them
overridable by a JSON file with the same keys ({seed}, {n}, {question}, {passages} are filled in)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.records import Message
from tunesmith.synth.retrieve import Passage

KEYS = {"question_system": (), "question_user": ("seed", "n"), "question_user_docs": ("seed", "n", "passages"),
        "answer_system": (),
        "answer_user": ("question", "passages"), "answer_user_no_docs": ("question",)}


def load(lang: str, override: Path | None = None) -> dict[str, str]:
    shipped = json.loads((resources.files("tunesmith") / "synth" / "prompts" / f"{lang}.json").read_text("utf-8"))
    if override is None:
        return shipped
    try:
        mine = json.loads(override.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TunesmithError(f"cannot read the prompt file {override}: {err}", where="synth",
                             fix="a JSON object with any of the keys " + ", ".join(KEYS)) from None
    unknown = [k for k in mine if k not in KEYS] if isinstance(mine, dict) else ["(not a JSON object)"]
    if unknown:
        raise TunesmithError(f"{override}: unknown prompt keys {unknown}", where="synth",
                             fix="use only " + ", ".join(KEYS))
    for key, text in mine.items():
        missing = [f"{{{name}}}" for name in KEYS[key] if f"{{{name}}}" not in str(text)]
        if missing:
            raise TunesmithError(f"{override}: the prompt {key} lacks {', '.join(missing)}", where="synth",
                                 fix=f"put {', '.join(missing)} where the value goes")
    return {**shipped, **mine}


def _shown(passages: tuple[Passage, ...]) -> str:
    return "\n\n".join(f"[{i}] {x.text}" for i, x in enumerate(passages, 1))


def questions(p: dict[str, str], seed: str, n: int, passages: tuple[Passage, ...] = ()) -> list[Message]:
    """The request for `n` questions; with --docs it shows the seed word's own top passages, so the questions
    stay on the documents' topic and can be answered from them (a small generator drifts off a bare seed word:
    SmolLM2 asked about renewable energy for 전세 사기)."""
    template = p["question_user_docs"] if passages else p["question_user"]
    text = template.replace("{passages}", _shown(passages)).replace("{seed}", seed).replace("{n}", str(n))
    return [Message("system", p["question_system"]), Message("user", text)]


def answer(p: dict[str, str], question: str, passages: tuple[Passage, ...]) -> list[Message]:
    if not passages:
        return [Message("system", p["answer_system"]),
                Message("user", p["answer_user_no_docs"].replace("{question}", question))]
    return [Message("system", p["answer_system"]),
            Message("user", p["answer_user"].replace("{passages}", _shown(passages)).replace("{question}", question))]


def labels(p: dict[str, str]) -> tuple[str, ...]:
    """The fixed words that open the answer prompt's parts ('Reference passages:', 'Question:'): an answer that
    contains them is the model echoing its prompt, not answering it."""
    found = []
    for line in (p["answer_user"] + "\n" + p["answer_user_no_docs"]).splitlines():
        head = line.split("{", 1)[0].strip()
        if head.endswith(":") and len(head) > 2:
            found.append(head)
    return tuple(dict.fromkeys(found))
