"""One evaluation's folder (eval/, or eval/<data file name>/ for `tunesmith eval --data FILE`): generations per
model appended as made, the settings they were made with, the summary, and a preference run's accuracy.
RunDir.evaluation() hands these out; nothing else knows the file names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tunesmith.diskio import append_jsonl, read_json, read_jsonl, safe_name, write_json, write_jsonl
from tunesmith.errors import TunesmithError
from tunesmith.records import EvalReport, EvalSettings, Generation
from tunesmith.runfiles import eval_summary_json, read_eval_summary


@dataclass(frozen=True)
class EvalDir:
    """One evaluation's files: <model>.jsonl generations (appended as made), settings.json, summary.json."""

    root: Path

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def preference(self) -> Path:  # preference accuracy on held-out pairs (prefeval.py)
        return self.root / "preference.json"

    def generations(self, label: str) -> Path:
        return self.root / f"{safe_name(label)}.jsonl"

    def files(self) -> list[Path]:
        return [p for p in self.root.glob("*") if p.is_file()]

    def read_settings(self) -> EvalSettings | None:
        return EvalSettings.from_json(read_json(self.settings), str(self.settings)) if self.settings.is_file() else None

    def write_settings(self, settings: EvalSettings) -> None:
        write_json(self.settings, settings.to_json())

    def read_generations(self, label: str, torn_ok: bool = False) -> list[Generation]:
        """A model's generations; with `torn_ok`, unreadable lines (a crash mid-append) are left out."""
        path = self.generations(label)
        if not path.is_file():
            raise TunesmithError(f"{self.summary} names {label!r}, but {path.name} is missing",
                                 fix=f"generate again: tunesmith eval {self.root.parent} --fresh")
        if not torn_ok:
            return [Generation.from_json(r, str(path)) for r in read_jsonl(path)]
        found = []
        for line in path.read_bytes().split(b"\n"):  # "\n" only: a generation may hold U+2028 or U+0085
            try:
                found.append(Generation.from_json(json.loads(line), str(path)))
            except (ValueError, TunesmithError):
                continue  # the line a crash cut short; that row is generated again
        return found

    def write_generations(self, label: str, gens: Iterable[Generation]) -> None:
        write_jsonl(self.generations(label), [g.to_json() for g in gens])

    def append_generations(self, label: str, gens: Iterable[Generation]) -> None:
        append_jsonl(self.generations(label), [g.to_json() for g in gens])

    def read_summary(self) -> EvalReport:
        if not self.summary.is_file():
            raise TunesmithError(f"{self.root} has no evaluation yet", fix="run: tunesmith eval RUN")
        return read_eval_summary(read_json(self.summary), self.read_generations, str(self.summary))

    def write_summary(self, report: EvalReport) -> None:
        write_json(self.summary, eval_summary_json(report))
