"""The report from a real run folder: every section in HTML and Markdown, and a look at it in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SECTIONS = ("Did tuning help?", "Did tuning break anything? (retention outside the task)", "Training", "Rows that improved most", "Rows that got worse", "Data", "Plan",
            "Environment", "Config")


def test_tunesmith_report_rebuilds_both_twins_with_every_section(tiny_run: Path, tmp_path: Path):  # noqa: F811
    (tiny_run / "report.html").unlink()
    (tiny_run / "report.md").unlink()
    res = subprocess.run([sys.executable, "-m", "tunesmith", "report", str(tiny_run)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    page = (tiny_run / "report.html").read_text(encoding="utf-8")
    md = (tiny_run / "report.md").read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"<h2>{title}" in page and f"## {title}" in md, title
    for text in ("chrF (main)", "tuned − base (95% CI)", "perplexity of the references", "embedding cosine",
                 "stopped by itself", "kept weights" if "Overfitting" in page else "lowest", "torch"):
        assert text in page and text in md, text
    assert page.count("data:image/png;base64,") == 1 and "http" not in page.split("<body>")[1].split("tunesmith")[0]
    assert "![training curves" in md and (tiny_run / "report_curves.png").stat().st_size > 10_000
    assert "src='http" not in page and "<script" not in page  # opens with no network


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None and not os.environ.get("TUNESMITH_REQUIRE_CHROMIUM"),
                    reason="no chromium here (.ci/run installs it and sets TUNESMITH_REQUIRE_CHROMIUM=1)")
def test_the_report_renders_in_headless_chromium_with_its_loss_chart(tiny_run: Path, tmp_path: Path):  # noqa: F811
    from PIL import Image

    browser = _chromium()
    assert browser, "TUNESMITH_REQUIRE_CHROMIUM is set but chromium is not installed"
    shot = tmp_path / "report.png"
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          f"--screenshot={shot}", "--window-size=1280,1600", (tiny_run / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 1600)
    # matplotlib's first two line colours (train loss blue #1f77b4, eval loss orange #ff7f0e) only occur in
    # the chart: if the page shows them, the embedded loss chart was decoded and drawn.
    import numpy as np

    pixels = np.asarray(image, dtype=int).reshape(-1, 3)

    def near(rgb: tuple[int, int, int]) -> int:
        return int((np.abs(pixels - np.array(rgb)) < 30).all(axis=1).sum())

    assert near((31, 119, 180)) > 200 and near((255, 127, 14)) > 100
    shutil.copy(shot, tiny_run / "report_screenshot.png")


def test_every_difference_shown_is_the_difference_of_the_numbers_shown(tiny_run: Path):
    """The terminal table, report.md and report.html: tuned − base of each metric's displayed values (the corpus
    statistic for chrF and BLEU, the token-weighted nll for perplexity) is the difference column's number."""
    import math

    from tunesmith import rundir
    from tunesmith.report import TABLE, metrics_table

    ev = rundir.RunDir(tiny_run).evaluation().read_summary()
    base, tuned = ev.models
    table = metrics_table(ev)
    checked = 0
    for key, name in TABLE:
        d = ev.differences["tuned"].get("nll" if key == "perplexity" else key)
        if d is None or key not in base.metrics:
            continue
        shown = (math.log(tuned.metrics[key]) - math.log(base.metrics[key]) if key == "perplexity"
                 else tuned.metrics[key] - base.metrics[key])
        assert d.mean == pytest.approx(shown, abs=1e-9), key
        assert d.low <= d.mean <= d.high or d.rows == 0, key
        row = next(r for r in table.rows if r[0] == name)
        assert row[3].split(" [")[0] in (f"{d.mean:+.2f}", f"{d.mean:+.3f}", f"{d.mean * 100:+.1f} pts"), row
        checked += 1
    assert checked >= 8  # perplexity, chrF, BLEU, ROUGE-L, exact match, characters, words, stopped
    md = (tiny_run / "report.md").read_text(encoding="utf-8")
    html = (tiny_run / "report.html").read_text(encoding="utf-8")
    for row in table.rows:
        if row[3]:
            assert row[3] in md and row[3].replace("−", "&minus;") in html or row[3] in html, row
    _retention_columns_agree(ev, md, html)


def _retention_columns_agree(ev, md: str, html: str) -> None:  # noqa: ANN001
    """The retention table: a perplexity change is tuned/base of the perplexities shown, chrF's the difference."""
    import math

    from tunesmith import retention
    from tunesmith.report import retention_table

    table = retention_table(ev)
    assert table is not None and len(table.rows) == len(retention.MEASURES)
    for row, (key, (name, kind)) in zip(table.rows, retention.MEASURES.items()):
        d = ev.retention.differences["tuned"][key]
        base, tuned = (retention.value(ev.retention, label, key) for label in ("base", "tuned"))
        shown = math.log(tuned / base) if kind == "nll" else tuned - base
        assert row[0] == name and d.mean == pytest.approx(shown, abs=1e-9), row
        assert row[3] == retention.change_text(key, d) and f"| {row[3]} |" in md and row[3] in html, row


def test_a_mixed_language_eval_gets_a_table_per_language_whose_differences_add_up():
    import random

    from tunesmith import metrics
    from tunesmith.config import EvalConfig
    from tunesmith.records import EvalReport, EvalSettings, Generation, ModelEval
    from tunesmith.report import language_table

    rng = random.Random(0)
    ko_words, en_words = "학교 친구 오늘 가다 먹다 좋다 마음 시간".split(), "school friend today go eat good mind time".split()
    refs = [" ".join(rng.choices(ko_words, k=6)) for _ in range(12)] + \
        [" ".join(rng.choices(en_words, k=6)) for _ in range(20)]
    base = tuple(Generation(f"x:{i}", "p", r, " ".join(rng.sample(r.split(), 3))) for i, r in enumerate(refs))
    tuned = tuple(Generation(g.source, "p", g.reference, g.reference if i % 2 else g.generation)
                  for i, g in enumerate(base))
    scored = [metrics.score_rows(gens) for gens in (base, tuned)]
    for k, s in enumerate(scored):  # a cosine per row, as an embedder would give (tuned closer on odd rows)
        for i, row in enumerate(s.rows):
            row["cosine"] = 0.5 + 0.01 * (i % 7) + (0.2 if k and i % 2 else 0.0)
    ev = EvalReport(tuple(ModelEval(label, label, s.corpus, tuple(s.rows), gens)
                          for label, s, gens in zip(("base", "tuned"), scored, (base, tuned))),
                    {}, scored[0].lang, scored[0].bleu_tokenize, None, EvalSettings.of(EvalConfig(), "fp32"))
    assert ev.bleu_tokenize == "per-row: ko char, en 13a"
    table = language_table(ev)
    assert [r[:2] for r in table.rows] == [["en", "20"], ["ko", "12"]]
    for row in table.rows:
        for at in (2, 5, 8):  # chrF, BLEU, cosine: base, tuned, difference
            shown = float(row[at + 1]) - float(row[at])
            assert float(row[at + 2].split(" [")[0]) == pytest.approx(shown, abs=0.0011 if at == 8 else 0.011), row
    assert table.header[8:11] == ["cosine base", "cosine tuned", "cosine tuned − base (95% CI)"]
    single = EvalReport(ev.models, {}, "en", "13a", None, ev.settings)
    assert language_table(single) is None  # one language: the main table says it all


def test_rows_named_by_data_group_by_get_a_table_per_group():
    from tunesmith import metrics
    from tunesmith.config import EvalConfig
    from tunesmith.records import Conversation, EvalReport, EvalSettings, Generation, ModelEval
    from tunesmith.report import group_table

    refs = [f"the answer number {i} is kind" for i in range(10)]
    base = tuple(Generation(f"qa.csv:{i + 2}", "p", r, "no") for i, r in enumerate(refs))
    tuned = tuple(Generation(g.source, "p", g.reference, g.reference if i < 6 else "no") for i, g in enumerate(base))
    scored = [metrics.score_rows(gens) for gens in (base, tuned)]
    ev = EvalReport(tuple(ModelEval(label, label, s.corpus, tuple(s.rows), gens)
                          for label, s, gens in zip(("base", "tuned"), scored, (base, tuned))),
                    {}, scored[0].lang, scored[0].bleu_tokenize, None, EvalSettings.of(EvalConfig(), "fp32"))
    convs = {g.source: Conversation((), g.source, "1" if i < 6 else "0") for i, g in enumerate(base)}
    table = group_table(ev, convs)
    assert [r[:2] for r in table.rows] == [["1", "6"], ["0", "4"]]
    helped, untouched = table.rows
    assert float(helped[3]) > float(helped[2]) and helped[4].startswith("+") and "[+" in helped[4]
    assert untouched[2] == untouched[3] and untouched[4].startswith("+0.00 [+0.00, +0.00]")  # the same answers
    assert group_table(ev, {s: Conversation((), s) for s in convs}) is None  # no group_by: no table


def test_report_on_a_run_whose_evaluation_failed_says_that_failure(tiny_run, tmp_path):
    from tunesmith import report, rundir
    from tunesmith.errors import TunesmithError

    run = rundir.RunDir(shutil.copytree(tiny_run, tmp_path / "run"))
    shutil.rmtree(run.eval_dir)
    run.record_failure(TunesmithError("the embedder all-MiniLM-L6-v2 is not on this machine",
                                      fix="--set eval.embedder=none").render())
    with pytest.raises(TunesmithError, match="has no evaluation: it failed: the embedder") as err:
        report.write(run)
    assert err.value.fix == "--set eval.embedder=none"


def test_a_grpo_run_with_two_rewards_reports_each_one_s_held_out_mean_apart():
    from tunesmith.report import _rewards_apart
    from tunesmith.runfiles import LogRow

    rows = [LogRow.of(0, 0.0, {"eval_reward": 1.1, "eval_rewards/number/mean": 0.4,
                                "eval_rewards/my_rewards.py:concise/mean": 0.7}),
            LogRow.of(4, 1.0, {"reward": 1.3, "rewards/number/mean": 0.5, "rewards/my_rewards.py:concise/mean": 0.8}),
            LogRow.of(4, 1.0, {"eval_reward": 1.2, "eval_rewards/number/mean": 0.3,
                                "eval_rewards/my_rewards.py:concise/mean": 0.9})]
    assert _rewards_apart(rows, 4) == ("Held-out reward by reward, at the start and at the kept step: number 0.400 -> "
                                       "0.300; my_rewards.py:concise 0.700 -> 0.900.")
    one = [LogRow.of(step, 0.0, {"eval_rewards/number/mean": 0.3}) for step in (0, 4)]
    assert _rewards_apart(one, 4) is None  # one reward: the held-out reward line says it already


def test_a_grpo_report_shows_the_highest_and_lowest_scored_held_out_answers_of_the_kept_step():
    from tunesmith.report import _answers_apart
    from tunesmith.runfiles import WrittenAnswer

    answers = [WrittenAnswer(4, "p", "It is   4.", {"number": 1.0, "thinks": 1.0}, held_out=True),
               WrittenAnswer(4, "p", "No idea " * 50, {"number": None, "thinks": 0.0}, held_out=True),
               WrittenAnswer(4, "p", "train-time answer", {"number": 1.0, "thinks": 1.0}),
               WrittenAnswer(2, "p", "earlier", {"number": 0.0, "thinks": 0.0}, held_out=True)]
    said = _answers_apart(answers, 4, room=20)
    assert said == ("Of the 2 answers written to the held-out prompts at step 4 (answers.jsonl keeps every answer "
                    "with its rewards), the highest scored 2.000: \u201cIt is 4.\u201d; the lowest 0.000: "
                    "\u201cNo idea No idea No i...\u201d.")
    assert _answers_apart(answers, 3) is None
