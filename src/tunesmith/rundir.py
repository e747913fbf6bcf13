"""The one module that knows the run folder's file names.

runs/<name>/
  config.yaml          the resolved config
  manifest.json        package versions, seed, sha256 of each data file, git commit
  data/train.jsonl     normalised conversations
  data/eval.jsonl
  metrics.jsonl        one JSON line per logging step
  adapter/             the PEFT adapter
  eval/before.jsonl    one line per eval row: prompt, reference, generation
  eval/after.jsonl
  report.html
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def train_data(self) -> Path:
        return self.root / "data" / "train.jsonl"

    @property
    def eval_data(self) -> Path:
        return self.root / "data" / "eval.jsonl"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def checkpoints(self) -> Path:
        # Trainer scratch space (optimizer states); removed after a successful run, see `finish`.
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def eval_file(self, label: str) -> Path:
        return self.root / "eval" / f"{label}.jsonl"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def finish(self) -> None:
        shutil.rmtree(self.checkpoints, ignore_errors=True)


def create(output_dir: Path, name: str, *, overwrite: bool) -> RunDir:
    """Make an empty run folder; an existing one is only replaced with `overwrite`.

    >>> create(Path("runs"), "demo", overwrite=False).metrics  # doctest: +SKIP
    PosixPath('runs/demo/metrics.jsonl')
    """
    root = output_dir / name
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise TunesmithError(
                f"run folder {root} already exists",
                fix="pass --overwrite to replace it, or choose another name with --name")
        shutil.rmtree(root)
    for sub in ("data", "eval"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return RunDir(root)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
