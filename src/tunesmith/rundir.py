"""The one module that knows the run folder's file names.

runs/<name>/
  config.yaml          the resolved config
  manifest.json        package versions, seed, sha256 of each data file, git commit
  data/train.jsonl     normalised conversations
  data/eval.jsonl
  metrics.jsonl        one JSON line per logging step
  answers.jsonl        train.objective grpo: each answer written in a step (held out: to an eval prompt), scored
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
  eval/preference.json a preference run: preference accuracy and margin per model on the held-out pairs
  data/eval_pairs.jsonl  a preference run's held-out pairs (TRL format, each row's source kept)
  report.html          the report; report.md is its Markdown twin
  .tunesmith-run       marker: tunesmith made this folder; it deletes only inside folders that have it
  .lock                flock'ed by the process writing the run (pid and host inside); released at exit
  stop-requested       asks the training process to save a checkpoint and stop (`tunesmith ui`'s Stop button);
                       while it is there the run is "stopped"; a resume removes it
  failed.txt           the error that ended the run (a resume removes it)

Every whole file is written by write + fsync + rename; appended files (metrics.jsonl, eval/<model>.jsonl) are
fsync'ed per append and read back tolerating a torn last line (diskio); the lock is runlock's; an evaluation's
folder is evaldir.EvalDir.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import runlock
from tunesmith.evaldir import EvalDir
from tunesmith.diskio import append_jsonl, read_json, read_jsonl, safe_name, write_json, write_jsonl, write_text
from tunesmith.errors import TunesmithError
from tunesmith.runlock import LOCK
from tunesmith.records import Conversation
from tunesmith.runfiles import DataReport, LogRow, Manifest, Plan, WrittenAnswer


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

    def pairs(self, which: str) -> Path:
        """A preference run's pairs (train or eval), in TRL's conversational format with each row's source."""
        return self.root / "data" / f"{which}_pairs.jsonl"

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

    def evaluation(self, data_name: str | None = None) -> EvalDir:
        """eval/ for the held-out rows; eval/<data file name>/ for `tunesmith eval --data FILE`."""
        return EvalDir(self.eval_dir if data_name is None else self.eval_dir / safe_name(data_name))

    @property
    def report_curves(self) -> Path:
        return self.root / "report_curves.png"

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

    @property
    def stop_request(self) -> Path:
        return self.root / "stop-requested"

    @property
    def failure(self) -> Path:
        return self.root / "failed.txt"

    def request_stop(self) -> None:
        """Ask the process training this run to save a checkpoint and stop (checked after every step)."""
        write_text(self.stop_request, f"requested at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")

    def record_failure(self, text: str) -> None:
        write_text(self.failure, text.rstrip() + "\n")

    def no_weights_error(self) -> TunesmithError:
        """Why eval, chat, export or report cannot use this run: the error that ended its training (failed.txt),
        with that error's fix, or that training has not finished."""
        return self.failed_error("trained weights") or TunesmithError(
            f"{self.root} has no trained weights (adapter/ or model/)",
            fix=f"finish training first: tunesmith train {self.config}")

    def failed_error(self, missing: str) -> TunesmithError | None:
        """'RUN has no MISSING: it failed: <the error that ended it>' with that error's fix, or None where the run
        did not fail (no failed.txt)."""
        text = self.failure.read_text(encoding="utf-8").strip() if self.failure.is_file() else ""
        if not text:
            return None
        what, _, fix = text.partition("\nhow to fix: ")
        return TunesmithError(f"{self.root} has no {missing}: it failed: {what.splitlines()[0]}",
                              fix=fix.strip() or f"see {self.failure}; then tunesmith train {self.config} --overwrite")

    def clear_outcome(self) -> None:
        """A (re)started run is neither stopped nor failed any more."""
        for path in (self.stop_request, self.failure):
            path.unlink(missing_ok=True)

    def state(self) -> str:
        """running (another process holds the lock), finished (it has its report), failed (an error ended it:
        failed.txt), or stopped (by request, or killed): the same train command resumes a stopped or failed run."""
        if runlock.held_elsewhere(self.root):
            return "running"
        if self.finished:
            return "finished"
        return "failed" if self.failure.is_file() else "stopped"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"checkpoint-{step}"  # the Trainer's own naming

    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint with its COMPLETE marker; incomplete ones (a crash mid-write) are ignored."""
        found = [p for p in self.checkpoints.glob("checkpoint-*") if (p / COMPLETE).is_file()
                 and re.fullmatch(r"checkpoint-\d+", p.name)]
        return max(found, key=checkpoint_step, default=None)

    # Typed reads and writes: every JSON file of the run folder goes through its record (tunesmith.records).
    def read_plan(self) -> Plan | None:
        return Plan.from_json(read_json(self.plan), str(self.plan)) if self.plan.is_file() else None

    def write_plan(self, plan: Plan) -> None:
        write_json(self.plan, plan.to_json())

    def read_manifest(self) -> Manifest | None:
        return Manifest.from_json(read_json(self.manifest), str(self.manifest)) if self.manifest.is_file() else None

    def write_manifest(self, manifest: Manifest) -> None:
        write_json(self.manifest, manifest.to_json())

    def read_data_report(self) -> DataReport | None:
        return DataReport.from_json(read_json(self.data_summary), str(self.data_summary)) if self.data_summary.is_file() else None

    def write_data_report(self, report: DataReport) -> None:
        write_json(self.data_summary, report.to_json())

    def read_conversations(self, which: str) -> list[Conversation]:
        """The normalised rows saved at the start: which = 'train' or 'eval'."""
        return [Conversation.from_json(r) for r in read_jsonl(self._rows(which))]

    def write_conversations(self, which: str, convs: Iterable[Conversation]) -> None:
        write_jsonl(self._rows(which), [c.to_json() for c in convs])

    def _rows(self, which: str) -> Path:
        return {"train": self.train_data, "eval": self.eval_data}[which]

    def read_metrics(self, say: Callable[[str], None] | None = None) -> list[LogRow]:
        return [LogRow.from_json(r, str(self.metrics)) for r in read_jsonl(self.metrics, say)] if self.metrics.is_file() else []

    def append_metrics(self, row: LogRow) -> None:
        append_jsonl(self.metrics, [row.to_json()])  # fsync'ed: a kill leaves at most a torn last line

    def keep_metrics_up_to(self, step: int, say: Callable[[str], None] | None = None) -> None:
        """Drop the rows a killed run logged after its last complete checkpoint (metrics.jsonl's, and a grpo run's
        answers.jsonl's); the resumed run relogs them."""
        write_jsonl(self.metrics, [r.to_json() for r in self.read_metrics(say) if r.step <= step])
        if self.answers.is_file():
            write_jsonl(self.answers, [a.to_json() for a in self.read_answers(say) if a.step <= step])

    @property
    def answers(self) -> Path:
        return self.root / "answers.jsonl"

    def read_answers(self, say: Callable[[str], None] | None = None) -> list[WrittenAnswer]:
        return [WrittenAnswer.from_json(r, str(self.answers)) for r in read_jsonl(self.answers, say)] \
            if self.answers.is_file() else []

    def append_answers(self, rows: Iterable[WrittenAnswer]) -> None:
        append_jsonl(self.answers, [r.to_json() for r in rows])

    def finish(self) -> None:
        self.remove(self.checkpoints)

    def remove(self, path: Path) -> None:
        """Delete a file or folder inside this run folder; anything else is refused (a bug, not a user error)."""
        if not (self.root / MARKER).is_file() or self.root.resolve() not in path.resolve().parents:
            raise RuntimeError(f"refusing to delete {path}: not inside a tunesmith run folder ({self.root})")
        if not (path.exists() or path.is_symlink()):
            return
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def clear(self) -> None:
        """Empty the run folder for a fresh start (--overwrite), keeping its lock; marks it as tunesmith's."""
        if not (self.root / MARKER).is_file():
            if any(p.name != LOCK for p in self.root.iterdir()):
                raise RuntimeError(f"refusing to empty {self.root}: it has no {MARKER} marker")
            write_text(self.root / MARKER, MARKER_TEXT)
        for p in self.root.iterdir():
            if p.name not in (LOCK, MARKER):
                self.remove(p)

    def lock(self, say: Callable[[str], None] | None = None) -> None:
        """Hold an OS lock on this run folder until the process exits; refuse if another process holds it."""
        runlock.acquire(self.root, say)

    @contextlib.contextmanager
    def held(self) -> Iterator[RunDir]:
        """Release this process's lock on the folder when the block ends (it was taken by create/open_run)."""
        try:
            yield self
        finally:
            self.unlock()

    def unlock(self) -> None:
        """Release the lock early (tests, or a process that goes on to other work); the file is emptied."""
        runlock.release(self.root)


def checkpoint_step(path: Path) -> int:
    """checkpoint-40 -> 40."""
    return int(path.name.removeprefix("checkpoint-"))


COMPLETE = "COMPLETE"
MARKER = ".tunesmith-run"  # written into every run folder tunesmith makes; nothing without it is ever deleted
MARKER_TEXT = "a tunesmith run folder: tunesmith deletes files only inside folders that hold this marker\n"
NAME = re.compile(r"[A-Za-z0-9._-]+")


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


def create(output_dir: Path, name: str, *, overwrite: bool, config_yaml: str,
           say: Callable[[str], None] | None = None) -> tuple[RunDir, bool]:
    """Make the run folder, or reopen an unfinished one with the same config; returns (run, resumed).

    The folder is locked for the life of the process (a second `train --name X` is refused while the first
    runs). A finished run is only replaced with `overwrite`; an unfinished run with a different config too,
    since resuming it would mix two runs. Only a folder tunesmith made (its marker file inside) is ever emptied.

    >>> create(Path("runs"), "demo", overwrite=False, config_yaml="...")  # doctest: +SKIP
    (RunDir(root=PosixPath('runs/demo')), False)
    """
    root = check_target(output_dir, name)
    run = RunDir(root)
    used = root.is_dir() and any(p.name != LOCK for p in root.iterdir())
    root.mkdir(parents=True, exist_ok=True)
    run.lock(say)
    if used and not overwrite:
        check_resumable(root, config_yaml)
        return run, True
    run.clear()
    for sub in ("data", "eval"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    write_text(run.config, config_yaml)
    return run, False


def check_resumable(root: Path, config_yaml: str) -> None:
    """A used run folder is only resumed: not when it holds a finished run or one with another config. The
    pipeline asks first (before any model loads); `create` asks again under the lock."""
    run = RunDir(root)
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


def check_target(output_dir: Path, name: str) -> Path:
    """The run folder `output_dir/name`, if tunesmith may make or write it (checked again by `create`; the
    pipeline calls it first, so a bad --name fails before any model loads).
    """
    root = output_dir / check_name(name)
    if output_dir.exists() and not output_dir.is_dir():
        raise TunesmithError(f"output_dir {output_dir} is a file, not a folder",
                             fix="pass --output-dir a folder (it is created if missing)")
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise TunesmithError(f"{root} exists and is not a folder", where="--name",
                             fix="pick another --name; tunesmith never replaces files it did not write")
    if root.is_dir() and any(p.name != LOCK for p in root.iterdir()) and not _ours(root):
        raise TunesmithError(f"{root} exists but was not made by this tunesmith (no {MARKER} marker inside), so "
                             "tunesmith will neither write into it nor delete it",
                             fix="pick another --name or --output-dir; if it is an old run folder, move or delete "
                                 "it yourself")
    return root


def open_run(path: Path, say: Callable[[str], None] | None = None) -> RunDir:
    """An existing run folder, locked for this process (eval and report write into it).

    >>> open_run(Path("runs/demo"))  # doctest: +SKIP
    RunDir(root=PosixPath('runs/demo'))
    """
    run = RunDir(path)
    if not run.config.is_file():
        raise TunesmithError(f"{path} is not a run folder (no config.yaml)",
                             fix="pass a folder under runs/, e.g. runs/demo")
    if not _ours(path):
        raise TunesmithError(f"{path} has a config.yaml but no {MARKER} marker: tunesmith did not make it, so it "
                             "will not write into it", fix="copy the files you need into a new run")
    run.lock(say)
    return run


def _ours(root: Path) -> bool:
    """Made by tunesmith: the marker, or a run folder of a version before the marker (then it gets one)."""
    if (root / MARKER).is_file():
        return True
    legacy = all((root / f).is_file() for f in ("config.yaml", "manifest.json", "data/summary.json"))
    if legacy:
        write_text(root / MARKER, MARKER_TEXT)
    return legacy


def check_name(name: str) -> str:
    """A run name is one plain folder name: `--name ..` must never reach a folder outside the output dir.

    >>> check_name("demo-2")
    'demo-2'
    """
    if name in ("", ".", "..") or not NAME.fullmatch(name):
        raise TunesmithError(f"run name {name!r} is not a plain folder name", where="--name",
                             fix="use letters, digits, '.', '_' or '-' (not '.' or '..'), e.g. --name demo-2")
    return name


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
