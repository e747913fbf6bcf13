"""LLaMA-Factory's `dataset_info.json`: a data file that the dataset_info.json beside it describes is read with the
columns and role tags that entry names, as LLaMA-Factory reads it (its users keep their files that way).

An entry matches when its `file_name` is the file (dataset_info.json beside it), or the folder holding it
(dataset_info.json one folder up). Its `columns` become data.columns (alpaca: prompt/query/response/system/history
-> instruction/input/output/system/history; sharegpt: messages -> conversations, system), its `tags` the turn keys
(role_tag/content_tag -> role/content) and role names (user_tag/assistant_tag/system_tag; function_tag and
observation_tag: a turn that calls tools, and a tool's output; its `tools` column: the functions offered). A ranking
entry's columns name the fields of its preference pairs (prompt/query/chosen/rejected, or messages/chosen/rejected),
for the preference reader, and a `kto_tag`
column makes each conversation a rated answer (KTO: its last turn, marked good or bad). What the entry names
that tunesmith does not read (images, videos) is said, never dropped without a word. Settings the user gave
(data.columns, data.roles) win over the entry's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.data import readers
from tunesmith.errors import TunesmithError
from tunesmith.format_names import CALL, TOOL

INFO = readers.DESCRIPTION  # a folder walk passes it over
ALPACA = {"prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history",
          "tools": "tools"}
SHAREGPT = {"messages": "conversations", "system": "system", "tools": "tools"}
TURN_KEYS = {"role_tag": "role", "content_tag": "content"}
RANKING = {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected", "system": "system"}
RANKING_SHAREGPT = {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "system": "system"}
ROLE_TAGS = {"user_tag": "user", "assistant_tag": "assistant", "system_tag": "system", "observation_tag": TOOL,
             "function_tag": CALL}


@dataclass(frozen=True)
class Description:
    """What a dataset_info.json entry says about one file, as tunesmith's data settings."""

    name: str  # the entry's name
    info: Path  # the dataset_info.json it is in
    columns: dict[str, str]  # data.columns: canonical field -> the file's field
    roles: dict[str, str]  # data.roles: the file's role name -> system, user, assistant or tool
    passed_over: tuple[str, ...]  # what the entry names that is not read, each said in words
    ranking: bool = False  # preference pairs: `columns` name the fields of LLaMA-Factory's ranking shapes
    kto_tag: str | None = None  # the field of a KTO entry's good/bad mark: its rows are rated answers

    def line(self) -> str:
        """How inspect says it: the entry, then what it set."""
        said = [f"columns {', '.join(f'{k}={v}' for k, v in self.columns.items())}"] if self.columns else []
        said += [f"roles {', '.join(f'{k}={v}' for k, v in self.roles.items())}"] if self.roles else []
        said += [f"not read: {', '.join(self.passed_over)}"] if self.passed_over else []
        return f"described by {self.info} (LLaMA-Factory), entry {self.name!r}: " + ("; ".join(said) or "defaults")


def renamed(row: Any, columns: dict[str, str]) -> Any:
    """A row with the entry's fields under the names tunesmith reads (a preference row's; SFT rows go through
    data.columns)."""
    if not columns or not isinstance(row, dict):
        return row
    out = {k: v for k, v in row.items() if k not in columns.values()}
    out.update({canon: row[field] for canon, field in columns.items() if field in row})
    return out


def describe(path: Path) -> Description | None:
    """The entry that describes `path` in the dataset_info.json beside it (an entry naming the file), or in the
    folder above (an entry naming the file's folder), or None."""
    for info in (path.parent / INFO, path.parent.parent / INFO):
        found = _entry(path, info) if info.is_file() else None
        if found is not None:
            return found
    return None


def _entry(path: Path, info: Path) -> Description | None:
    try:
        entries = json.loads(info.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TunesmithError(f"cannot read it ({type(err).__name__}: {err}); tunesmith reads it to learn the "
                             f"columns of {path.name}", where=str(info),
                             fix="fix the file, or move it out of the data folder") from None
    if not isinstance(entries, dict):
        return None
    for name, entry in entries.items():
        if isinstance(entry, dict) and _names(path, info.parent, entry.get("file_name")):
            return _description(str(name), info, entry)
    return None


def _names(path: Path, folder: Path, file_name: Any) -> bool:
    """Whether an entry's file_name (relative to its dataset_info.json's folder) is `path` or its folder."""
    if not isinstance(file_name, str) or not file_name:
        return False
    target = (folder / file_name).resolve()
    return target in (path.resolve(), path.resolve().parent)


def _description(name: str, info: Path, entry: dict) -> Description:
    columns_in = entry.get("columns") if isinstance(entry.get("columns"), dict) else {}
    tags = entry.get("tags") if isinstance(entry.get("tags"), dict) else {}
    sharegpt = entry.get("formatting") == "sharegpt"
    if entry.get("ranking"):
        mapping = RANKING_SHAREGPT if sharegpt else RANKING
        columns = {mapping[k]: str(v) for k, v in columns_in.items() if k in mapping and isinstance(v, str)}
        passed = tuple(f"its {k} column {v!r}" for k, v in columns_in.items() if k not in mapping)
        return Description(name, info, columns, {}, passed, ranking=True)
    mapping = SHAREGPT if sharegpt else ALPACA
    columns = {mapping[k]: str(v) for k, v in columns_in.items() if k in mapping and isinstance(v, str)}
    roles: dict[str, str] = {}
    if sharegpt:
        columns.update({TURN_KEYS[k]: str(v) for k, v in tags.items() if k in TURN_KEYS and isinstance(v, str)})
        roles = {str(v): ROLE_TAGS[k] for k, v in tags.items() if k in ROLE_TAGS and isinstance(v, str)}
    kto = columns_in.get("kto_tag") if isinstance(columns_in.get("kto_tag"), str) else None
    passed = tuple(f"its {k} column {v!r}" for k, v in columns_in.items() if k not in mapping and k != "kto_tag")
    return Description(name, info, columns, roles, passed, kto_tag=kto)


def rated(row: Any, d: Description) -> Any:
    """A KTO entry's row (turns under its messages field, its kto_tag) as tunesmith's KTO shape: the turns before
    the last as the prompt, the last turn's text as the answer, the tag as its label; other rows as they are."""
    turns = row.get(d.columns.get("conversations", "conversations")) if isinstance(row, dict) else None
    if d.kto_tag is None or not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
        return row
    role, content = d.columns.get("role", "from"), d.columns.get("content", "value")
    names = {**{"human": "user", "gpt": "assistant"}, **d.roles}
    prompt = [{"role": names.get(str(t.get(role)), t.get(role)), "content": t.get(content)} for t in turns[:-1]]
    return {"prompt": prompt, "completion": turns[-1].get(content), "label": row.get(d.kto_tag)}
