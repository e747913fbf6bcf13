"""The report, rebuilt from the run folder alone: report.html (self-contained, plots embedded) and report.md.

Both are rendered from one list of sections, so the twins cannot disagree. Sections: a preference run's accuracy
base vs tuned (prefeval), summary and metrics with 95% confidence intervals, training curves (curves.py: best
checkpoint and overfitting marked), rows that improved most and that got worse, the data, the plan, the
environment.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith import curves, evaluate, metrics, prefeval, retention, train
from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, EvalReport
from tunesmith.diskio import write_bytes, write_text
from tunesmith.rundir import RunDir, open_run
from tunesmith.runfiles import LogRow, Plan, WrittenAnswer

ROWS_SHOWN = 5
MAIN, MAIN_NAME = evaluate.MAIN_METRIC, "chrF"  # the headline metric (see evaluate.MAIN_METRIC for why)
# Order and names in the metrics table; 'eval_loss' and 'perplexity' are corpus-only.
TABLE = (("eval_loss", "eval loss (trainer, lower is better)"), ("perplexity", "perplexity of the references"),
         ("chrf", "chrF (main)"), ("bleu", "BLEU"), ("rouge_l", "ROUGE-L"), ("cosine", "embedding cosine"),
         ("exact_match", "exact match"), ("chars", "mean length (characters)"), ("words", "mean length (words)"),
         ("stopped", "stopped by itself"), ("call_when_due", "calls a function when due"),
         ("tool_call", "function calls right"), ("thinks_when_due", "thinks before answering when due"),
         ("thinking_ended", "thinking ended within max_new_tokens"))
SHARES = ("exact_match", "stopped", "tool_call", "call_when_due", "thinks_when_due", "thinking_ended")  # 0-1: in %


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    file: str  # written beside report.md; embedded in report.html
    alt: str
    png: bytes = field(repr=False, default=b"")


@dataclass
class Pre:
    text: str


@dataclass
class Note:
    text: str
    warn: bool = False


Block = str | Table | Image | Pre | Note


def _fmt(key: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if key in SHARES:
        return f"{value:.0%}"
    return f"{value:.4g}" if key in ("eval_loss", "perplexity", "cosine", "nll") else f"{value:.2f}"


def _interval(key: str, d: Any) -> str:
    if key in SHARES:
        return f"{d.mean * 100:+.1f} pts [{d.low * 100:+.1f}, {d.high * 100:+.1f}]"
    digits = 3 if key in ("cosine", "nll") else 2
    return f"{d.mean:+.{digits}f} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]"


def language_table(ev: EvalReport) -> Table | None:
    """chrF, BLEU and embedding cosine per reference language when the eval set mixes languages (else None)."""
    if len(ev.models) < 2 or not ev.bleu_tokenize.startswith(metrics.PER_ROW):
        return None
    return _breakdown(ev, "language", metrics.rows_by_language(ev.models[0].generations),
                      lambda lang, _: metrics.BLEU_TOKENIZE[lang])


def group_table(ev: EvalReport, convs: dict[str, Conversation]) -> Table | None:
    """The same per value of data.group_by (a label or category column), when the rows have one (else None)."""
    base = ev.models[0]
    groups = [(convs.get(g.source) or Conversation((), "")).group for g in base.generations]
    if len(ev.models) < 2 or all(g is None for g in groups):
        return None
    index: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g or "(none)", []).append(i)
    index = dict(sorted(index.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def tokenize(_: str, idx: list[int]) -> str:  # one tokenizer per group: by its references' language
        if not ev.bleu_tokenize.startswith(metrics.PER_ROW):
            return ev.bleu_tokenize
        return metrics.BLEU_TOKENIZE[metrics.language_of([base.generations[i].reference for i in idx])]

    return _breakdown(ev, "group", index, tokenize)


def _breakdown(ev: EvalReport, first: str, index: dict[str, list[int]], tokenize: Callable[[str, list[int]], str]
               ) -> Table:
    base, other = ev.models[0], ev.models[1]
    cosine = bool(base.rows) and "cosine" in base.rows[0]
    header = [first, "rows"]
    for name in ("chrF", "BLEU", *(["cosine"] if cosine else [])):
        header += [f"{name} {base.label}", f"{name} {other.label}", f"{name} {other.label} − {base.label} (95% CI)"]
    rows = []
    for name, idx in index.items():
        row = [name, str(len(idx))]
        b, o = [base.generations[i] for i in idx], [other.generations[i] for i in idx]
        for key in ("chrf", "bleu"):
            d = metrics.corpus_difference(key, b, o, tokenize(name, idx), seed=ev.settings.seed)
            shown = metrics.corpus_value(key, b, tokenize(name, idx))
            row += [f"{shown:.2f}", f"{shown + d.mean:.2f}", _interval(key, d)]
        if cosine:  # the row mean (rows both models have a cosine for), each language by its own embedder
            both = [i for i in idx if not (math.isnan(base.rows[i]["cosine"]) or math.isnan(other.rows[i]["cosine"]))]
            d = metrics.compare([base.rows[i] for i in both], [other.rows[i] for i in both], seed=ev.settings.seed,
                                skip=[k for k in base.rows[0] if k != "cosine"]).get("cosine")
            shown = sum(base.rows[i]["cosine"] for i in both) / len(both) if both else math.nan
            row += [_fmt("cosine", shown), _fmt("cosine", shown + d.mean), _interval("cosine", d)] if d and both \
                else ["n/a", "n/a", ""]
        rows.append(row)
    return Table(header, rows)


def _units_text(ev: EvalReport) -> str:
    if ev.bleu_tokenize.startswith(metrics.PER_ROW):
        return f"each row's own units by its reference's language (BLEU tokenizer {ev.bleu_tokenize})"
    units = "characters" if ev.lang in metrics.CHAR_LEVEL else "words"
    return f"{units} (references look {ev.lang}; BLEU tokenizer {ev.bleu_tokenize})"


def metrics_table(ev: EvalReport) -> Table:
    """One column per model, then for each later model: the difference from the first with its CI, and a verdict."""
    others = ev.models[1:]
    header = ["metric", *(m.label for m in ev.models)]
    for m in others:
        header += [f"{m.label} − {ev.models[0].label} (95% CI)", "verdict"]
    rows = []
    for key, name in TABLE:
        values = [m.eval_loss if key == "eval_loss" else m.metrics.get(key) for m in ev.models]
        if all(v is None for v in values):
            continue
        row = [name, *(_fmt(key, v) for v in values)]
        for m in others:
            diff_key = "nll" if key == "perplexity" else key  # log(perplexity) = token-weighted nll
            d = ev.differences.get(m.label, {}).get(diff_key)
            row += [_interval(diff_key, d) + (" (nll)" if key == "perplexity" else ""),
                    d.verdict] if d else ["", ""]
        rows.append(row)
    return Table(header, rows)


def retention_table(ev: EvalReport) -> Table | None:
    """The general-domain check: each measure's value per model and each later model's change from the first.
    Perplexity changes are ratios of the shown perplexities (the difference of token-weighted nll)."""
    ret = ev.retention
    if ret is None:
        return None
    labels = [m.label for m in ret.models]
    header = ["outside the task", *labels]
    for label in labels[1:]:
        header += [f"{label} vs {labels[0]} (95% CI)", "verdict"]
    rows = []
    for key, (name, _) in retention.MEASURES.items():
        if not all(key in ret.differences[label] for label in labels[1:]):
            continue
        row = [name, *(f"{retention.value(ret, label, key):.4g}" for label in labels)]
        for label in labels[1:]:
            d = ret.differences[label][key]
            row += [retention.change_text(key, d), d.verdict]
        rows.append(row)
    return Table(header, rows)


def _retention_blocks(ev: EvalReport) -> list[Block]:
    table = retention_table(ev)
    if table is None or ev.retention is None:
        return [Note("Not measured (eval.retention: off, or auto on a model over 2B parameters without a GPU).")]
    ret = ev.retention
    sentences = [Note(retention.verdict(ret, m.label), warn=bool(retention.forgetting(ret, m.label)))
                 for m in ret.models[1:]]
    langs = sorted({lang for _, lang in ret.passages})
    return [*sentences, table,
            Note(f"{len(ret.passages)} short general-domain passages ({', '.join(langs)}) and {len(ret.prompts)} "
                 "general prompts with reference answers, shipped with tunesmith (retention_data/); answers greedy, "
                 f"at most {retention.ANSWER_TOKENS} tokens, through each model's evaluation template. Perplexity "
                 "changes are tuned/base ratios with a 95% paired bootstrap interval over passages or prompts; "
                 "chrF is corpus-level, its interval from resampling prompts."),
            Table(["prompt", *(m.label for m in ret.models)],
                  [[pid, *(m.answers[i] for m in ret.models)] for i, (pid, _) in enumerate(ret.prompts)])]


def _last_user(conv: Conversation | None, fallback: str) -> str:
    if conv is None:
        return fallback
    users = [m.content for m in conv.messages if m.role == "user"]
    return users[-1] if users else conv.messages[0].content


def changed_rows(ev: EvalReport, convs: dict[str, Conversation]) -> tuple[list[Block], list[Block]]:
    """The rows whose sentence chrF rose most, and those where it fell most, tuned against base."""
    if len(ev.models) < 2:
        return [], []
    base, tuned = ev.models[0], ev.models[1]
    deltas = sorted(((t[MAIN] - b[MAIN], i) for i, (b, t) in enumerate(zip(base.rows, tuned.rows))),
                    reverse=True)

    def blocks(picked: list[tuple[float, int]]) -> list[Block]:
        out: list[Block] = []
        for delta, i in picked:
            g_base, g_tuned = base.generations[i], tuned.generations[i]
            out += [Note(f"{g_base.source}: {MAIN_NAME} {base.rows[i][MAIN]:.1f} → {tuned.rows[i][MAIN]:.1f} "
                         f"({delta:+.1f})"),
                    Pre(_last_user(convs.get(g_base.source), g_base.prompt)),
                    Table(["reference", base.label, tuned.label],
                          [[g_base.reference, g_base.generation, g_tuned.generation]])]
        return out

    better = [d for d in deltas if d[0] > 0][:ROWS_SHOWN]
    worse = [d for d in reversed(deltas) if d[0] < 0][:ROWS_SHOWN]
    return blocks(better), blocks(worse)


def _summary_sentence(ev: EvalReport) -> str:
    if len(ev.models) < 2:
        return f"{ev.models[0].label}: {MAIN_NAME} {ev.models[0].metrics.get(MAIN, float('nan')):.2f}"
    b, t = ev.models[0], ev.models[1]
    d = ev.differences[t.label][MAIN]
    return (f"On {d.rows} held-out rows, {t.label} vs {b.label}: {MAIN_NAME} {b.metrics[MAIN]:.2f} → "
            f"{t.metrics[MAIN]:.2f}, a difference of {d.mean:+.2f} (95% paired bootstrap "
            f"{d.low:+.2f} to {d.high:+.2f}): {d.verdict}.")


def sections(run: RunDir, say: Callable[[str], None] | None = None) -> list[tuple[str, list[Block]]]:
    """Everything the report says, read from the run folder."""
    cfg_text = run.config.read_text(encoding="utf-8") if run.config.is_file() else ""
    plan = run.read_plan()
    ev = run.evaluation().read_summary()
    convs = {c.source: c for c in run.read_conversations("eval")} if run.eval_data.is_file() else {}
    out: list[tuple[str, list[Block]]] = []
    prefs = prefeval.read(run)
    if prefs is not None and len(prefs.models) > 1:
        header, rows = prefeval.table(prefs)
        out.append(("Does the model prefer what people chose?",
                    [Note(prefeval.verdict(prefs, prefs.models[1].label) + "."), Table(header, rows),
                     Note(prefeval.ABOUT)]))
    out.append(("Did tuning help?" if prefs is None else "Answers to the held-out prompts, scored against the "
                "chosen answers", _scores_blocks(ev, convs)))
    out.append(("Did tuning break anything? (retention outside the task)", _retention_blocks(ev)))
    training = train.read_summary(run, say)  # says so when metrics.jsonl ends in a torn line
    if training:
        out.append(("Training", _training_blocks(run, training, plan, preference=prefs is not None)))
    better, worse = changed_rows(ev, convs)
    out.append((f"Rows that improved most (up to {ROWS_SHOWN}, by sentence chrF)", better or ["none"]))
    out.append((f"Rows that got worse (up to {ROWS_SHOWN})", worse or ["none"]))
    out.append(("Data", _data_blocks(run)))
    if plan:
        out.append(("Plan", [Pre("\n".join(plan.lines))]))
    out.append(("Environment", _environment(run)))
    if cfg_text:
        out.append(("Config", [Pre(cfg_text)]))
    return out


def _scores_blocks(ev: EvalReport, convs: dict[str, Conversation]) -> list[Block]:
    """The metrics table, how its intervals were drawn, the by-language and by-group tables, the embedder and the
    judge."""
    notes: list[Block] = [Note(_summary_sentence(ev)), metrics_table(ev),
                          Note("Intervals: 95% paired bootstrap over rows (2000 resamples, seed "
                               f"{ev.settings.seed}): of the "
                               "corpus statistic for chrF and BLEU, of the token-weighted nll for perplexity, of "
                               "the row mean for the others; a verdict is 'better' or 'worse' only when the "
                               f"interval excludes zero. BLEU and ROUGE-L on {_units_text(ev)}. Generation: "
                               + ", ".join(f"{k} {v}" for k, v in ev.settings.to_json().items()) + ".")]
    by_language = language_table(ev)
    if by_language is not None:
        notes += [Note("By reference language (each row tokenised by its own language; the difference is tuned − "
                       "base of the corpus statistic for chrF and BLEU, of the row mean for cosine, with its paired "
                       "bootstrap interval):"), by_language]
    by_group = group_table(ev, convs)
    if by_group is not None:
        notes += [Note("By data.group_by (each group's difference is tuned − base of its corpus statistic for chrF "
                       "and BLEU, of the row mean for cosine, with its paired bootstrap interval; a group of few "
                       "rows has a wide interval):"), by_group]
    multilingual = ev.embedder is not None and ("e5" in ev.embedder.lower() or "multilingual" in ev.embedder.lower())
    if ev.embedder and ev.lang in metrics.CHAR_LEVEL and not multilingual:
        notes.append(Note(f"Cosine uses {Path(ev.embedder).name if '/' in ev.embedder else ev.embedder}, an "
                          "English sentence model: on Korean text it mostly measures shared characters. Set "
                          "eval.embedder to default or multilingual for a meaningful Korean cosine.", warn=True))
    elif ev.embedder:
        notes.append(Note(f"Embedding cosine by reference language: {ev.embedder}."))
    if ev.judge:
        j = ev.judge
        notes.append(Note(f"LLM judge {j.judge}: tuned preferred in {j.tuned_wins} of {j.rows} rows, "
                          f"base in {j.base_wins}, ties {j.ties} (each pair asked in both orders; a row "
                          f"wins only when both orders agree; {j.unparsed_replies} unreadable replies). Net "
                          f"win share {j.net_win_share:+.2f} [{j.low:+.2f}, {j.high:+.2f}]: {j.verdict}."))
    return notes


def _training_blocks(run: RunDir, training: train.TrainingSummary, plan: Plan | None, *,
                     preference: bool) -> list[Block]:
    """The eval loss from start to end, overfitting, and the training curves."""
    loss = "Eval loss" if not preference else "Held-out preference loss (the objective's own, on the held-out pairs)"
    said = (f"{loss} {training.start_eval_loss:.4f} at the start, lowest {training.best_eval_loss:.4f} at step "
            f"{training.best_step} (epoch {training.best_epoch:g}), last {training.last_eval_loss:.4f} at step "
            f"{training.last_step}.")
    if training.best_eval_reward is not None:  # grpo: its loss says nothing of the answers; their reward does
        said = (f"Held-out reward (answers written to the eval prompts, scored as in training) "
                f"{training.start_eval_reward:.4f} at the start, highest {training.best_eval_reward:.4f} at step "
                f"{training.best_step} (epoch {training.best_epoch:g})"
                + (": not above the start, training did not raise it." if training.best_eval_reward
                   <= training.start_eval_reward else "."))
    blocks: list[Block] = [Note(said + (" Early stopping ended training before the planned "
                                        f"{plan.total_steps} steps." if plan and training.stopped_early else ""))]
    rows = run.read_metrics()  # read once: the rewards apart and the curves
    blocks += [Note(line) for line in [_rewards_apart(rows, training.best_step),
                                       _answers_apart(run.read_answers(), training.best_step)] if line]
    if training.overfitting:
        blocks.append(Note(f"Overfitting: {training.overfitting}. The kept weights are those of step "
                           f"{training.best_step}.", warn=True))
    blocks.append(Image(run.report_curves.name, "training curves: loss, learning rate, accuracy",
                        curves.plot(rows, training, preference=preference)))
    return blocks


def _rewards_apart(rows: list[LogRow], kept: int) -> str | None:
    """grpo with more than one reward: each one's held-out mean at the start and at the kept step, apart (the
    summed reward can rise while one of them falls)."""
    start = next((r.eval_rewards for r in rows if r.step == 0 and r.eval_rewards), None)
    end = next((r.eval_rewards for r in reversed(rows) if r.step == kept and r.eval_rewards), None)
    if not start or not end or len(start) < 2:
        return None
    return ("Held-out reward by reward, at the start and at the kept step: "
            + "; ".join(f"{name} {start[name]:.3f} -> {end[name]:.3f}" for name in start if name in end) + ".")


def _answers_apart(answers: list[WrittenAnswer], kept: int, room: int = 240) -> str | None:
    """grpo: the highest and the lowest scored of the answers written to the held-out prompts at the kept step (the
    summed score; answers.jsonl keeps them all), so that what the rewards reward can be read."""
    held = [a for a in answers if a.held_out and a.step == kept]
    if len(held) < 2:
        return None

    def total(a: WrittenAnswer) -> float:
        return sum(v for v in a.rewards.values() if v is not None)

    def shown(a: WrittenAnswer) -> str:
        text = " ".join(a.answer.split())
        return f"{total(a):.3f}: \u201c{text[:room]}{'...' if len(text) > room else ''}\u201d"

    best, worst = max(held, key=total), min(held, key=total)
    return (f"Of the {len(held)} answers written to the held-out prompts at step {kept} (answers.jsonl keeps every "
            f"answer with its rewards), the highest scored {shown(best)}; the lowest {shown(worst)}.")


def _data_blocks(run: RunDir) -> list[Block]:
    d = run.read_data_report()
    if d is None:
        return ["no data summary in this run folder"]
    blocks: list[Block] = [
        Note(f"{d.rows_read} rows read: {d.train} train, {d.eval} eval, {d.duplicates} duplicates "
             f"removed, {len(d.skipped)} skipped while reading, {len(d.not_trained)} not trained"
             + (" (why: below)." if d.not_trained else ".")),
        Table(["file", "format", "encoding", "rows read", "usable", "skipped"],
              [[Path(f.path).name, f.format, f.encoding, str(f.rows_read), str(f.usable), str(f.skipped)]
               for f in d.files])]
    if d.skipped:
        blocks.append(Table(["skipped because", "rows"], [[r, str(n)] for r, n in d.skipped_by_reason.items()]))
    if d.not_trained:
        blocks.append(Table(["not trained because", "rows"],
                            [[r, str(n)] for r, n in d.not_trained_by_reason.items()]))
    blocks += [Note(w, warn=True) for w in d.warnings]
    return blocks


def _environment(run: RunDir) -> list[Block]:
    m = run.read_manifest()
    if m is None:
        return ["no manifest in this run folder"]
    facts = [["python", m.python], ["platform", m.platform], ["tunesmith commit", str(m.tunesmith_git_commit)],
             ["seed", str(m.seed)]]
    facts += [[k, str(v)] for k, v in m.hardware.items()]
    facts += [[k, str(v)] for k, v in m.packages.items()]
    facts += [[f"sha256 {Path(p).name}", h[:16]] for p, h in m.data_files.items()]
    return [Table(["", ""], facts)]


CSS = """body{font-family:"Helvetica Neue",Arial,"Noto Sans CJK KR","Nanum Gothic","Malgun Gothic",
"Apple SD Gothic Neo",sans-serif;max-width:1200px;margin:2em auto;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
pre{white-space:pre-wrap;background:#f6f6f6;padding:6px}.warn{color:#a40}img{max-width:100%}"""


def to_html(title: str, secs: list[tuple[str, list[Block]]]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{CSS}</style>"
             f"</head><body><h1>tunesmith run: {e(title)}</h1>"]
    for heading, blocks in secs:
        parts.append(f"<h2>{e(heading)}</h2>")
        for b in blocks:
            if isinstance(b, Table):
                head = "".join(f"<th>{e(h)}</th>" for h in b.header)
                body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b.rows)
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
            elif isinstance(b, Image):
                parts.append(f"<img alt='{e(b.alt)}' src='data:image/png;base64,"
                             f"{base64.b64encode(b.png).decode()}'>")
            elif isinstance(b, Pre):
                parts.append(f"<pre>{e(b.text)}</pre>")
            elif isinstance(b, Note):
                parts.append(f"<p class='warn'>{e(b.text)}</p>" if b.warn else f"<p>{e(b.text)}</p>")
            else:
                parts.append(f"<p>{e(b)}</p>")
    return "".join(parts) + "</body></html>"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def to_markdown(title: str, secs: list[tuple[str, list[Block]]]) -> str:
    lines = [f"# tunesmith run: {title}", ""]
    for heading, blocks in secs:
        lines += [f"## {heading}", ""]
        for b in blocks:
            if isinstance(b, Table):
                lines += ["| " + " | ".join(map(_md_cell, b.header)) + " |",
                          "|" + "---|" * len(b.header)]
                lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in b.rows]
            elif isinstance(b, Image):
                lines.append(f"![{b.alt}]({b.file})")
            elif isinstance(b, Pre):
                lines += ["```", b.text, "```"]
            elif isinstance(b, Note):
                lines.append(f"**{b.text}**" if b.warn else b.text)
            else:
                lines.append(b)
            lines.append("")
    return "\n".join(lines)


def rebuild(path: Path, say: Callable[[str], None] = print) -> Path:
    """`tunesmith report`: rebuild the report of an existing run folder, holding its lock while writing.

    >>> rebuild(Path("runs/demo"))  # doctest: +SKIP
    PosixPath('runs/demo/report.html')
    """
    if not path.is_dir():
        raise TunesmithError(f"run folder {path} not found", fix="pass a folder under runs/, e.g. runs/demo")
    run = open_run(path, say)
    with run.held():
        return write(run, say)


def write(run: RunDir, say: Callable[[str], None] | None = None) -> Path:
    """Write report.html and report.md (+ its PNG) from the run folder; returns the HTML path."""
    if not run.root.is_dir():
        raise TunesmithError(f"run folder {run.root} not found", fix="pass a folder under runs/")
    # a failed run (training, or its evaluation after it): that error, not "no evaluation yet, run tunesmith eval"
    failed = None if run.evaluation().summary.is_file() else run.failed_error(
        "trained weights" if run.weights is None else "evaluation")
    if failed is not None:
        raise failed
    secs = sections(run, say)
    title = run.root.name
    for _, blocks in secs:  # the picture first: report.md never points at a missing PNG
        for b in blocks:
            if isinstance(b, Image):
                write_bytes(run.root / b.file, b.png)
    write_text(run.report_md, to_markdown(title, secs))
    write_text(run.report, to_html(title, secs))  # last: its presence marks the run finished
    return run.report
