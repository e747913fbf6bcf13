"""The evaluation stage on a real tiny model: incremental generations, every metric, CIs, `tunesmith eval`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tunesmith
from tunesmith import config, evaluate, generation, pipeline, rundir
from tunesmith.errors import TunesmithError


def test_the_run_evaluates_base_and_tuned_with_every_metric_and_interval(tiny_run: Path):
    ev = rundir.RunDir(tiny_run).evaluation().read_summary()
    assert [m.label for m in ev.models] == ["base", "tuned"]
    for m in ev.models:
        assert {"chrf", "bleu", "rouge_l", "exact_match", "chars", "words", "stopped", "cosine", "nll",
                "perplexity"} <= set(m.metrics)
        assert len(m.rows) == len(m.generations) == 4 and m.eval_loss > 0
    diffs = ev.differences["tuned"]
    assert set(diffs) >= {"chrf", "bleu", "rouge_l", "cosine", "nll", "stopped"}
    assert all(d.low <= d.mean <= d.high and d.rows == 4 for d in diffs.values())
    assert all(v in ("better", "worse", "higher", "lower", "no clear difference") for v in ev.verdicts["tuned"].values())
    assert ev.lang == "en" and ev.bleu_tokenize == "13a" and ev.settings.temperature == 0.0
    # Perplexity on the references is the model's own likelihood of them: the tuned model, trained on such
    # answers, finds them likelier than the random-init base does.
    assert ev.model("tuned").metrics["perplexity"] < ev.model("base").metrics["perplexity"]


def test_incremental_generation_continues_without_duplicating_rows(tiny_run: Path, tiny_model_dir: Path, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    convs = rundir.RunDir(tiny_run).read_conversations("eval")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = config.EvalConfig(max_rows=4, max_new_tokens=6, batch_size=2)
    store = (rundir.EvalDir(tmp_path), "m")
    out = store[0].generations("m")
    whole = generation.generate(model, tok, convs, cfg, store)
    lines = out.read_text().splitlines()
    out.write_text(lines[0] + "\n" + lines[2] + "\n" + lines[3][: len(lines[3]) // 2])  # a crash mid-line

    asked = []
    real = model.generate
    model.generate = lambda **kw: asked.append(kw["input_ids"].shape[0]) or real(**kw)
    again = generation.generate(model, tok, convs, cfg, store)
    assert sum(asked) == 2  # only rows 2 and 4 were generated again
    assert again == whole  # greedy: the same text as the uninterrupted pass
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["source"] for r in rows] == [c.source for c in convs[:4]]


def test_eval_verb_reuses_generations_and_refuses_mixed_settings(tiny_run: Path, tmp_path: Path):
    before = (tiny_run / "eval" / "tuned.jsonl").read_text()
    res = tunesmith("eval", str(tiny_run), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "chrF (main)" in res.stdout and "tuned − base (95% CI)" in res.stdout
    assert (tiny_run / "eval" / "tuned.jsonl").read_text() == before  # nothing generated twice
    mixed = tunesmith("eval", str(tiny_run), "--max-new-tokens", "5", cwd=tmp_path)
    assert mixed.returncode == 2 and "max_new_tokens 8 -> 5" in mixed.stderr and "--fresh" in mixed.stderr
    assert "Traceback" not in mixed.stderr
    # The dtype the models ran in is a setting too (eval.precision resolved on this machine: bf16 or fp32).
    made = rundir.RunDir(tiny_run).evaluation().read_settings().precision
    other = "fp32" if made == "bf16" else "bf16"
    mixed = tunesmith("eval", str(tiny_run), "--precision", other, cwd=tmp_path)
    assert mixed.returncode == 2 and f"precision {made} -> {other}" in mixed.stderr


def test_eval_on_another_file_with_a_third_model(tiny_run: Path, tiny_model_dir: Path, tmp_path: Path):
    from tests.conftest import SAMPLE

    other = tmp_path / "ko.json"
    other.write_text(json.dumps(json.loads((SAMPLE / "counsel_ko.json").read_text(encoding="utf-8"))[:3],
                                ensure_ascii=False), encoding="utf-8")
    res = tunesmith("eval", str(tiny_run), "--data", str(other), "--models", f"tuned,base,{tiny_model_dir}",
                    "--embedder", "none", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = rundir.RunDir(tiny_run).evaluation("ko")
    ev = out.read_summary()
    assert [m.label for m in ev.models] == ["tuned", "base", str(tiny_model_dir)]
    assert ev.lang == "ko" and ev.bleu_tokenize == "char" and ev.embedder is None
    assert set(ev.differences) == {"base", str(tiny_model_dir)}
    # base and the bare model folder are the same weights through the same template: identical generations.
    assert [g.generation for g in ev.models[1].generations] == [g.generation for g in ev.models[2].generations]
    assert out.generations(str(tiny_model_dir)).is_file()


def test_eval_of_a_folder_that_is_not_a_run_exits_2(tmp_path: Path):
    res = tunesmith("eval", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 2 and "not a run folder" in res.stderr and "Traceback" not in res.stderr
    with pytest.raises(TunesmithError, match="no evaluation yet"):
        rundir.EvalDir(tmp_path).read_summary()


def test_eval_with_a_judge_puts_its_verdict_in_the_summary_and_report(tiny_run: Path, tmp_path: Path,
                                                                    serve):  # noqa: F811
    from tests.test_judge import chat

    url, seen = serve(lambda body, headers: (200, chat("Verdict: A")))  # always the first answer shown
    res = subprocess.run([sys.executable, "-m", "tunesmith", "eval", str(tiny_run), "--judge-url", url,
                          "--judge-model", "rule-judge"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "TUNESMITH_JUDGE_KEY": "sk-e2e-secret"})
    assert res.returncode == 0, res.stderr
    assert len(seen) == 8 and all(h.get("Authorization") == "Bearer sk-e2e-secret" for _, h, _ in seen)
    judge = json.loads((tiny_run / "eval" / "summary.json").read_text())["judge"]
    # A judge that always says "A" prefers base in one order and tuned in the other: every row is a tie.
    assert judge["rows"] == 4 and judge["ties"] == 4 and judge["verdict"] == "no clear difference"
    page = (tiny_run / "report.html").read_text()
    assert "LLM judge rule-judge" in page and "sk-e2e-secret" not in page + res.stdout + res.stderr


def test_a_run_killed_during_evaluation_finishes_without_training_again(tiny_run: Path):
    """Weights saved, report missing, tuned generations half written: a re-run only completes what is missing."""
    adapter = (tiny_run / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    tuned = tiny_run / "eval" / "tuned.jsonl"
    whole = tuned.read_text().splitlines()
    tuned.write_text(whole[0] + "\n")
    (tiny_run / "report.html").unlink()
    said: list[str] = []
    summary = pipeline.run(config.load(tiny_run / "config.yaml"), say=said.append)
    assert any("resuming the unfinished run" in s for s in said)
    assert any(s.startswith("training finished earlier") for s in said)
    assert not any(s.startswith("training (lora)") for s in said)
    assert (tiny_run / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == adapter
    assert tuned.read_text().splitlines() == whole and summary.report.is_file()


def test_the_base_models_evaluation_is_reused_by_a_run_with_the_same_model_rows_and_settings(tiny_run: Path,
                                                                                           tmp_path: Path):
    import shutil

    import yaml

    copy = tmp_path / "runs" / "again"
    shutil.copytree(tiny_run, copy)
    shutil.rmtree(copy / "eval")
    (copy / ".lock").write_text("")
    res = tunesmith("eval", str(copy), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    said = res.stdout + res.stderr
    assert "base" in said and "reused from the evaluation cache" in said and "generating with base" not in said
    assert "generating with tuned" in said  # a tuned model is never taken from the cache
    first, second = (rundir.RunDir(r).evaluation().read_summary() for r in (tiny_run, copy))
    assert first.models[0].generations == second.models[0].generations  # the base answers, row for row
    assert first.models[0].metrics == second.models[0].metrics and first.retention == second.retention
    assert (copy / "eval" / "base.jsonl").read_text() == (tiny_run / "eval" / "base.jsonl").read_text()
    changed = tunesmith("eval", str(copy), "--fresh", "--max-new-tokens", "5", cwd=tmp_path)  # other settings
    assert changed.returncode == 0 and "generating with base" in changed.stdout + changed.stderr
    cfg = yaml.safe_load((copy / "config.yaml").read_text(encoding="utf-8"))
    cfg["eval"]["cache"] = False
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    shutil.rmtree(copy / "eval")
    off = tunesmith("eval", str(copy), cwd=tmp_path)
    assert off.returncode == 0 and "generating with base" in off.stdout + off.stderr


def test_the_base_model_is_prompted_with_the_configured_template_as_the_tuned_one(tiny_model_dir, small_jsonl,
                                                                                  tmp_path):
    """template.chat_template set (here the plain fallback, not the model's own ChatML): the base model's eval
    prompts are rendered with it, as training and the tuned model's are (was: the base model's own template, when
    its rendering came from the evaluation cache's key)."""
    from tests.conftest import tiny_config

    cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs",
                      template={"max_length": 256, "chat_template": "plain"})
    run = rundir.RunDir(pipeline.run(cfg, say=lambda _: None).run_dir)
    base, tuned = (run.evaluation().read_generations(label) for label in ("base", "tuned"))
    assert [g.prompt for g in base] == [g.prompt for g in tuned]
    assert all(g.prompt.startswith("### User:") and g.prompt.endswith("### Assistant:\n") for g in base)


def test_the_plan_counts_the_tuned_models_evaluation_alone_where_the_base_one_is_cached(tiny_run: Path):
    from tunesmith import config, evaluate

    cfg = config.build(tiny_run / "config.yaml", [], [])
    convs = rundir.RunDir(tiny_run).read_conversations("eval")
    assert evaluate.base_cached(cfg, convs)  # the tiny run evaluated its base model on these rows
    uncached = [cfg.model_copy(update={"eval": cfg.eval.model_copy(update=change)})
                for change in ({"cache": False}, {"max_new_tokens": cfg.eval.max_new_tokens + 1})]
    assert not any(evaluate.base_cached(c, convs) for c in uncached)
    assert not evaluate.base_cached(cfg, convs[:-1])  # other rows
    cached_lines = pipeline._planned(cfg, lambda _: None).lines
    fresh_lines = pipeline._planned(uncached[0], lambda _: None).lines
    [cached] = [line for line in cached_lines if line.startswith("estimated time: ")]
    [fresh] = [line for line in fresh_lines if line.startswith("estimated time: ")]
    if "not estimated on GPU" not in cached:
        assert "4 generations with the tuned model (the base model's come from the evaluation cache)" in cached
        assert "2 x 4 generations and their scoring" in fresh
        assert pipeline.estimate(cfg).seconds < pipeline.estimate(uncached[0]).seconds
