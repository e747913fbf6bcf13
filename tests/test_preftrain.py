"""Preference objectives (issue 30) on a real 2-layer Llama and the bundled preference pairs: each objective
trains with a finite loss that falls; DPO's reference is the base model; a whole run reports preference
accuracy base vs tuned."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import SAMPLE
from tunesmith import config, diskio, pipeline, preftrain, rundir
from tunesmith.data.prefdata import prepare_preferences, unpaired
from tunesmith.data.preference import load
from tunesmith.pairs import render_pairs, render_rated

PREFS = SAMPLE / "counsel_prefs_en.jsonl"


def _cfg(model: Path, out: Path, objective: str, **train: object) -> config.RunConfig:
    return conftest.tiny_config(model, PREFS, out, train={
        "objective": objective, "max_steps": 8, "batch_size": 4, "learning_rate": 5e-3, "logging_steps": 1,
        "eval_strategy": "steps", "eval_steps": 8, "report_to": [], "precision": "fp32", **train})


@pytest.mark.parametrize("objective,method", [("dpo", "lora"), ("orpo", "lora"), ("simpo", "lora"), ("kto", "lora"),
                                              ("dpo", "full")])
def test_each_objective_trains_with_a_finite_loss_that_falls(objective, method, tmp_path, tiny_model_dir,
                                                             smol_tokenizer):
    from tunesmith import models

    cfg = _cfg(tiny_model_dir, tmp_path / "runs", objective, method=method,
               **({"learning_rate": 1e-3} if method == "full" else {}))
    pairs = list(load(PREFS).pairs[:8])  # the same 8 pairs every epoch: the loss must fall on them
    if objective == "kto":
        rated = [r for p in pairs for r in unpaired(p)]
        train_set = held = render_rated(smol_tokenizer, rated, cfg.template)
    else:
        train_set = held = render_pairs(smol_tokenizer, pairs, cfg.template)
    model, tokenizer = models.load(str(tiny_model_dir))
    run = rundir.create(cfg.output_dir, cfg.name, overwrite=True, config_yaml=cfg.to_yaml(), say=lambda _: None)[0]
    result = preftrain.train_preferences(model, tokenizer, train_set, held, cfg, run, say=lambda _: None)
    losses = [r["loss"] for r in diskio.read_jsonl(run.metrics) if "loss" in r]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-2:]) < sum(losses[:2]), losses  # it learned something from the pairs
    weights = run.adapter / "adapter_model.safetensors" if method == "lora" else run.full / "model.safetensors"
    assert weights.is_file() and not result.stopped  # full fine-tuning: no second model kept as the reference


def test_dpo_reference_log_probs_are_the_base_models(tmp_path, tiny_model_dir, smol_tokenizer):
    """The reference is the base under the adapter (disabled), not a copy: its log-probs, computed once before
    training into the train set, equal the base model's, and so does a reference pass after the adapter changed."""
    import torch

    from tunesmith import models
    from tunesmith.generation import per_row_nll

    cfg = _cfg(tiny_model_dir, tmp_path / "runs", "dpo", max_steps=2)
    pairs = render_pairs(smol_tokenizer, list(load(PREFS).pairs[:4]), cfg.template)
    base, tokenizer = models.load(str(tiny_model_dir))
    nll = per_row_nll(base, list(pairs.examples))  # chosen, rejected, chosen, ... (render order)
    want_chosen = [-nll[i][0] for i in range(0, len(nll), 2)]
    want_rejected = [-nll[i][0] for i in range(1, len(nll), 2)]
    model, _ = models.load(str(tiny_model_dir))
    run = rundir.create(cfg.output_dir, cfg.name, overwrite=True, config_yaml=cfg.to_yaml(), say=lambda _: None)[0]
    trainer_class, config_class = preftrain._trainer("dpo")
    from tunesmith import train

    args = config_class(**train.training_args(cfg, run, False), **preftrain._objective_args(cfg, pairs.max_length))
    trainer = trainer_class(model=model, args=args, train_dataset=preftrain.dataset(pairs),
                            eval_dataset=preftrain.dataset(pairs), processing_class=tokenizer,
                            peft_config=train.peft_config(cfg))
    assert trainer.train_dataset["ref_chosen_logps"] == pytest.approx(want_chosen, abs=1e-3)  # what training uses
    assert trainer.train_dataset["ref_rejected_logps"] == pytest.approx(want_rejected, abs=1e-3)
    with torch.no_grad():  # move the adapter away from zero: the reference must not follow it
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.add_(5.0)
    batch = next(iter(trainer.get_eval_dataloader()))
    chosen, rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    assert chosen.tolist() == pytest.approx(want_chosen, abs=1e-3)
    assert rejected.tolist() == pytest.approx(want_rejected, abs=1e-3)
    policy = per_row_nll(trainer.model, list(pairs.examples))
    assert abs(-policy[0][0] - want_chosen[0]) > 0.1  # the adapter does change the policy


def test_preference_data_splits_by_prompt_and_counts_add_up(tmp_path):
    cfg = config.DataConfig(train=[PREFS], min_eval=8)
    pd = prepare_preferences(cfg, "dpo")
    assert len(pd.train) + len(pd.eval) == 64 == pd.data.rows_read
    assert len(pd.data.train) == len(pd.train) and len(pd.data.eval) == len(pd.eval) >= 8
    assert not {p.source for p in pd.train} & {p.source for p in pd.eval}
    # held-out conversations are the prompt with the chosen answer: what the generation eval scores against
    first = pd.eval[0]
    assert pd.data.eval[0].messages[-1].content == first.chosen
    kto = prepare_preferences(cfg, "kto")
    assert len(kto.train) == 2 * len(pd.train) and sum(r.good for r in kto.train) == len(pd.train)


def test_a_pair_objective_on_rated_answers_says_to_use_kto(tmp_path):
    from tunesmith.errors import TunesmithError

    rated = tmp_path / "kto.jsonl"
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": i % 2 == 0} for i in range(30)]
    rated.write_text("\n".join(__import__("json").dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(TunesmithError, match="needs pairs") as err:
        prepare_preferences(config.DataConfig(train=[rated]), "dpo")
    assert "train.objective=kto" in err.value.fix
    kto = prepare_preferences(config.DataConfig(train=[rated]), "kto")
    # bad answers always train (nothing to score them against); good ones are split
    assert kto.eval == () and kto.held_rated and all(r.good for r in kto.held_rated)
    assert [r.source for r in kto.held_rated] == [c.source for c in kto.data.eval]
    assert sum(not r.good for r in kto.train) == 15


def test_a_whole_orpo_run_reports_preference_accuracy_base_vs_tuned(tmp_path, tiny_model_dir):
    cfg = _cfg(tiny_model_dir, tmp_path / "runs", "orpo", max_steps=4, eval_steps=2)
    summary = pipeline.run(cfg, say=lambda _: None)
    prefs = summary.preference
    assert prefs is not None and [m.label for m in prefs.models] == ["base", "tuned"]
    assert len(prefs.sources) == min(cfg.eval.max_rows, len(summary.evaluation.models[0].generations))
    assert prefs.differences["tuned"]["accuracy"].rows == len(prefs.sources)
    md = (summary.run_dir / "report.md").read_text(encoding="utf-8")
    assert "## Does the model prefer what people chose?" in md and "preference accuracy" in md
    plan = (summary.run_dir / "plan.json").read_text(encoding="utf-8")
    assert "objective: ORPO" in plan and "no reference model" in plan
    held = diskio.read_jsonl(summary.run_dir / "data" / "eval_pairs.jsonl")
    assert {r["source"] for r in held} >= set(prefs.sources)


@pytest.mark.parametrize("shape", ["trl", "trl_conversational", "trl_implicit", "alpaca_ranking", "sharegpt_ranking",
                                   "chatml_intel", "chatml_argilla"])
def test_every_pair_shape_plans_a_dpo_run(shape, tmp_path, tiny_model_dir):
    """Any of the shapes other tools write plans (data, template, checks, memory, time) with no code written."""
    import json

    from tests.data.test_preference import SHAPES

    def row(i: int) -> dict:  # the shape's row with a prompt of its own (duplicates would be removed)
        return json.loads(json.dumps(SHAPES[shape]).replace("I can't sleep.", f"I can't sleep, night {i}."))

    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(row(i)) + "\n" for i in range(24)), encoding="utf-8")
    cfg = conftest.tiny_config(tiny_model_dir, path, tmp_path / "runs", train={"objective": "dpo"})
    lines = pipeline.plan(cfg, say=lambda _: None)
    assert any(line.startswith("rows: 19 train, 5 eval (read 24: 0 skipped") for line in lines), lines
    assert any(line.startswith("objective: DPO") for line in lines)


def test_a_stopped_dpo_run_resumes_to_the_same_losses(tmp_path, tiny_model_dir, monkeypatch):
    """Resume as for SFT: the stop saves a checkpoint, the same command continues from it (the reference is
    scored again from the base, as at the start) and ends on the losses of an uninterrupted run."""
    from tunesmith import train

    def run(name: str, stop_at: int | None) -> list[dict]:
        calls = {"n": 0}

        def stop(_run: object) -> bool:  # the Stop button, pressed after `stop_at` steps
            calls["n"] += 1
            return stop_at is not None and calls["n"] == stop_at

        monkeypatch.setattr(train, "_stop_requested", stop)
        cfg = _cfg(tiny_model_dir, tmp_path / "runs", "dpo", eval_steps=4, early_stopping_patience=0)
        return pipeline.run(cfg.model_copy(update={"name": name}), say=lambda _: None)

    whole = run("whole", None)
    assert run("stopped", 4) is None  # stopped on request: a checkpoint, no weights, no report
    assert rundir.RunDir(tmp_path / "runs" / "stopped").last_checkpoint().name == "checkpoint-4"
    resumed = run("stopped", None)
    a, b = (diskio.read_jsonl(s.run_dir / "metrics.jsonl") for s in (whole, resumed))
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        for key in ("loss", "eval_loss", "rewards_margins"):
            if key in x:
                assert y[key] == pytest.approx(x[key], rel=1e-5, abs=1e-6), (key, x, y)
