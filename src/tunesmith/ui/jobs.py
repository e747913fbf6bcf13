"""The Train tab's training job: `tunesmith train CONFIG` in a child process, one at a time.

The job lives on disk, not in the browser: RUNS/.ui/<name>.yaml (the config the form built), RUNS/.ui/<name>.log
(the child's output) and RUNS/.ui/job.json (which run, its pid, when it started). A page reload, a second tab, or
a restarted UI finds the same job; the child runs in its own session, so it outlives the UI's process too.
Stop asks the run to save a checkpoint and stop (rundir's stop request, checked after every step); Resume runs the
same command again, which continues from that checkpoint (the CLI's resume). The progress shown is read from the
run folder (metrics.jsonl, plan.json), the same files the report is made from.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tunesmith import diskio, rundir, runtime
from tunesmith.config import RunConfig
from tunesmith.errors import TunesmithError
from tunesmith.runfiles import LogRow

UI_DIR = ".ui"


@dataclass(frozen=True)
class Job:
    name: str
    pid: int
    config: str  # the YAML file the child trains from
    log: str
    started: float
    stop_asked: bool = False  # Stop was pressed before the run folder was locked: its end is a stop, not a failure

    def alive(self) -> bool:
        """Whether the child still runs (a zombie of ours is reaped: it has ended)."""
        try:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done == self.pid:
                return False
        except ChildProcessError:  # not our child (the UI restarted): ask the kernel only
            pass
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        cmdline = Path(f"/proc/{self.pid}/cmdline")
        return not cmdline.is_file() or b"tunesmith" in cmdline.read_bytes()  # a reused pid is not our job


@dataclass(frozen=True)
class Progress:
    """What the Train tab shows of a run: where it is, when it should end, its losses so far."""

    state: str  # starting | running | evaluating | finished | stopped | failed
    step: int
    total: int | None
    eta_seconds: float | None
    losses: tuple[tuple[int, str, float], ...]  # (step, "train" | "eval", loss)
    log_tail: str


def folder(root: Path) -> Path:
    return root / UI_DIR


def _job_file(root: Path) -> Path:
    return folder(root) / "job.json"


def current(root: Path) -> Job | None:
    """The job the UI started last (running or not), or None."""
    path = _job_file(root)
    if not path.is_file():
        return None
    try:
        return Job(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        return None  # a torn or foreign job.json: no job to show


def start(root: Path, cfg: RunConfig, *, overwrite: bool = False) -> Job:
    """Write the config and start `tunesmith train` on it; refused while another job runs."""
    _refuse_while_training(root)
    ui = folder(root)
    ui.mkdir(parents=True, exist_ok=True)
    config_path, log_path = ui / f"{cfg.name}.yaml", ui / f"{cfg.name}.log"
    diskio.write_text(config_path, cfg.to_yaml())
    return _spawn(root, cfg.name, config_path, log_path, ["--overwrite"] * overwrite)


def resume(root: Path, name: str) -> Job:
    """Run the same command again: training continues from the stopped run's last checkpoint."""
    config_path = folder(root) / f"{name}.yaml"
    if not config_path.is_file():
        raise TunesmithError(f"{name} was not started from this UI, so its command is not known here", where="ui",
                             fix=f"resume it with the command that started it (or `tunesmith train {root / name}"
                                 "/config.yaml` when its output_dir is this folder)")
    _refuse_while_training(root)
    return _spawn(root, name, config_path, folder(root) / f"{name}.log", [])


def _refuse_while_training(root: Path) -> None:
    running = current(root)
    if running is not None and running.alive():
        raise TunesmithError(f"{running.name} is still training", where="ui",
                             fix="wait for it, or stop it first (one training at a time: they share the CPU)")


def _spawn(root: Path, name: str, config_path: Path, log_path: Path, extra: list[str]) -> Job:
    argv = [sys.executable, "-m", "tunesmith", "train", str(config_path), *extra]
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ tunesmith train {config_path} {' '.join(extra)}\n".rstrip() + "\n")
        log.flush()
        # tcmalloc preloaded here, as `tunesmith train` would by re-executing itself: a Stop that lands while a
        # process re-executes is lost (its handler ran in the image being replaced).
        env = {**(runtime.tcmalloc_env() or os.environ), "PYTHONUNBUFFERED": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True,  # its own session: it outlives the UI, Stop signals the group
                                 env=env, preexec_fn=_default_sigint)
    job = Job(name, child.pid, str(config_path), str(log_path), time.time())
    diskio.write_text(_job_file(root), json.dumps(asdict(job)))
    return job


def _default_sigint() -> None:
    """In the forked child before exec: SIGINT back to its default action. A UI started in the background by a
    non-interactive shell (`tunesmith ui &`, a CI script) inherits SIGINT ignored, and so did its children:
    Stop before training began then did nothing (seen in 2 of 3 backgrounded test runs, never in the
    foreground). Python installs its KeyboardInterrupt handler only over the default action."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(root: Path) -> str:
    """Ask the running job to stop: during training it saves a checkpoint first; before (loading) or after
    (evaluation) it is interrupted, and a resume keeps what was written."""
    job = current(root)
    if job is None or not job.alive():
        return "nothing is training"
    run = rundir.RunDir(root / job.name)
    state = _state(run, True, job)
    if state == "running":
        run.request_stop()
        return f"{job.name}: stopping after the current step (a checkpoint is saved)"
    # Still loading (the run would clear a stop request when it locks its folder) or evaluating (answers are
    # written as generated): an interrupt loses nothing. Its own session: the child and any helpers it started.
    diskio.write_text(_job_file(root), json.dumps(asdict(replace(job, stop_asked=True))))
    os.killpg(job.pid, signal.SIGINT)
    return f"{job.name}: interrupted while {state}; Resume continues it"


def progress(root: Path, name: str, now: float | None = None) -> Progress:
    """The run's state, step of total, ETA and losses, read from its folder and the job's log."""
    run = rundir.RunDir(root / name)
    job = current(root)
    ours = job if job is not None and job.name == name else None
    rows = run.read_metrics() if run.metrics.is_file() else []
    plan = run.read_plan() if run.plan.is_file() else None
    total = plan.total_steps if plan is not None else None
    step = max((r.step for r in rows), default=0)
    state = _state(run, ours is not None and ours.alive(), ours)
    losses = tuple((r.step, "train", r.loss) for r in rows if r.loss is not None) + tuple(
        (r.step, "eval", r.eval_loss) for r in rows if r.eval_loss is not None)
    tail = _tail(Path(ours.log)) if ours is not None else ""
    since = ours.started if ours is not None else 0.0
    return Progress(state, step, total, eta(rows, total, now or time.time(), since) if state == "running" else None,
                    tuple(sorted(losses)), tail)


def _state(run: rundir.RunDir, alive: bool, ours: Job | None) -> str:
    """starting | running | evaluating | finished | stopped | failed, from the run folder and whether the UI's
    child still runs (before it locks the run folder it is loading data and the model)."""
    made = (run.root / rundir.MARKER).is_file()
    folder = run.state() if made else None
    if alive:
        if folder == "running":
            return "evaluating" if run.weights is not None else "running"
        return "finished" if folder == "finished" else "starting"
    if folder is None:  # it ended before making its run folder: stopped by request, or the log says why
        return ("stopped" if ours.stop_asked else "failed") if ours is not None else "starting"
    return folder


def eta(rows: list[LogRow], total: int | None, now: float, since: float = 0.0) -> float | None:
    """Seconds left: steps per second of wall time over the training rows logged since `since` (this process's,
    not a stopped run's earlier ones), times the steps left.

    >>> eta([LogRow(2, logged_at=100.0, loss=1.0), LogRow(4, logged_at=110.0, loss=0.9)], 10, 110.0)
    30.0
    """
    timed = [r for r in rows if r.logged_at is not None and r.logged_at >= since and r.loss is not None]
    if total is None or len(timed) < 2 or timed[-1].step >= total:
        return None
    first, last = timed[0], timed[-1]
    if last.logged_at <= first.logged_at or last.step <= first.step:
        return None
    rate = (last.step - first.step) / (last.logged_at - first.logged_at)
    return max(0.0, (total - last.step) / rate - (now - last.logged_at))


def _tail(path: Path, lines: int = 12) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 8192))
        return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
