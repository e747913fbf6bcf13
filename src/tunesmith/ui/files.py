"""What the UI may read and where it keeps uploads: everything lives under the runs folder the UI was started on.

Gradio writes what a browser uploads into RUNS/.ui/received-*/ (this process's own folder: `received`); the
Data tab takes a file only from there, never a path the client names (a client could name /etc/passwd in the
upload event's FileData), and moves it to RUNS/uploads/<first 16 hex of sha256>/<file name> (the same bytes
always land in the same place; the sha256 goes in RUNS/uploads/<16 hex>.sha256, beside the folder, so no upload
name can collide with it). Every path the browser names is resolved and must stay inside the runs folder: `../`,
absolute paths and symlinks out of it are refused (tests/test_ui.py). Models the UI loads are the default model,
folders under the runs folder, or hub ids in the Hugging Face cache (`model_spec`), so the model box cannot tell
which folders exist elsewhere.
"""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import tempfile
from pathlib import Path

from tunesmith import diskio, models, rundir
from tunesmith.data import readers
from tunesmith.errors import TunesmithError

UPLOADS = "uploads"
EXPORTS = "exports"  # `tunesmith export` folders the Export tab writes
UI = ".ui"  # the UI's own configs, logs and Gradio's received uploads
MODELS = "models"  # model folders the UI may load (the model box: models/NAME)
NOT_DATA = (UI, EXPORTS, MODELS)  # never offered as data
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def inside(root: Path, name: str | Path) -> Path:
    """`name` (relative to `root`, or absolute) resolved; TunesmithError unless it is `root` or under it."""
    base = root.resolve()
    path = (base / name).resolve()
    if path != base and base not in path.parents:
        raise TunesmithError(f"{name} is outside {root}", where="ui",
                             fix="the UI reads only files under its --runs folder; upload the file instead")
    return path


def received_folder(root: Path) -> Path:
    """A new folder under ROOT/.ui for Gradio to write this process's uploads into (GRADIO_TEMP_DIR)."""
    (root / UI).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="received-", dir=root / UI)).resolve()


def received(folder: Path, name: str) -> Path:
    """The file Gradio received into `folder` that the client's upload event names; TunesmithError for any other
    path (the client names it: /etc/passwd, a run's file, a symlink out)."""
    path = Path(name)
    real = path.resolve()
    if path.is_symlink() or not real.is_file() or folder not in real.parents:
        raise TunesmithError(f"{name} was not uploaded to this UI", where="ui",
                             fix="upload the file with the upload box")
    return real


def foreign_paths(obj: object, folder: Path, limit: int = 10_000) -> list[str]:
    """The file paths a request body names (any object with a string "path", as Gradio's FileData) that are not
    files Gradio received into `folder`: a client naming /etc/passwd or a URL made Gradio copy or fetch it into
    its cache before any handler ran. Walks at most `limit` nodes; a body deeper or larger than that is itself
    refused (returned as one entry).

    >>> foreign_paths({"data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, 3]}, Path("/x"))
    ['/etc/passwd']
    """
    found, todo, seen = [], [obj], 0
    while todo:
        node = todo.pop()
        seen += 1
        if seen > limit:
            return [f"(a request body of over {limit:,} values)"]
        if isinstance(node, dict):
            path = node.get("path")
            if isinstance(path, str):
                try:
                    received(folder, path)
                except (TunesmithError, OSError, ValueError):
                    found.append(path)
            todo += list(node.values())
        elif isinstance(node, list):
            todo += node
    return found


def save_upload(root: Path, src: Path) -> Path:
    """Keep an uploaded file under ROOT/uploads/<sha256[:16]>/ (its name kept; its sha256 in <sha256[:16]>.sha256)."""
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    folder = root / UPLOADS / digest[:16]
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / Path(src.name).name
    if not dest.is_file():
        shutil.copyfile(src, dest)
    (root / UPLOADS / f"{digest[:16]}.sha256").write_text(f"{digest}  {dest.name}\n", encoding="utf-8")
    return dest


def model_spec(root: Path, spec: str) -> str:
    """What the UI may load for a model box: the default model, a folder under the runs folder (relative to it or
    absolute), or a hub id already in the Hugging Face cache. Anything else gets one message whether or not
    such a folder exists (the box must not tell which folders exist outside the runs folder)."""
    spec = spec.strip() or "default"
    if spec.lower() in models.DEFAULT_ALIASES:
        return spec
    under = (root.resolve() / spec).resolve()
    if root.resolve() in under.parents and under.exists() and not spec.startswith("~"):
        return str(under)
    if _HUB_ID.fullmatch(spec) and ".." not in spec and _in_hub_cache(spec):
        return spec
    raise TunesmithError(f"model {spec!r} is not the default model, a folder under {root}, or a hub id in the "
                         "Hugging Face cache", where="ui",
                         fix=f"copy the model folder to {root / MODELS}/NAME and write {MODELS}/NAME, or use "
                         "`tunesmith train --model PATH` on the command line")


def _in_hub_cache(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


def data_files(root: Path) -> list[str]:
    """Data files the UI offers to pick: uploads and anything else under the runs folder a reader takes."""
    runs = {p.parent for p in root.glob("*/" + rundir.MARKER)}  # a run folder's files are its own, not data
    found = [p for p in root.rglob("*") if p.is_file() and readers.kind_of(p)
             and not runs & set(p.parents) and p.relative_to(root).parts[0] not in NOT_DATA]
    return sorted(str(p.relative_to(root)) for p in found)


def run_names(root: Path, state: str | None = None) -> list[str]:
    """Run folders under `root`, newest first; only those in `state` when given."""
    folders = sorted((p for p in root.iterdir() if (p / rundir.MARKER).is_file()),
                     key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    return [p.name for p in folders if state is None or rundir.RunDir(p).state() == state]


def runs_table(root: Path) -> list[list[str]]:
    """[name, state, chrF base -> tuned, retention] for every run folder under `root`, newest first."""
    rows = []
    for name in run_names(root):
        run = rundir.RunDir(root / name)
        chrf, kept = "", ""
        if run.evaluation().summary.is_file():
            try:
                ev = run.evaluation().read_summary()
                if len(ev.models) > 1:
                    b, t = ev.models[0].metrics.get("chrf"), ev.models[1].metrics.get("chrf")
                    chrf = f"{b:.2f} → {t:.2f}" if b is not None and t is not None else ""
                if ev.retention is not None and len(ev.retention.models) > 1:
                    from tunesmith import retention

                    kept = "forgetting" if retention.forgetting(ev.retention, ev.retention.models[1].label) else "ok"
            except TunesmithError:
                chrf = "unreadable summary"
        rows.append([name, run.state(), chrf, kept])
    return rows


def report_frame(root: Path, name: str) -> str:
    """The run's report inline: report.html's body (self-contained: tables, text, the chart as a data: image).
    Gradio's HTML component drops iframes, so the body goes in as it is; the report's CSS stays behind."""
    if not name:
        return ""
    run = rundir.RunDir(inside(root, name))
    if not run.report.is_file():
        why = run.failure.read_text(encoding="utf-8") if run.failure.is_file() else ""
        return (f"<p>{html.escape(name)}: no report yet ({html.escape(run.state())})</p>"
                + (f"<pre>{html.escape(why)}</pre>" if why else ""))
    page = run.report.read_text(encoding="utf-8")
    body = page.split("<body>", 1)[-1].rsplit("</body>", 1)[0]
    return f"<div class='ts-report' title='report {html.escape(name)}'>{body}</div>"


def side_by_side(root: Path, first: str, second: str) -> list[list[str]]:
    """Two runs' settings and results as rows [what, first, second]: the report's own metric table, base → tuned
    with the difference's interval, so the two columns read like their reports."""
    from tunesmith import config, train
    from tunesmith.report import metrics_table

    cols = []
    for name in (first, second):
        run = rundir.RunDir(inside(root, name))
        col: dict[str, str] = {"state": run.state()}
        if run.config.is_file():
            cfg = config.load(run.config)
            col |= {"model": cfg.model, "data": ", ".join(Path(p).name for p in cfg.data.train),
                    "method": f"{cfg.train.method} r={cfg.lora.r}" if cfg.train.method == "lora" else "full",
                    "epochs · learning rate": f"{cfg.train.epochs:g} · {cfg.train.learning_rate:g}"}
        summary = train.read_summary(run)
        if summary is not None:
            col["steps (kept)"] = f"{summary.last_step} ({summary.best_step})"
        if run.evaluation().summary.is_file():
            table = metrics_table(run.evaluation().read_summary())
            for row in table.rows:  # metric, base, tuned, difference (CI), verdict
                col[row[0]] = f"{row[1]} → {row[2]}   {row[3]} {row[4]}".rstrip() if len(row) > 4 else row[1]
        cols.append(col)
    keys = list(dict.fromkeys([*cols[0], *cols[1]]))
    return [[key, cols[0].get(key, ""), cols[1].get(key, "")] for key in keys]


def safe_run_name(root: Path, picked: str | None) -> str:
    """A run name from the data file's name that no run folder under `root` has yet: mine, mine-2, ...

    >>> safe_run_name(Path("/nonexistent"), "uploads/ab/상담 data.jsonl")
    'data'
    """
    stem = diskio.safe_name(Path(picked).stem, fallback="run") if picked else "my-run"
    taken = {p.name for p in root.iterdir()} if root.is_dir() else set()  # run folders and anything else
    return next(n for n in (stem, *(f"{stem}-{i}" for i in range(2, 10_000))) if n not in taken)
