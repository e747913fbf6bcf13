"""What the UI may read and where it keeps uploads: everything lives under the runs folder the UI was started on.

Uploads are copied to RUNS/uploads/<first 16 hex of sha256>/<file name> (the same bytes always land in the same
place; the sha256 is written beside them), and every path the browser names is resolved and must stay inside the
runs folder: `../`, absolute paths and symlinks out of it are refused (tests/test_ui.py).
"""

from __future__ import annotations

import hashlib
import html
import shutil
from pathlib import Path

from tunesmith import rundir
from tunesmith.errors import TunesmithError

UPLOADS = "uploads"
EXPORTS = "exports"  # `tunesmith export` folders the Export tab writes
NOT_DATA = (".ui", EXPORTS)  # the UI's own configs and logs, and exported models: never offered as data


def inside(root: Path, name: str | Path) -> Path:
    """`name` (relative to `root`, or absolute) resolved; TunesmithError unless it is `root` or under it."""
    base = root.resolve()
    path = (base / name).resolve()
    if path != base and base not in path.parents:
        raise TunesmithError(f"{name} is outside {root}", where="ui",
                             fix="the UI reads only files under its --runs folder; upload the file instead")
    return path


def save_upload(root: Path, src: Path) -> Path:
    """Keep an uploaded file under ROOT/uploads/<sha256[:16]>/ (its name kept, its sha256 beside it)."""
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    folder = root / UPLOADS / digest[:16]
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / Path(src.name).name
    if not dest.is_file():
        shutil.copyfile(src, dest)
    (folder / "sha256").write_text(f"{digest}  {dest.name}\n", encoding="utf-8")
    return dest


def data_files(root: Path) -> list[str]:
    """Data files the UI offers to pick: uploads and anything else under the runs folder a reader takes."""
    suffixes = {".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt"}
    runs = {p.parent for p in root.glob("*/" + rundir.MARKER)}  # a run folder's files are its own, not data
    found = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
             and not runs & set(p.parents) and p.name != "sha256" and p.relative_to(root).parts[0] not in NOT_DATA]
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
    stem = rundir.safe_name(Path(picked).stem, fallback="run") if picked else "my-run"
    taken = {p.name for p in root.iterdir()} if root.is_dir() else set()  # run folders and anything else
    return next(n for n in (stem, *(f"{stem}-{i}" for i in range(2, 10_000))) if n not in taken)
