"""Files written whole or appended so that a crash never leaves a half-written one: every whole file by
write + fsync + rename; appended JSONL fsync'ed per append and read back tolerating a torn last line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError


def _atomic(path: Path, data: bytes) -> None:
    """Write a whole file by write + fsync + rename: a reader (or a crash) never sees it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    _atomic(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, data)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=True))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows and flush them to disk: what was appended survives a crash of the process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise TunesmithError(f"{path.name} is damaged: {err}", where=str(path),
                             fix="re-run the command that writes it (or the run with --overwrite)") from None


def read_jsonl(path: Path, say: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Rows of an appended JSONL file. A torn last line (the writer was killed mid-line) is left out and
    reported through `say`; a damaged line elsewhere is an error, since rows after it cannot be trusted.
    """
    lines = path.read_bytes().split(b"\n")
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (ValueError, UnicodeDecodeError):
            if any(rest.strip() for rest in lines[n:]):
                raise TunesmithError(f"line {n} is not valid JSON", where=str(path),
                                     fix="re-run the command that writes it (or the run with --overwrite)") from None
            if say is not None:
                say(f"notice: {path}: left out a half-written last line (line {n}; the writer was stopped "
                    "while writing it)")
    return rows


def safe_name(text: str, fallback: str = "model") -> str:
    """A file or folder name from any label (a path, a hub id); `fallback` when nothing of it is left.

    >>> safe_name("runs/other run/"), safe_name("HuggingFaceTB/SmolLM2-135M"), safe_name("상담", "run")
    ('runs_other_run', 'HuggingFaceTB_SmolLM2-135M', 'run')
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip("/")).strip("_") or fallback


def cut_torn_tail(path: Path) -> bool:
    """Before appending to a file a killed writer left mid-line: cut that torn line (the next row would be
    glued onto it). True when something was cut."""
    if not path.is_file():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    write_bytes(path, data[:data.rfind(b"\n") + 1])
    return True
