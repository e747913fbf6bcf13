"""The plan fits the run to the machine (plan.fit_memory) and says which knobs cut a long run (plan.time_knobs).

The model is the tiny Llama built from config; budgets are set with train.memory_gib, computed from the plan's
own memory terms so that each test lands between two settings whatever the constants are calibrated to.
Examples are records of a given length: fit_memory reads only their lengths, as it runs before any weights load.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

from tests.conftest import tiny_config
from tunesmith import plan
from tunesmith.errors import TunesmithError
from tunesmith.records import IGNORE, Example

LONGEST = 1000


def rows(n: int, length: int = LONGEST) -> list[Example]:
    """n rows of `length` tokens whose last 8 tokens are supervised (a long prompt, a short answer)."""
    return [Example(tuple(range(length)), (IGNORE,) * (length - 8) + (1,) * 8, f"gen.jsonl:{i + 1}")
            for i in range(n)]


def config(model: Path, data: Path, out: Path, **train):
    """The tiny run with only `train` set by the user (defaults: batch 8, no accumulation, no checkpointing).

    fp32, where memory is linear in tokens: under bf16 on the CPU the matrix attention's probabilities (quadratic,
    test_attention_memory_counts_in_the_fit) dominate a 64-wide model's activations.
    """
    return tiny_config(model, data, out, train={"max_steps": 6, "report_to": [], "precision": "fp32", **train})


def terms(cfg, checkpointing: bool) -> tuple[float, float]:
    trainable, total, arch = plan.parameter_counts(cfg)
    return plan.memory_terms(plan._with(cfg, gradient_checkpointing=checkpointing), trainable, total, arch)


def budget(cfg, tokens: float, checkpointing: bool = False) -> float:
    """The GiB that hold `tokens` tokens per step (and a little over, but less than the next row)."""
    fixed, per_token = terms(cfg, checkpointing)
    return fixed + per_token * tokens


def test_a_small_budget_picks_fewer_rows_and_keeps_the_effective_batch(tiny_model_dir, small_jsonl, tmp_path):
    base = config(tiny_model_dir, small_jsonl, tmp_path)
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, memory_gib=budget(base, 2.5 * LONGEST))
    fitted, lines = plan.fit_memory(cfg, rows(20), rows(4))
    t = fitted.train
    assert (t.batch_size, t.grad_accum, t.gradient_checkpointing) == (2, 4, False)
    assert len(lines) == 1 and lines[0].startswith(f"memory: batch 8 x {LONGEST} tokens needs ~")
    assert "GiB available (train.memory_gib): 2 rows per step x 4 accumulation (effective batch 8 kept)" in lines[0]
    # Three rows fit: accumulation 3 makes 9, the nearest to 8.
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, memory_gib=budget(base, 3.5 * LONGEST))
    t = plan.fit_memory(cfg, rows(20), rows(4))[0].train
    assert (t.batch_size, t.grad_accum) == (3, 3)


def test_checkpointing_comes_after_the_batch_is_down_to_one_row(tiny_model_dir, small_jsonl, tmp_path):
    base = config(tiny_model_dir, small_jsonl, tmp_path)
    squeezed = budget(base, 1.1 * LONGEST, checkpointing=True)
    assert squeezed < budget(base, LONGEST)  # one row does not fit without checkpointing
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, memory_gib=squeezed)
    fitted, lines = plan.fit_memory(cfg, rows(20), rows(4))
    t = fitted.train
    assert (t.batch_size, t.grad_accum, t.gradient_checkpointing) == (1, 8, True)
    assert "gradient checkpointing on (~50% more compute)" in lines[0]


def test_what_fits_is_left_alone(tiny_model_dir, small_jsonl, tmp_path):
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, memory_gib=1000)
    assert plan.fit_memory(cfg, rows(20), rows(4)) == (cfg, [])


def test_settings_the_user_made_are_kept(tiny_model_dir, small_jsonl, tmp_path):
    """An explicit batch size is never changed: checkpointing (if not set too) is turned on where that makes it
    fit; otherwise the plan warns and trains as told, since the estimate is rough (docs/memory.md)."""
    base = config(tiny_model_dir, small_jsonl, tmp_path)
    between = budget(base, 8.5 * LONGEST, checkpointing=True)
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, batch_size=8, memory_gib=between)
    t = plan.fit_memory(cfg, rows(20), rows(4))[0].train
    assert (t.batch_size, t.grad_accum, t.gradient_checkpointing) == (8, 1, True)

    cfg = config(tiny_model_dir, small_jsonl, tmp_path, batch_size=8, gradient_checkpointing=False,
                 memory_gib=between)
    fitted, lines = plan.fit_memory(cfg, rows(20), rows(4))
    assert fitted == cfg
    assert lines[0].startswith("warning: memory: batch 8 x 1000 tokens needs ~")
    assert "train.batch_size=8, train.gradient_checkpointing=False set by you" in lines[0]

    cfg = config(tiny_model_dir, small_jsonl, tmp_path, grad_accum=1, memory_gib=budget(base, 2.5 * LONGEST))
    fitted, lines = plan.fit_memory(cfg, rows(20), rows(4))
    assert (fitted.train.batch_size, fitted.train.grad_accum) == (2, 1)
    assert "effective batch 2, 8 asked: grad_accum is yours" in lines[0]


def test_a_budget_nothing_fits_names_the_numbers_and_a_max_length_that_fits(tiny_model_dir, small_jsonl,
                                                                            tmp_path):
    base = config(tiny_model_dir, small_jsonl, tmp_path)
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, memory_gib=budget(base, 0.6 * LONGEST, checkpointing=True))
    with pytest.raises(TunesmithError) as err:
        plan.fit_memory(cfg, rows(20), rows(4))
    text = str(err.value)
    assert "training does not fit in memory: batch 8 x 1000 tokens needs ~" in text
    assert "even 1 row per step with gradient checkpointing needs ~" in text and "a smaller model" in text
    length = int(re.search(r"how to fix: --set template\.max_length=(\d+)$", text).group(1))
    assert 0.5 * LONGEST < length < 0.6 * LONGEST
    assert "20 of 20 training rows are longer" in text
    # The suggested length works: rows of that length fit (checkpointed, one per step).
    t = plan.fit_memory(cfg, rows(20, length), rows(4, length))[0].train
    assert (t.batch_size, t.gradient_checkpointing) == (1, True)


def test_max_tokens_per_row_is_the_one_checkpointed_row_that_fits(tiny_model_dir, small_jsonl, tmp_path):
    base = config(tiny_model_dir, small_jsonl, tmp_path)
    fits = plan.max_tokens_per_row(base, budget(base, 777.5, checkpointing=True))
    assert fits == 777
    assert plan.max_tokens_per_row(base, 0.01) == 0  # the model alone is over budget


def test_a_long_run_says_which_knobs_cut_it(tiny_model_dir, small_jsonl, tmp_path):
    train_ex = rows(200, LONGEST) + rows(400, 200)  # median 200 tokens: max_length 256 leaves out the long third
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, max_steps=-1, epochs=1)
    _, total, arch = plan.parameter_counts(cfg)
    one_epoch = plan.run_seconds(cfg, train_ex, rows(4), total, arch)
    if one_epoch is None:
        pytest.skip("no time estimate on a GPU")
    # Epochs enough for an hour, whatever this machine's throughput constants say.
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, max_steps=-1, epochs=math.ceil(2 * plan.LONG_RUN_S / one_epoch))
    lines = plan.time_knobs(cfg, train_ex, rows(4), total, arch)
    assert lines[0].startswith("time: ~") and "is long; each of these cuts it" in lines[0]
    assert lines[1].startswith("time: --set data.max_rows=200 (train on 200 of 600 rows) -> ~")
    assert lines[2].startswith("time: --set train.epochs=1 -> ~")
    assert lines[3].startswith("time: --set template.max_length=256 (200 of 600 rows are longer: dropped) -> ~")
    cuts = [int(re.search(r"\((\d+)% less\)$", line).group(1)) for line in lines[1:]]
    assert all(0 < cut < 100 for cut in cuts) and len(lines) == 4
    short = config(tiny_model_dir, small_jsonl, tmp_path, max_steps=-1, epochs=1)
    if one_epoch <= plan.LONG_RUN_S:
        assert plan.time_knobs(short, train_ex, rows(4), total, arch) == []


def test_time_grows_with_the_square_of_a_rows_length(tiny_model_dir, small_jsonl, tmp_path):
    # Attention costs n^2 per row: one long row takes longer than short rows of the same tokens, by an excess
    # that grows with the square of the length (2,000 vs 4 x 500: 3M; 4,000 vs 8 x 500: 14M token pairs).
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, max_steps=-1, epochs=1)
    _, total, arch = plan.parameter_counts(cfg)
    if plan.run_seconds(cfg, rows(1, 10), rows(1, 10), total, arch) is None:
        pytest.skip("no time estimate on a GPU")

    def excess(length: int, short: int = 500) -> float:
        pieces = length // short
        return (plan.run_seconds(cfg, rows(1, length), rows(1, 10), total, arch)
                - plan.run_seconds(cfg, rows(pieces, short), rows(1, 10), total, arch))

    assert excess(2000) > 0
    assert excess(4000) / excess(2000) == pytest.approx(14 / 3, rel=0.01)
    checkpointed = config(tiny_model_dir, small_jsonl, tmp_path, max_steps=-1, epochs=1, gradient_checkpointing=True)
    assert (plan.run_seconds(checkpointed, rows(1, 2000), rows(1, 10), total, arch)
            > plan.run_seconds(cfg, rows(1, 2000), rows(1, 10), total, arch))  # the forward runs twice


def test_the_time_estimate_counts_the_retention_check_unless_it_is_off(tiny_model_dir, small_jsonl, tmp_path):
    cfg = config(tiny_model_dir, small_jsonl, tmp_path)
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"retention": "on"})})
    _, total, arch = plan.parameter_counts(cfg)
    on = plan.run_seconds(cfg, rows(4, 100), rows(2, 100), total, arch)
    if on is None:
        pytest.skip("no time estimate on a GPU")
    off = plan.run_seconds(cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"retention": "off"})}),
                           rows(4, 100), rows(2, 100), total, arch)
    assert on - off == pytest.approx(2 * plan.retention_seconds(cfg, total, os.cpu_count() or 2)) and on > off
    # SmolLM2's size (134.5M): 2 x 4,550 tokens forward plus 64 decoding steps, ~14 s in fp32 by the constants,
    # ~7 s in bf16.
    assert 5 < plan.retention_seconds(cfg, 134_515_008, 2) < 30


def test_the_memory_estimate_follows_the_allocator_train_will_have(monkeypatch):
    from tunesmith import config, plan, runtime

    cfg = config.parse({"name": "t", "model": "default", "data": {"train": ["x.jsonl"]}}, source="<test>")
    trainable, total, arch = plan.parameter_counts(cfg)
    monkeypatch.setattr(runtime, "tcmalloc_library", lambda: "/usr/lib/libtcmalloc.so.4")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("TUNESMITH_NO_TCMALLOC", raising=False)
    assert runtime.training_allocator() == "tcmalloc"
    fixed, per_token = plan.memory_terms(cfg, trainable, total, arch)
    monkeypatch.setenv("TUNESMITH_NO_TCMALLOC", "1")  # train will not preload it: glibc's peak is counted
    assert runtime.training_allocator() == "glibc"
    assert plan.memory_terms(cfg, trainable, total, arch) == (fixed, pytest.approx(per_token * plan.GLIBC_PER_TOKEN))


def test_attention_memory_counts_in_the_fit(tiny_model_dir, small_jsonl, tmp_path):
    # bf16 on the CPU: attention.py keeps B x H x L x L bf16 probabilities per layer while they fit its cap.
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, precision="bf16")
    trainable, total, arch = plan.parameter_counts(cfg)
    fixed, per_token = terms(cfg, False)
    kept = plan.attention_gib(cfg, arch, 2, LONGEST)
    # layers x rows x heads x L^2 bf16, with the allocator's headroom and a whole run's creep (docs/memory.md)
    assert kept == pytest.approx(2 * 2 * 4 * LONGEST**2 * 2 * plan.ALLOCATOR * plan.RUN_CREEP / 2**30)
    assert per_token == pytest.approx(2 * 64 * plan.PER_TOKEN_BYTES["half"] * plan.ALLOCATOR * plan._creep() / 2**30)
    assert plan._creep() in (plan.RUN_CREEP, pytest.approx(plan.RUN_CREEP * plan.GLIBC_PER_TOKEN))
    assert plan.estimate_memory_gib(plan._with(cfg, batch_size=2), trainable, total, arch, LONGEST) == \
        pytest.approx(fixed + per_token * 2 * LONGEST + kept)
    assert plan.attention_gib(cfg, arch, 6, LONGEST) == 0  # past the cap SDPA runs, linear in tokens
    assert plan.attention_gib(plan._with(cfg, gradient_checkpointing=True), arch, 2, LONGEST) == pytest.approx(kept / 2)
    for room in (2.2, 3.5, 4.5):
        budget_gib = fixed + per_token * room * LONGEST + plan.attention_gib(cfg, arch, int(room), LONGEST)
        fitted = plan.fit_memory(config(tiny_model_dir, small_jsonl, tmp_path, precision="bf16",
                                        memory_gib=budget_gib), rows(20), rows(4))[0]
        assert plan.estimate_memory_gib(fitted, trainable, total, arch, LONGEST) <= budget_gib


def test_on_a_gpu_the_estimate_is_the_gpus_peak_without_the_cpu_runtime(monkeypatch):
    """On CUDA the plan estimates the GPU's peak allocated memory: no Python/library RSS, no CPU creep. Held against
    what the H100 run recorded for SmolLM2-135M's shape (bench/results/gpu_contestants_h100.json)."""
    import json

    from tunesmith import config, runtime

    cfg = config.parse({"name": "t", "model": "default", "data": {"train": ["x.jsonl"]},
                        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}},
                       source="<test>")
    counts = plan.parameter_counts(cfg)
    monkeypatch.setattr(runtime, "choose_precision", lambda precision: "bf16")  # what auto picks on an H100
    monkeypatch.setattr(plan, "_cuda", lambda: False)
    cpu_fixed, cpu_per_token = plan.memory_terms(cfg, *counts)
    monkeypatch.setattr(plan, "_cuda", lambda: True)
    fixed, per_token = plan.memory_terms(cfg, *counts)
    assert fixed == pytest.approx(cpu_fixed - plan.RUNTIME_GIB)
    assert per_token == pytest.approx(cpu_per_token / plan._creep())
    measured = {(r["shape"], r["contestant"]): r["peak_gpu_gib"] for r in json.loads(
        (Path(__file__).parents[1] / "bench/results/gpu_contestants_h100.json").read_text())["results"]}
    # the bench's rows: 8 x <= 326 tokens (demo), 4 x <= 1,003 (long prompt); packed and padded rows
    for shape, rows_, longest in (("demo", 8, 326), ("long_prompt", 4, 1003)):
        estimate = plan.estimate_memory_gib(plan._with(cfg, batch_size=rows_), *counts, longest)
        for contestant in ("tunesmith", "tunesmith-padded"):
            assert estimate == pytest.approx(measured[shape, contestant], rel=0.2), (shape, contestant)
