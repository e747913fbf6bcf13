"""The whole job's joins (issue 10): resume only on the same data, --continue-from never its own run, one
accounting of rows from read to trained, and eval/report never left describing other rows or settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, TINY_TRAIN, fails, tiny_config, tiny_llama, tunesmith
from tunesmith import config, evaluate, pipeline, report, rundir
from tunesmith.errors import TunesmithError
from tunesmith.records import EvalSettings
from tunesmith.runfiles import DataReport


def short_config(tiny_model_dir: Path, data: Path, out: Path) -> config.RunConfig:
    """The tiny run with 4 steps, an eval every 2, the retention check on (the reproducibility test compares it)."""
    cfg = tiny_config(tiny_model_dir, data, out, train={**TINY_TRAIN, "max_steps": 4, "eval_steps": 2})
    return cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"retention": "on"})})


def sample_rows(n: int) -> list[str]:
    return (SAMPLE / "counsel_en.jsonl").read_text(encoding="utf-8").splitlines()[:n]


@pytest.fixture(scope="module")
def finished(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run; tests work on copies of it."""
    home = tmp_path_factory.mktemp("finished")
    data = home / "small.jsonl"
    data.write_text("\n".join(sample_rows(16)) + "\n", encoding="utf-8")
    return pipeline.run(short_config(tiny_model_dir, data, home / "runs"), say=lambda _: None).run_dir


@pytest.fixture
def run_copy(finished: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "runs" / "tiny"
    shutil.copytree(finished, dest)
    (dest / ".lock").write_text("")  # the copy is not held by anyone
    return dest


def test_resume_refuses_changed_data_and_rewrites_lost_inputs(tiny_model_dir: Path, tmp_path: Path):
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(sample_rows(16)) + "\n", encoding="utf-8")
    cfg = short_config(tiny_model_dir, data, tmp_path / "runs")
    run = rundir.RunDir(pipeline.run(cfg, say=lambda _: None).run_dir)
    manifest = json.loads(run.manifest.read_text())
    assert manifest["data_files"] == {str(data): pipeline._sha256(data)}

    # Killed during evaluation, with the manifest and plan lost: the re-run resumes and writes them again.
    for lost in (run.report, run.manifest, run.plan):
        lost.unlink()
    said: list[str] = []
    pipeline.run(cfg, say=said.append)
    assert "training finished earlier: " + str(run.adapter) in said
    assert json.loads(run.manifest.read_text())["data_files"] == manifest["data_files"]
    assert json.loads(run.plan.read_text())["total_steps"] == 4 and run.report.is_file()

    # Killed again, and the data file replaced meanwhile: resuming would describe the old rows. Refused.
    run.report.unlink()
    data.write_text("\n".join(sample_rows(17)[1:]) + "\n", encoding="utf-8")
    train_rows = run.train_data.read_bytes()
    with pytest.raises(TunesmithError) as err:
        pipeline.run(cfg, say=lambda _: None)
    assert err.value.problems == [f"{data}: changed since the unfinished run"]
    assert "pass --overwrite to start it again on the new data" in err.value.render()
    assert run.train_data.read_bytes() == train_rows  # the folder still describes what it trained on
    assert run.state() == "failed" and "changed since the unfinished run" in run.failure.read_text()  # the UI's


def test_continue_from_its_own_run_is_refused_before_anything_is_deleted(run_copy: Path, tiny_model_dir: Path,
                                                                        tmp_path: Path):
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    res = tunesmith("train", "--data", str(tmp_path / "x.jsonl"), "--model", str(tiny_model_dir), "--name", "tiny",
                    "--continue-from", str(run_copy), "--overwrite", cwd=tmp_path)
    fails(res, f"--continue-from {run_copy} is the run being written ({run_copy})",
          "how to fix: give the new run its own --name")
    assert {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()} == before


def test_rows_add_up_from_read_to_trained_with_every_kind_of_skip(tiny_model_dir: Path, tmp_path: Path):
    rows = sample_rows(14)
    long_row = json.loads(rows[0])
    long_row["messages"][-1]["content"] = "I hear you. " * 200  # far over max_length 128: dropped, not cut
    data = tmp_path / "mixed.jsonl"
    data.write_text("\n".join([*rows, "{not json", json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
                               rows[3], json.dumps(long_row)]) + "\n", encoding="utf-8")
    cfg = short_config(tiny_model_dir, data, tmp_path / "runs")

    said: list[str] = []
    plan_lines = pipeline.plan(cfg, say=said.append)
    prepared = pipeline.prepare(cfg.data)
    _, tokenizer = pipeline.models.load(cfg.model, tokenizer_only=True)
    rendered, train_ex, eval_ex = pipeline.render(tokenizer, prepared, cfg, lambda _: None)
    summary = DataReport.of(rendered)

    assert summary.rows_read == 18 == (summary.train + summary.eval + len(summary.skipped) + summary.duplicates
                                       + len(summary.not_trained))
    assert (len(summary.skipped), summary.duplicates, len(summary.not_trained)) == (2, 1, 1)
    assert (summary.train, summary.eval) == (len(train_ex), len(eval_ex))
    assert summary.not_trained_by_reason == {"longer than template.max_length": 1}
    assert (f"rows: {summary.train} train, {summary.eval} eval (read 18: 2 skipped, 1 duplicates, 1 not "
            "trained: 1 longer than template.max_length)") in plan_lines
    assert "not trained or evaluated: 1 row (all of them: data/summary.json in the run folder)" in said
    assert any(line.startswith("  1 row longer than template.max_length 128; ") and line.endswith(": mixed.jsonl:18")
               for line in said)
    # the tiny model's context is 512 tokens: no max_length keeps this row
    assert "    fix: longer than the model's context (512 tokens): shorten them, or --set template.overflow=truncate" \
        in said

    run = rundir.RunDir(tmp_path / "folder")
    run.write_data_report(summary)
    assert run.read_data_report() == summary
    note = report._data_blocks(run)[0].text
    assert note == (f"18 rows read: {summary.train} train, {summary.eval} eval, 1 duplicates removed, 2 "
                    "skipped while reading, 1 not trained (why: below).")


def test_a_bad_eval_option_leaves_the_summary_and_report_in_place(run_copy: Path, tmp_path: Path):
    before = {p: p.read_bytes() for p in (run_copy / "report.html", run_copy / "eval" / "summary.json")}
    fails(tunesmith("eval", str(run_copy), "--embedder", "[x", cwd=tmp_path), "sentence-transformers")
    fails(tunesmith("eval", str(run_copy), "--models", "no/such-model,base", cwd=tmp_path), "no/such-model")
    assert {p: p.read_bytes() for p in before} == before


def test_a_torn_metrics_line_is_reported_and_the_report_still_builds(run_copy: Path, tmp_path: Path):
    with (run_copy / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "loss": 1.2')
    res = tunesmith("report", str(run_copy), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "left out a half-written last line" in res.stderr


def test_a_fresh_eval_killed_early_leaves_no_stale_summary_or_report(run_copy: Path, tmp_path: Path):
    run = rundir.open_run(run_copy)
    settings = EvalSettings.of(config.EvalConfig(), "fp32")
    # What `eval --fresh` does before its first generation; a kill right after it leaves this state.
    with run.held():
        evaluate._clear_stale(run, run.evaluation(), settings, fresh=True)
    assert sorted(p.name for p in run.eval_dir.iterdir()) == ["settings.json"]
    assert not run.report.exists() and not run.report_md.exists()
    fails(tunesmith("report", str(run_copy), cwd=tmp_path), "has no evaluation yet", "tunesmith eval")


def test_a_judge_that_fails_after_generating_leaves_the_new_numbers_without_a_judge(run_copy: Path,
                                                                                   tmp_path: Path):
    res = tunesmith("eval", str(run_copy), "--fresh", "--max-new-tokens", "4", "--judge-url",
                    "http://user:secret@127.0.0.1:9/v1", "--judge-model", "j", cwd=tmp_path)
    err = fails(res, "cannot reach the judge at http://127.0.0.1:9/v1/chat/completions",
               "asking the judge j at http://***@127.0.0.1:9/v1")
    assert "secret" not in err + res.stdout
    summary = json.loads((run_copy / "eval" / "summary.json").read_text())
    assert summary["settings"]["max_new_tokens"] == 4 and summary["judge"] is None
    res = tunesmith("report", str(run_copy), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    md = (run_copy / "report.md").read_text()
    assert "max_new_tokens 4" in md and "LLM judge" not in md


@pytest.fixture(scope="module")
def tiny_long_context(smol_tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a 2,048-token context, for rows longer than the shared tiny model's 512."""
    return tiny_llama(smol_tokenizer, tmp_path_factory.mktemp("tiny_2048"), context=2048)


def test_a_long_prompt_korean_file_trains_with_the_defaults(tiny_long_context: Path, tmp_path: Path):
    import random

    from tests.fixtures.shapes import korean_rows

    data = tmp_path / "questions.json"
    data.write_text(json.dumps(korean_rows(40, random.Random(0), (60, 200)), ensure_ascii=False), encoding="utf-8")
    res = tunesmith("train", "--data", str(data), "--model", str(tiny_long_context), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    chosen = next(line for line in out.splitlines() if line.startswith("template: max_length auto -> "))
    assert "at most the model's context: 2048" in chosen and int(chosen.split("-> ")[1].split()[0]) % 64 == 0
    report = rundir.RunDir(tmp_path / "runs" / "questions").read_data_report()
    assert report.rows_read == 40 and report.train + report.eval >= 0.95 * 40 and not report.not_trained
    assert len(out.splitlines()) < 150  # a bounded summary, not a line per row


def test_plan_and_train_fit_a_small_memory_budget_before_any_weights_load(smol_dir: Path, small_jsonl: Path,
                                                                        tmp_path: Path):
    from tunesmith import memory

    raw = {"name": "fit", "model": str(smol_dir), "data": {"train": [str(small_jsonl)], "min_eval": 4}}
    counts = memory.parameter_counts(config.parse(raw, source="<test>"))
    # a budget between what 2 and 3 rows of the longest row (90 tokens) need: 2 rows x 4 accumulation fit
    need = [memory.estimate_memory_gib(config.parse({**raw, "train": {"batch_size": rows}}, source="<test>"), *counts, 90)
            for rows in (2, 3)]
    budget = round(sum(need) / 2, 2)
    cfg = config.parse({**raw, "train": {"memory_gib": budget}}, source="<test>")
    lines = pipeline.plan(cfg, say=lambda _: None)
    fitted = next(line for line in lines if line.startswith("memory: batch 8 x 90 tokens"))
    assert (f"{budget:.1f} GiB available (train.memory_gib): 2 rows per step x 4 accumulation (effective batch 8 kept)"
            in fitted)
    assert any("effective batch 8 = 2 rows x 4 accumulation" in line for line in lines)
    res = tunesmith("train", "--data", str(small_jsonl), "--model", str(smol_dir), "--set", "data.min_eval=4",
                    "--set", "train.memory_gib=0.5", cwd=tmp_path)
    fails(res, "training does not fit in memory", "0.5 GiB available (train.memory_gib)")
    assert "Loading weights" not in res.stderr and not (tmp_path / "runs").exists()


def test_the_default_model_plans_a_long_prompt_korean_file_with_the_defaults(smol_dir: Path, tmp_path: Path):
    import random

    from tests.fixtures.shapes import korean_rows

    data = tmp_path / "paragraphs.json"
    data.write_text(json.dumps(korean_rows(120, random.Random(1)), ensure_ascii=False), encoding="utf-8")
    # A fixed budget (a 24 GiB machine's) so the outcome does not depend on what else this machine runs now.
    res = tunesmith("plan", "--data", str(data), "--model", str(smol_dir), "--set", "train.memory_gib=20", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = (res.stdout + res.stderr).splitlines()
    chosen = next(line for line in out if line.startswith("template: max_length auto -> "))
    assert int(chosen.split("-> ")[1].split()[0]) > 1024  # 400-3,000 Korean characters: well over the old 384
    rows = next(line for line in out if line.startswith("plan: rows: "))
    assert rows.startswith("plan: rows: 96 train, 24 eval (read 120: 0 skipped, 0 duplicates, 0 not trained")
    assert any(line.startswith("plan: estimated peak memory: ") for line in out) and len(out) < 60


def test_two_runs_on_one_machine_give_identical_eval_files(finished: Path, tiny_model_dir: Path, tmp_path: Path):
    """README, "Reproducibility": the same config on the same machine (same torch, same thread count) trains the
    same adapter bit for bit and writes byte-identical generations and eval summary; only the run folder's own
    path differs (the tuned model's spec names its adapter folder)."""
    data = finished.parent.parent / "small.jsonl"
    again = pipeline.run(short_config(tiny_model_dir, data, tmp_path / "runs"), say=lambda _: None).run_dir
    assert again != finished
    assert (again / "adapter" / "adapter_model.safetensors").read_bytes() == \
        (finished / "adapter" / "adapter_model.safetensors").read_bytes()
    for name in ("base.jsonl", "tuned.jsonl"):
        assert (again / "eval" / name).read_bytes() == (finished / "eval" / name).read_bytes(), name
    summary = (again / "eval" / "summary.json").read_text(encoding="utf-8")
    assert summary.replace(str(again), str(finished)) == (finished / "eval" / "summary.json").read_text(encoding="utf-8")
    assert '"retention"' in summary and '"perplexity"' in summary  # the numbers compared include these

    def losses(run: Path) -> list[dict]:  # timing fields (tokens/s, wall time) vary; the numbers do not
        return [{k: v for k, v in json.loads(line).items() if k not in ("tokens_per_s", "peak_memory_mb", "logged_at")}
                for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]

    assert losses(again) == losses(finished)
