"""Write the self-contained report.html: loss curves (embedded PNG), before/after table, side-by-side examples."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from tunesmith.records import Difference, EvalResult, PreparedData, TrainingSummary
from tunesmith.rundir import RunDir, read_jsonl

EXAMPLES_SHOWN = 5


def loss_png(metrics_rows: list[dict], best_step: int | None = None) -> str:
    """Base64 PNG of train and eval loss against step, the kept (best) checkpoint marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the machines this runs on
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    for key, style in (("loss", "-"), ("eval_loss", "o-")):
        pts = [(r["step"], r[key]) for r in metrics_rows if key in r]
        if pts:
            ax.plot(*zip(*pts), style, label="train loss" if key == "loss" else "eval loss")
    if best_step is not None:
        ax.axvline(best_step, color="green", linestyle="--", alpha=0.6, label=f"kept: step {best_step}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (supervised tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _metrics_table(before: EvalResult, after: EvalResult, main: str, d: Difference) -> str:
    rows = [("eval loss (lower is better)", before.eval_loss, after.eval_loss)]
    rows += [(f"{k}{' (main)' if k == main else ''}", before.metrics[k], after.metrics.get(k))
             for k in before.metrics]
    body = "".join(f"<tr><td>{html.escape(n)}</td><td>{_fmt(b)}</td><td>{_fmt(a)}</td></tr>" for n, b, a in rows)
    return (f"<table><tr><th>metric</th><th>before</th><th>after</th></tr>{body}</table>"
            f"<p>Sentence-level chrF, tuned − base: <b>{d.mean:+.2f}</b> (95% paired bootstrap interval "
            f"{d.low:+.2f} to {d.high:+.2f}, {d.rows} rows): <b>{d.verdict}</b>.</p>")


def _examples(before: EvalResult, after: EvalResult) -> str:
    cells = []
    for b, a in list(zip(before.generations, after.generations))[:EXAMPLES_SHOWN]:
        e = html.escape
        cells.append(f"<div class='ex'><div class='src'>{e(b.source)}</div><pre class='prompt'>{e(b.prompt)}</pre>"
                     f"<table><tr><th>reference</th><th>before</th><th>after</th></tr>"
                     f"<tr><td>{e(b.reference)}</td><td>{e(b.generation)}</td><td>{e(a.generation)}</td></tr>"
                     f"</table></div>")
    return "".join(cells)


def _data_section(data: PreparedData) -> str:
    skipped = data.skipped
    items = "".join(f"<li>{html.escape(s.location)}: {html.escape(s.reason)}</li>" for s in skipped[:20])
    files = "".join(f"<li>{html.escape(f.path.name)}: {f.format}, {f.encoding}, {f.rows_read} rows read, "
                    f"{len(f.conversations)} usable, {len(f.skipped)} skipped</li>" for f in data.files)
    warn = "".join(f"<p class='warn'>{html.escape(w)}</p>" for w in data.warnings)
    return (f"<ul>{files}</ul><p>{len(data.train)} train / {len(data.eval)} eval conversations, "
            f"{len(data.duplicates)} duplicates removed, {len(skipped)} rows skipped.</p>{warn}"
            + (f"<ul>{items}</ul>" if items else ""))


def _training_section(t: TrainingSummary) -> str:
    lines = [f"Eval loss {t.start_eval_loss:.4f} at the start, lowest {t.best_eval_loss:.4f} at step {t.best_step} "
             f"(epoch {t.best_epoch:g}), last {t.last_eval_loss:.4f} at step {t.last_step}."]
    if t.stopped_early:
        lines.append("Early stopping ended training before the planned number of steps.")
    warn = f"<p class='warn'><b>Overfitting:</b> {html.escape(t.overfitting)}.</p>" if t.overfitting else ""
    return "".join(f"<p>{html.escape(x)}</p>" for x in lines) + warn


CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
.ex{margin:1.5em 0}.src{color:#777;font-size:.9em}pre{white-space:pre-wrap;background:#f6f6f6;padding:6px}
.warn{color:#a40}.ex td{width:33%}"""


def write(run: RunDir, *, title: str, model: str, data: PreparedData, before: EvalResult, after: EvalResult,
          main_metric: str, difference: Difference, training: TrainingSummary) -> Path:
    """Render report.html from the run folder's metrics and the two eval results."""
    png = loss_png(read_jsonl(run.metrics), training.best_step) if run.metrics.exists() else ""
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>tunesmith run: {html.escape(title)}</h1>"
            f"<p>model: <code>{html.escape(model)}</code></p>"
            f"<h2>Before and after, on {len(before.generations)} held-out rows</h2>"
            f"{_metrics_table(before, after, main_metric, difference)}"
            f"<h2>Loss</h2>{_training_section(training)}<img alt='loss curves' src='data:image/png;base64,{png}'>"
            f"<h2>Data</h2>{_data_section(data)}"
            f"<h2>Examples (held-out)</h2>{_examples(before, after)}</body></html>")
    run.report.write_text(page, encoding="utf-8")
    return run.report
