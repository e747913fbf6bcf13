"""Training guard rails, resume, trackers and multi-process runs, on a real 2-layer Llama and real rows."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import fails, tunesmith
from tunesmith import config, diskio, pipeline, rundir, train
from tunesmith.errors import TunesmithError


def tiny_config(model: Path, data: Path, out: Path, **train: object) -> config.RunConfig:
    """The tiny run with this file's train section: epochs (not steps) unless given, a log line every 3 steps."""
    return conftest.tiny_config(model, data, out, train={"batch_size": 4, "logging_steps": 3, "report_to": [],
                                                         **train})


def metrics(run: Path) -> list[dict]:
    return diskio.read_jsonl(run / "metrics.jsonl")


def test_early_stopping_ends_on_the_best_epoch_of_an_overfitting_run(tmp_path, tiny_model_dir, small_jsonl,
                                                                     monkeypatch):
    """Full fine-tuning at a high learning rate overfits 12 rows within a few epochs."""
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import AutoModelForCausalLM

    secret = "tunesmith-test-secret-key-0123456789"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("WANDB_MODE", "offline")
    ours = ("WANDB_PROJECT", "WANDB_NAME", "WANDB_DIR", "WANDB_LOG_MODEL", "WANDB_MODE", "WANDB_SILENT")
    wandb_env = {k: os.environ.get(k) for k in ours}
    cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs", method="full", epochs=40,
                      learning_rate=1e-2, early_stopping_patience=2, report_to=["tensorboard", "wandb"])
    summary = pipeline.run(cfg, say=lambda _: None)
    t, run = summary.training, summary.run_dir

    # Stopped well before 40 epochs (120 steps), two evaluations after the lowest eval loss.
    evals = dict(t.evals)
    assert t.stopped_early and t.last_step < 120
    assert t.best_eval_loss == min(loss for step, loss in evals.items() if step > 0)
    assert [s for s in evals if s > t.best_step] == [t.best_step + 3, t.best_step + 6]
    assert all(evals[s] > t.best_eval_loss for s in evals if s > t.best_step)
    assert t.overfitting and f"{t.best_eval_loss:.4f} (step {t.best_step})" in t.overfitting
    assert summary.evaluation.model("tuned").eval_loss == t.best_eval_loss

    # The saved model is the best checkpoint, not the last step: its eval loss is the best one.
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    from tunesmith.data.prepare import prepare
    from tunesmith.template import encode_all

    _, tok = __import__("tunesmith.models", fromlist=["load"]).load(str(tiny_model_dir), tokenizer_only=True)
    examples, _ = encode_all(tok, prepare(cfg.data).eval, cfg.template)
    with torch.no_grad():
        losses = [(model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels])).loss.item(),
                   e.supervised_tokens - 1) for e in examples]
    mean = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
    assert mean == pytest.approx(t.best_eval_loss, rel=2e-3)
    assert not (run / "checkpoints").exists()

    rows = metrics(run)
    train_rows = [r for r in rows if "loss" in r]
    assert {"loss", "learning_rate", "grad_norm", "mean_token_accuracy", "tokens_per_s", "peak_memory_mb"} <= set(
        train_rows[0])
    assert {"eval_loss", "eval_mean_token_accuracy"} <= set(next(r for r in rows if "eval_loss" in r))

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "eval/loss", "train/tokens_per_s", "train/peak_memory_mb"} <= tags
    assert [round(e.value, 4) for e in events.Scalars("eval/loss")] == [round(v, 4) for v in evals.values()]

    offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1 and offline[0].stat().st_size > 0
    # what tunesmith set for W&B is gone again (wandb itself leaves WANDB_SERVICE, the socket of its service)
    assert {k: os.environ.get(k) for k in ours} == wandb_env
    for f in run.rglob("*"):  # the key is never written anywhere in the run folder
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_wandb_settings_are_set_only_while_its_callback_runs(monkeypatch):
    """transformers' WandbCallback reads WANDB_* from the environment; the run's values must not outlive it."""
    from transformers.integrations import WandbCallback

    from tunesmith import train

    seen = []
    monkeypatch.setattr(WandbCallback, "on_train_begin", lambda self, *a, **kw: seen.append(os.environ["WANDB_DIR"]))
    monkeypatch.setenv("WANDB_PROJECT", "mine")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    callback = train._wandb_callback({"WANDB_PROJECT": "mine", "WANDB_DIR": "/runs/x"})
    callback.on_train_begin(None, None, None, model=None)
    assert seen == ["/runs/x"]
    assert "WANDB_DIR" not in os.environ and os.environ["WANDB_PROJECT"] == "mine"


def write_yaml(path: Path, cfg: config.RunConfig) -> Path:
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    return path


def test_resume_after_kill_reaches_the_same_losses(tmp_path, tiny_model_dir, small_jsonl):
    cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs", max_steps=24, eval_strategy="steps",
                      eval_steps=4, logging_steps=2, early_stopping_patience=0, learning_rate=5e-3)
    whole = write_yaml(tmp_path / "whole.yaml", cfg.model_copy(update={"name": "whole"}))
    killed = write_yaml(tmp_path / "killed.yaml", cfg.model_copy(update={"name": "killed"}))
    assert tunesmith("train", str(whole), cwd=tmp_path).returncode == 0

    run = tmp_path / "runs" / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith", "train", str(killed)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "checkpoint-8" / rundir.COMPLETE).exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before checkpoint-8 was written"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "adapter").exists() and not (run / "report.html").exists()
    # A checkpoint cut short mid-write has no COMPLETE marker and is never resumed from.
    half = run / "checkpoints" / "checkpoint-99"
    shutil.copytree(run / "checkpoints" / "checkpoint-8", half)
    (half / rundir.COMPLETE).unlink()
    assert rundir.RunDir(run).last_checkpoint().name in {"checkpoint-8", "checkpoint-12"}

    again = tunesmith("train", str(killed), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resuming the unfinished run" in again.stderr and "resuming training from checkpoint-" in again.stderr
    a, b = metrics(tmp_path / "runs" / "whole"), metrics(run)
    assert [(r["step"], sorted(r)) for r in a] == [(r["step"], sorted(r)) for r in b]  # no duplicated or lost rows
    # Same batches (length-grouped order seeded per epoch), same RNG, same optimizer state: the same numbers.
    for x, y in zip(a, b):
        for key in ("loss", "eval_loss"):
            if key in x:
                assert y[key] == pytest.approx(x[key], rel=1e-6), (x, y)


def test_a_changed_config_does_not_resume_an_unfinished_run(tmp_path, small_jsonl):
    run, resumed = rundir.create(tmp_path, "r", overwrite=False, config_yaml="train:\n  epochs: 1\n")
    assert not resumed
    assert rundir.create(tmp_path, "r", overwrite=False, config_yaml="train:\n  epochs: 1\n")[1]
    with pytest.raises(TunesmithError) as err:
        rundir.create(tmp_path, "r", overwrite=False, config_yaml="train:\n  epochs: 2\n")
    assert "train.epochs: 1 in the folder, 2 now" in str(err.value) and "--overwrite" in str(err.value)


def test_continue_from_starts_where_the_finished_run_ended(tmp_path, tiny_model_dir, small_jsonl):
    cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs", max_steps=6, eval_strategy="steps",
                      eval_steps=3, learning_rate=5e-3)
    first = pipeline.run(cfg, say=lambda _: None)
    second = pipeline.run(cfg.model_copy(update={"name": "more", "continue_from": first.run_dir}),
                          say=lambda _: None)
    # The second run's starting model is the first run's kept adapter, measured on the same held-out rows.
    assert second.training.start_eval_loss == pytest.approx(first.training.best_eval_loss, rel=1e-4)
    assert second.evaluation.model("base").eval_loss != pytest.approx(first.training.start_eval_loss, rel=1e-3)


def test_quantised_loading_on_a_cpu_says_what_to_use_instead(tmp_path, small_jsonl):
    res = tunesmith("train", "--data", str(small_jsonl), "--load-4bit", cwd=tmp_path,
                    env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert res.returncode == 2 and "needs a CUDA GPU" in res.stderr and "load_in: none" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "runs").exists()
    with pytest.raises(TunesmithError, match="QLoRA"):
        config.parse({"name": "x", "data": {"train": ["a"]}, "train": {"method": "full", "load_in": "4bit"}},
                     source="<test>")


def test_init_writes_a_commented_config_that_plan_accepts(tmp_path, tiny_model_dir, small_jsonl):
    out = tmp_path / "cfg" / "mine.yaml"
    out.parent.mkdir()
    res = tunesmith("init", "--data", str(small_jsonl), "--model", str(tiny_model_dir), "--out", str(out),
                    cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert "  # stop after this many evaluations without a lower eval loss; 0 = off\n  early_stopping_patience: 2\n" in text
    cfg = config.load(out)
    assert [p.resolve() for p in cfg.data.train] == [small_jsonl.resolve()] and cfg.name == "small"
    plan = tunesmith("plan", str(out), "--epochs", "2", "--batch-size", "4", "--lr", "0.001", "--lora-r", "4",
                     cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "rows: 8 train, 8 eval" in plan.stdout  # init keeps the default min_eval of 8
    assert "2 per epoch, 4 in total (2 epochs); effective batch 4" in plan.stdout
    assert "r=4, alpha=32" in plan.stdout and "lr 0.001 (cosine" in plan.stdout
    assert "estimated peak memory" in plan.stdout and "each optimizer step" in plan.stdout
    again = tunesmith("init", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_two_cpu_processes_match_one_process_on_the_same_global_batch(tmp_path, tiny_model_dir, small_jsonl):
    """DDP over gloo: 2 processes x batch 2 take the same optimizer steps as 1 process x batch 4."""
    common = dict(max_steps=6, eval_strategy="steps", eval_steps=3, logging_steps=1, learning_rate=5e-3,
                  group_by_length=False)
    one = write_yaml(tmp_path / "one.yaml", tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs", **common)
                     .model_copy(update={"name": "one"}))
    two_cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs", **{**common, "batch_size": 2})
    two = write_yaml(tmp_path / "two.yaml", two_cfg.model_copy(update={"name": "two"}))
    assert tunesmith("train", str(one), cwd=tmp_path).returncode == 0
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", "-m", "tunesmith",
                          "train", str(two)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "effective batch 4 = 2 rows x 1 accumulation x 2 process(es)" in res.stderr
    a, b = metrics(tmp_path / "runs" / "one"), metrics(tmp_path / "runs" / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        for key in ("loss", "eval_loss"):
            if key in x:
                assert y[key] == pytest.approx(x[key], rel=1e-3), (x, y)  # measured: within 5e-5
    assert (tmp_path / "runs" / "two" / "report.html").is_file()


@pytest.mark.parametrize("grouped", [False, True])
def test_the_plan_knows_every_batch_the_trainer_draws(tmp_path, tiny_model_dir, grouped):
    """train.drawn_batches (the plan's memory estimate reads it) yields the row lengths of the trainer's own batches,
    epoch after epoch: random (accelerate's seedable order) and length-grouped."""
    from tunesmith import models
    from tunesmith.data.prepare import prepare

    data = conftest.SAMPLE / "counsel_en.jsonl"  # 128 rows, 73-95 tokens
    cfg = tiny_config(tiny_model_dir, data, tmp_path / "runs", epochs=2, max_steps=-1, seed=7,
                      group_by_length=grouped, padding_free="on")  # auto is off on a CPU without bf16
    model, tok = models.load(cfg.model)
    _, train_ex, eval_ex = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    run, _ = rundir.create(cfg.output_dir, cfg.name, overwrite=True, config_yaml=cfg.to_yaml())
    trainer = train._trainer_class()(model=model, args=train._args(cfg, run, False),
                                     train_dataset=train._dataset(train_ex), eval_dataset=train._dataset(eval_ex),
                                     processing_class=tok, peft_config=train.peft_config(cfg))
    loader, seen = trainer.get_train_dataloader(), []
    for epoch in range(2):
        loader.set_epoch(epoch)  # as the Trainer does at each epoch's start
        for batch in loader:  # padding-free: one row of rows, positions restarting at 0
            starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
            seen.append(sorted(b - a for a, b in zip(starts, starts[1:])))
    run.unlock()
    drawn = [sorted(b) for b in train.drawn_batches([len(e.input_ids) for e in train_ex], cfg)]
    assert len(seen) == 2 * math.ceil(len(train_ex) / 4) and drawn == seen
    assert seen[:len(seen) // 2] != seen[len(seen) // 2:]  # each epoch its own order


def test_lora_variants_and_full_tuning_count_their_trainable_parameters(tiny_model_dir, small_jsonl, tmp_path):
    """Counted on the meta device by the plan; the same PEFT configs the trainer gets."""
    from tunesmith import memory, train

    def counts(**kw):
        cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path)
        cfg = cfg.model_copy(update={k: getattr(cfg, k).model_copy(update=v) for k, v in kw.items()})
        return memory.parameter_counts(cfg)[:2]

    lora, total = counts()
    # r=4 on every linear layer of 2 blocks (q,k,v,o,gate,up,down); hidden 64, kv 32, mlp 128.
    per_block = 4 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 128) * 2 + (128 + 64))
    assert lora == 2 * per_block and total > 100 * lora
    dora, _ = counts(lora={"dora": True})
    assert dora == lora + 2 * (64 + 32 + 32 + 64 + 128 + 128 + 64)  # DoRA adds one magnitude per output feature
    attention, _ = counts(lora={"target_modules": "attention"})
    assert attention == 2 * 4 * ((64 + 64) + (64 + 32))  # PEFT's Llama default: q_proj and v_proj
    assert counts(train={"method": "full"}) == (total, total)
    assert train.peft_config(tiny_config(tiny_model_dir, small_jsonl, tmp_path).model_copy(
        update={"lora": config.LoraConfig(rslora=True)})).use_rslora


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _without_embedder(cfg: config.RunConfig) -> config.RunConfig:
    """The GPU machine has no sentence-embedding model (it does not travel there); the GPU tests check training."""
    return cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"embedder": "none"})})


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (bitsandbytes 4-bit, GPU bf16)")
@pytest.mark.parametrize("load_in", ["4bit", "8bit"])
def test_quantised_lora_trains_on_a_gpu(tmp_path, tiny_model_dir, small_jsonl, load_in):
    """QLoRA / 8-bit LoRA: the base weights load quantised, the adapter trains and is saved."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("pip install bitsandbytes")
    from safetensors.torch import load_file

    cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs", max_steps=4, eval_strategy="steps",
                      eval_steps=2, load_in=load_in, learning_rate=5e-3)
    cfg = _without_embedder(cfg)
    summary = pipeline.run(cfg, say=lambda _: None)
    weights = load_file(summary.run_dir / "adapter" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
    assert "QLoRA" in (summary.run_dir / "plan.json").read_text() or load_in == "8bit"


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_a_run_trains_packed_rows_in_bf16_and_evaluates_on_the_gpu(tmp_path, tiny_model_dir, small_jsonl):
    """The whole run on a GPU: bf16, padding-free batches (auto there), both models generate on the GPU."""
    from tunesmith import models

    cfg = _without_embedder(tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs", max_steps=4,
                                        eval_strategy="steps", eval_steps=2, learning_rate=5e-3))
    summary = pipeline.run(cfg, say=lambda _: None)
    plan = (summary.run_dir / "plan.json").read_text()
    assert "CUDA GPU" in plan and "bf16" in plan
    assert [m.label for m in summary.evaluation.models] == ["base", "tuned"]
    evaluation = rundir.RunDir(summary.run_dir).evaluation()
    assert all(len(evaluation.read_generations(label)) == 4 for label in ("base", "tuned"))
    assert models.load(str(tiny_model_dir))[0].device.type == "cuda"
    rows = metrics(summary.run_dir)
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"]


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_fp16_with_loss_scaling_trains_on_a_gpu(tmp_path, tiny_model_dir, small_jsonl):
    """precision fp16 (what auto picks on a GPU without bf16: T4, V100), forced on the lent GPU: every logged loss
    and gradient norm finite, the eval loss falls, the adapter is saved."""
    import math

    from safetensors.torch import load_file

    cfg = _without_embedder(tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs", max_steps=8,
                                        eval_strategy="steps", eval_steps=4, learning_rate=5e-3, precision="fp16"))
    summary = pipeline.run(cfg, say=lambda _: None)
    assert "fp16" in (summary.run_dir / "plan.json").read_text()
    rows = metrics(summary.run_dir)
    logged = [r[k] for r in rows for k in ("loss", "grad_norm", "eval_loss") if k in r]
    assert logged and all(math.isfinite(v) for v in logged)
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    assert evals[-1] < evals[0]
    weights = load_file(summary.run_dir / "adapter" / "adapter_model.safetensors")
    assert all(bool(v.isfinite().all()) for v in weights.values())


def _train_and_watch(model_dir: Path, data: Path, out: Path, **train_kw: object) -> tuple[list, list[dict]]:
    """3 LoRA steps (dropout off, so the two batch layouts see the same numbers); returns the decoder's training
    inputs as (input_ids shape, position_ids given) per forward, and metrics.jsonl."""
    from tunesmith import models
    from tunesmith.data.prepare import prepare

    cfg = tiny_config(model_dir, data, out, max_steps=3, logging_steps=1, eval_strategy="steps", eval_steps=3,
                      learning_rate=5e-3, **train_kw)
    cfg = cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"dropout": 0.0})})
    tok = models.load(cfg.model, tokenizer_only=True)[1]
    _, train_ex, eval_ex = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    model = pipeline._starting_model(cfg)[0]
    seen: list = []

    def watch(module, args, kwargs):  # noqa: ANN001, ANN202
        if module.training:
            seen.append((tuple(kwargs["input_ids"].shape), kwargs.get("position_ids") is not None))

    model.get_decoder().register_forward_pre_hook(watch, with_kwargs=True)
    run, _ = rundir.create(out, "tiny", overwrite=True, config_yaml=cfg.to_yaml())
    train.train(model, tok, train_ex, eval_ex, cfg, run, say=lambda _: None)
    run.unlock()
    return seen, metrics(run.root)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_padding_free_batches_train_like_padded_ones(tmp_path, tiny_model_dir, small_jsonl, precision):
    # One packed row with position ids per step instead of 4 padded rows: same rows, same losses. bf16 runs on the
    # GPU where there is one; on the CPU it takes attention.py's path, the rows padded again for attention alone.
    packed, packed_rows = _train_and_watch(tiny_model_dir, small_jsonl, tmp_path / "on", padding_free="on",
                                           precision=precision, group_by_length=True)  # the same batches
    padded, padded_rows = _train_and_watch(tiny_model_dir, small_jsonl, tmp_path / "off", padding_free="off",
                                           precision=precision, group_by_length=True)
    assert [s for s, _ in padded] and all(s[0] == 4 and not pos for s, pos in padded)
    assert all(s[0] == 1 and pos for s, pos in packed)
    assert sum(p[1] for p, _ in packed) < sum(q[0] * q[1] for q, _ in padded)  # the padding is gone
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    for a, b in zip(packed_rows, padded_rows, strict=True):
        assert a["step"] == b["step"]
        for key in ("loss", "eval_loss"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=tolerance), (key, a, b)


def test_eval_loss_is_the_mean_per_supervised_token_whatever_the_batches(tmp_path, tiny_model_dir, small_jsonl):
    # transformers gives each eval batch's mean loss the same weight; tunesmith's eval loss weighs each batch by its
    # supervised tokens, so it equals the eval rows' token-mean NLL scored one row at a time by the final model
    from tunesmith import generation, models
    from tunesmith.data.prepare import prepare

    cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path / "runs", max_steps=16, eval_strategy="steps",
                      eval_steps=16, batch_size=3, precision="fp32", load_best=False, early_stopping_patience=0,
                      learning_rate=1e-2)  # rows' losses apart, so that the weighting shows
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"eval_fraction": 0.5})})
    tok = models.load(cfg.model, tokenizer_only=True)[1]
    _, train_ex, eval_ex = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    run, _ = rundir.create(tmp_path / "runs", "tiny", overwrite=True, config_yaml=cfg.to_yaml())
    result = train.train(pipeline._starting_model(cfg)[0], tok, train_ex, eval_ex, cfg, run, say=lambda _: None)
    run.unlock()
    rows = generation.per_row_nll(result.model, eval_ex, batch_size=1)
    token_mean = sum(s for s, _ in rows) / sum(n for _, n in rows)
    row_mean = sum(s / n for s, n in rows) / len(rows)  # rows weighted alike: what batches of one row would log
    logged = [r["eval_loss"] for r in metrics(run.root) if "eval_loss" in r]
    assert len(eval_ex) >= 6 and logged[-1] == pytest.approx(token_mean, rel=2e-6)
    assert abs(row_mean - token_mean) > 20 * 2e-6 * token_mean  # the rows differ enough for the weighting to show
    # token accuracy likewise: the share of supervised tokens whose next token is the model's top guess
    scored = sorted(eval_ex, key=lambda e: len(e.input_ids))  # train's eval order, in batches of 3
    hits = [_top1_hits(result.model, e) for e in scored]
    accuracy = sum(h for h, _ in hits) / sum(n for _, n in hits)
    batches = [hits[i:i + 3] for i in range(0, len(hits), 3)]
    batch_mean = sum(sum(h for h, _ in b) / sum(n for _, n in b) for b in batches) / len(batches)  # TRL's
    logged = [r["eval_mean_token_accuracy"] for r in metrics(run.root) if "eval_mean_token_accuracy" in r]
    assert logged[-1] == pytest.approx(accuracy, rel=1e-6) and abs(batch_mean - accuracy) > 1e-3


def _top1_hits(model, example) -> tuple[int, int]:  # noqa: ANN001
    """(supervised positions whose next token is the model's argmax, supervised positions) of one row."""
    import torch

    ids = torch.tensor([example.input_ids])
    labels = torch.tensor(example.labels[1:])
    with torch.no_grad():
        guess = model(input_ids=ids).logits[0, :-1].argmax(-1)
    kept = labels != train.IGNORE
    return int((guess[kept] == labels[kept]).sum()), int(kept.sum())


@pytest.mark.parametrize(("setting", "precision", "packed"), [
    ("on", "fp32", True), ("off", "bf16", False), ("auto", "fp32", True), ("auto", "bf16", True),
    ("off", "fp32", False)])
def test_one_reading_of_padding_free_drives_the_collator_and_the_sampler(tmp_path, small_jsonl, setting, precision,
                                                                         packed):
    """train.padding_free resolved once (no CUDA here: auto = on in bf16 and fp32): what TRL's collator is told, and,
    with group_by_length auto, the sampler is length-grouped exactly where the rows are padded."""
    cfg = tiny_config(tmp_path / "m", small_jsonl, tmp_path / "runs", padding_free=setting, precision=precision)
    run, _ = rundir.create(tmp_path / "runs", "x", overwrite=False, config_yaml=cfg.to_yaml())
    args = train._args(cfg, run, resuming=False)
    assert train.padding_free(cfg) is packed and args.padding_free is packed
    assert train.grouped_batches(cfg) is not packed
    assert args.train_sampling_strategy == ("random" if packed else "group_by_length")


def test_a_diverged_run_stops_with_the_step_and_what_to_lower(tmp_path, tiny_model_dir, small_jsonl):
    """At learning rate 1e30 the weights overflow after one update: the run stops at the first nan it logs, says so
    (exit 2), saves no weights and records the failure, where transformers' nan filter had logged "loss 0" and the
    summary had read it as memorising the rows."""
    import json

    res = tunesmith("train", "--model", str(tiny_model_dir), "--data", str(small_jsonl), "--name", "nan",
                    "--set", "train.learning_rate=1e30", "--set", "train.epochs=4", "--set", "train.logging_steps=1",
                    "--set", "train.report_to=[]", "--set", "eval.retention=off", cwd=tmp_path)
    err = fails(res, "training diverged: the eval loss was nan at step 2", "lower train.learning_rate (now 1e+30",
                "--overwrite")
    run = rundir.RunDir(tmp_path / "runs" / "nan")
    rows = [json.loads(line) for line in run.metrics.read_text(encoding="utf-8").splitlines()]
    assert math.isnan(rows[-1]["eval_loss"]) and rows[-1]["step"] == 2  # logged as it was, and nothing after it
    assert all(math.isfinite(r.get("loss", 0.0)) for r in rows)
    assert run.weights is None and "training diverged" in run.root.joinpath("failed.txt").read_text(encoding="utf-8")
    assert "memoris" not in err
    for verb in ("eval", "report"):  # what the run's own error said, not "finish training first" / "run eval"
        fails(tunesmith(verb, str(run.root), cwd=tmp_path), "has no trained weights: it failed: training "
              "diverged", "lower train.learning_rate")


def test_max_grad_norm_zero_trains_without_clipping(tmp_path, tiny_model_dir, small_jsonl):
    # "0 = off" in the config: passed on as None, transformers 5 compared None > 0 at the first step and crashed
    _, rows = _train_and_watch(tiny_model_dir, small_jsonl, tmp_path, max_grad_norm=0.0)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path / "args", max_grad_norm=0.0)
    run, _ = rundir.create(tmp_path / "args", "x", overwrite=False, config_yaml=cfg.to_yaml())
    assert train._args(cfg, run, resuming=False).max_grad_norm == 0.0  # transformers skips clipping at 0


def test_a_scheduler_gets_its_settings_and_says_what_it_lacks(tmp_path, tiny_model_dir, small_jsonl):
    """cosine_with_min_lr, cosine_warmup_with_min_lr and warmup_stable_decay raised at the first step on their
    defaults (no lr_scheduler_kwargs reached transformers); now the kwargs reach it, and plan says what is missing."""
    _, rows = _train_and_watch(tiny_model_dir, small_jsonl, tmp_path / "min", lr_scheduler="cosine_with_min_lr",
                               lr_scheduler_kwargs={"min_lr_rate": 0.5}, warmup_ratio=0.0)
    rates = [r["learning_rate"] for r in rows if "learning_rate" in r]
    assert len(rates) == 3 and min(rates) >= 0.5 * 5e-3 and rates[-1] < rates[0]  # decays, to half at most
    res = tunesmith("plan", "--model", str(tiny_model_dir), "--data", str(small_jsonl),
                    "--set", "train.lr_scheduler=warmup_stable_decay", cwd=tmp_path)
    fails(res, "train.lr_scheduler_kwargs: the warmup_stable_decay scheduler cannot run", "num_decay_steps",
          "--set train.lr_scheduler_kwargs.num_decay_steps=20")


def test_an_optimizer_from_a_missing_package_is_named_before_a_model_loads(tmp_path, small_jsonl):
    import importlib.util

    assert importlib.util.find_spec("lomo_optim") is None  # not a dependency: what a user may name anyway
    cfg = tiny_config(tmp_path / "m", small_jsonl, tmp_path / "runs", optimizer="lomo")
    with pytest.raises(TunesmithError, match="the lomo optimizer cannot run here: .*lomo-optim") as err:
        train.check_optimizer(cfg)
    assert "--set train.optimizer=adamw_torch" in err.value.render()
    train.check_optimizer(tiny_config(tmp_path / "m", small_jsonl, tmp_path / "runs", optimizer="adamw_torch_fused"))


# The architectures of the 1-2B chat models people bring (Qwen2.5 / Qwen3, Gemma 2 / 3, Phi-3 / 4-mini, Mistral,
# EXAONE 4): tunesmith's CPU shortcuts (its attention, the bf16 projections, the cheap dropout, the answer-only
# logits) run inside each one's own layers, so each is trained, evaluated and reported here as a tiny random model.
ARCHS = {"qwen2": {}, "qwen3": {"head_dim": 16}, "gemma2": {"head_dim": 16},
         "gemma3_text": {"head_dim": 16, "sliding_window": 64}, "phi3": {}, "mistral": {}, "exaone4": {}}


@pytest.mark.parametrize("model_type", list(ARCHS))
def test_each_architecture_people_bring_trains_and_evaluates(tmp_path, smol_tokenizer, small_jsonl, model_type):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.conftest import tiny_config
    from tunesmith import pipeline, rundir

    tok = smol_tokenizer
    cfg = AutoConfig.for_model(model_type, vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                               max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **ARCHS[model_type])
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "model", safe_serialization=True)
    tok.save_pretrained(tmp_path / "model")
    run = rundir.RunDir(pipeline.run(tiny_config(tmp_path / "model", small_jsonl, tmp_path / "runs"),
                                     say=lambda _: None).run_dir)
    losses = [row.eval_loss for row in run.read_metrics() if row.eval_loss is not None]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert len(run.evaluation().read_summary().models) == 2 and run.report_md.is_file()


def test_neftune_noise_is_in_training_steps_and_not_in_eval(tmp_path, tiny_model_dir, small_jsonl):
    """The same 3 packed steps with and without train.neftune_alpha: the step-0 eval loss (eval mode) is the same,
    the first training loss is not (noisy embeddings), and the noisy run trains to finite losses."""
    _, plain = _train_and_watch(tiny_model_dir, small_jsonl, tmp_path / "plain", padding_free="on")
    _, noisy = _train_and_watch(tiny_model_dir, small_jsonl, tmp_path / "noisy", padding_free="on", neftune_alpha=15.0)
    first = [next(r[key] for r in rows if key in r) for rows in (plain, noisy) for key in ("eval_loss", "loss")]
    assert first[0] == first[2] and first[1] != first[3]
    assert all(math.isfinite(r[k]) for r in noisy for k in ("loss", "eval_loss") if k in r)
