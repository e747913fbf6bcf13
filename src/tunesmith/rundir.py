"""The one module that knows the run folder's file names.

runs/<name>/
  config.yaml          the resolved config
  manifest.json        package versions, seed, sha256 of each data file, git commit
  data/train.jsonl     normalised conversations
  data/eval.jsonl
  metrics.jsonl        one JSON line per logging step
  adapter/             the PEFT adapter (method lora), or
  model/               the whole tuned model (method full); either one present = training finished
  checkpoints/         Trainer checkpoints while training runs (each trusted only with COMPLETE inside);
                       a re-run resumes from the newest complete one; removed when the run finishes
  tensorboard/         event files (report_to: tensorboard)
  wandb/               W&B run files (report_to: wandb; offline runs are synced later with `wandb sync`)
  plan.json            what training was planned to do (tunesmith plan), with steps per epoch
  data/summary.json    data counts, skipped rows with reasons, duplicates
  eval/base.jsonl      one line per eval row: prompt, reference, generation, stopped (written as generated)
  eval/tuned.jsonl
  eval/settings.json   generation settings the rows were made with
  eval/summary.json    metrics per model, tuned - base differences with 95% paired bootstrap intervals
  report.html          the report; report.md is its Markdown twin
"""

from __future__ import annotations

import json
import os
import re
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
    def full(self) -> Path:
        return self.root / "model"

    @property
    def weights(self) -> Path | None:
        """The finished weights, if training finished."""
        return next((p for p in (self.adapter, self.full) if p.is_dir()), None)

    @property
    def checkpoints(self) -> Path:
        # Trainer scratch space (optimizer states); removed after a successful run, see `finish`.
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def eval_dir(self) -> Path:
        """eval/<model>.jsonl generations, settings.json, summary.json (metrics, differences with CIs)."""
        return self.root / "eval"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def data_summary(self) -> Path:
        return self.root / "data" / "summary.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def finished(self) -> bool:
        return self.report.is_file()

    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint with its COMPLETE marker; incomplete ones (a crash mid-write) are ignored."""
        found = [p for p in self.checkpoints.glob("checkpoint-*") if (p / COMPLETE).is_file()
                 and re.fullmatch(r"checkpoint-\d+", p.name)]
        return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)

    def finish(self) -> None:
        shutil.rmtree(self.checkpoints, ignore_errors=True)


COMPLETE = "COMPLETE"


def mark_complete(checkpoint: Path) -> None:
    """Called after the Trainer has written every file of a checkpoint: flush them, then add the marker.

    The marker appears by an atomic rename, so a checkpoint either has it (and all its files) or not.
    """
    for f in checkpoint.rglob("*"):
        if f.is_file():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
    tmp = checkpoint / f".{COMPLETE}.tmp"
    tmp.write_text("written completely\n", encoding="utf-8")
    os.replace(tmp, checkpoint / COMPLETE)


def create(output_dir: Path, name: str, *, overwrite: bool, config_yaml: str) -> tuple[RunDir, bool]:
    """Make the run folder, or reopen an unfinished one with the same config; returns (run, resumed).

    A finished run is only replaced with `overwrite`; an unfinished run with a different config too, since
    resuming it would mix two runs.

    >>> create(Path("runs"), "demo", overwrite=False, config_yaml="...")  # doctest: +SKIP
    (RunDir(root=PosixPath('runs/demo')), False)
    """
    root = output_dir / name
    run = RunDir(root)
    if root.exists() and any(root.iterdir()) and not overwrite:
        if run.finished:
            raise TunesmithError(
                f"run folder {root} holds a finished run",
                fix="pass --overwrite to replace it, --name for a new run, or --continue-from "
                    f"{root} to train further from its weights")
        saved = run.config.read_text(encoding="utf-8") if run.config.is_file() else None
        if saved != config_yaml:
            raise TunesmithError(
                f"run folder {root} holds an unfinished run with a different config, so it cannot be resumed",
                problems=_config_differences(saved, config_yaml),
                fix="pass --overwrite to start it again, or --name for a new run")
        return run, True
    if root.exists():
        shutil.rmtree(root)
    for sub in ("data", "eval"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    run.config.write_text(config_yaml, encoding="utf-8")
    return run, False


def _config_differences(saved: str | None, new: str) -> list[str]:
    import yaml

    if saved is None:
        return ["config.yaml is missing from the folder"]

    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            return {k2: v2 for k, v in node.items() for k2, v2 in flat(v, f"{prefix}{k}.").items()}
        return {prefix.rstrip("."): node}

    old, cur = flat(yaml.safe_load(saved)), flat(yaml.safe_load(new))
    return [f"{k}: {old.get(k)!r} in the folder, {cur.get(k)!r} now" for k in sorted(old.keys() | cur.keys())
            if old.get(k) != cur.get(k)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write a whole file by rename, so a reader never sees it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows and flush them to disk: what was appended survives a crash of the process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def safe_name(text: str) -> str:
    """A file or folder name from any label (a path, a hub id).

    >>> safe_name("runs/other run/"), safe_name("HuggingFaceTB/SmolLM2-135M")
    ('runs_other_run', 'HuggingFaceTB_SmolLM2-135M')
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip("/")).strip("_") or "model"
