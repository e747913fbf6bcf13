"""Training memory: the estimate (what a layer keeps per token, the batches a run draws) and the fit into the
machine (memory.fit_memory).

The model is the tiny Llama built from config; budgets are set with train.memory_gib, computed from the plan's
own memory terms so that each test lands between two settings whatever the constants are calibrated to.
Examples are records of a given length: fit_memory reads only their lengths, as it runs before any weights load.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import tiny_config
from tunesmith import memory
from tunesmith.errors import TunesmithError
from tunesmith.records import IGNORE, Example

LONGEST = 1000


def rows(n: int, length: int = LONGEST) -> list[Example]:
    """n rows of `length` tokens whose last 8 tokens are supervised (a long prompt, a short answer)."""
    return [Example(tuple(range(length)), (IGNORE,) * (length - 8) + (1,) * 8, f"gen.jsonl:{i + 1}")
            for i in range(n)]


def config(model: Path, data: Path, out: Path, **train):
    """The tiny run with only `train` set by the user (defaults: batch 8, no accumulation, no checkpointing).

    fp32 with padded rows, where memory is linear in a step's rows x its longest: under bf16 on the CPU the matrix
    attention's probabilities (quadratic, test_attention_memory_counts_in_the_fit) dominate a 64-wide model's
    activations. Tests of padding-free rows (auto) say so.
    """
    return tiny_config(model, data, out, train={"max_steps": 6, "report_to": [], "precision": "fp32",
                                                "padding_free": "off", **train})


def terms(cfg, checkpointing: bool) -> tuple[float, float]:
    trainable, total, arch = memory.parameter_counts(cfg)
    return memory.memory_terms(memory.with_train(cfg, gradient_checkpointing=checkpointing), trainable, total, arch)


def budget(cfg, tokens: float, checkpointing: bool = False) -> float:
    """The GiB that hold `tokens` tokens per step (and a little over, but less than the next row)."""
    fixed, per_token = terms(cfg, checkpointing)
    return fixed + per_token * tokens


def test_a_small_budget_picks_fewer_rows_and_keeps_the_effective_batch(tiny_model_dir, small_jsonl, tmp_path):
    base = config(tiny_model_dir, small_jsonl, tmp_path)
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, memory_gib=budget(base, 2.5 * LONGEST))
    fitted, lines = memory.fit_memory(cfg, rows(20), rows(4))
    t = fitted.train
    assert (t.batch_size, t.grad_accum, t.gradient_checkpointing) == (2, 4, False)
    assert len(lines) == 1 and lines[0].startswith(f"memory: batch 8 x {LONGEST} tokens needs ~")
    assert "GiB available (train.memory_gib): 2 rows per step x 4 accumulation (effective batch 8 kept)" in lines[0]
    # Three rows fit: accumulation 3 makes 9, the nearest to 8.
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, memory_gib=budget(base, 3.5 * LONGEST))
    t = memory.fit_memory(cfg, rows(20), rows(4))[0].train
    assert (t.batch_size, t.grad_accum) == (3, 3)


def test_checkpointing_comes_after_the_batch_is_down_to_one_row(tiny_model_dir, small_jsonl, tmp_path):
    base = config(tiny_model_dir, small_jsonl, tmp_path)
    squeezed = budget(base, 1.1 * LONGEST, checkpointing=True)
    assert squeezed < budget(base, LONGEST)  # one row does not fit without checkpointing
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, memory_gib=squeezed)
    fitted, lines = memory.fit_memory(cfg, rows(20), rows(4))
    t = fitted.train
    assert (t.batch_size, t.grad_accum, t.gradient_checkpointing) == (1, 8, True)
    assert "gradient checkpointing on (~50% more compute)" in lines[0]


def test_what_fits_is_left_alone(tiny_model_dir, small_jsonl, tmp_path):
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, memory_gib=1000)
    assert memory.fit_memory(cfg, rows(20), rows(4)) == (cfg, [])


def test_settings_the_user_made_are_kept(tiny_model_dir, small_jsonl, tmp_path):
    """An explicit batch size is never changed: checkpointing (if not set too) is turned on where that makes it
    fit; otherwise the plan warns and trains as told, since the estimate is rough (docs/memory.md)."""
    base = config(tiny_model_dir, small_jsonl, tmp_path)
    between = budget(base, 8.5 * LONGEST, checkpointing=True)
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, batch_size=8, memory_gib=between)
    t = memory.fit_memory(cfg, rows(20), rows(4))[0].train
    assert (t.batch_size, t.grad_accum, t.gradient_checkpointing) == (8, 1, True)

    cfg = config(tiny_model_dir, small_jsonl, tmp_path, batch_size=8, gradient_checkpointing=False,
                 memory_gib=between)
    fitted, lines = memory.fit_memory(cfg, rows(20), rows(4))
    assert fitted == cfg
    assert lines[0].startswith("warning: memory: batch 8 x 1000 tokens needs ~")
    assert "train.batch_size=8, train.gradient_checkpointing=False set by you" in lines[0]

    cfg = config(tiny_model_dir, small_jsonl, tmp_path, grad_accum=1, memory_gib=budget(base, 2.5 * LONGEST))
    fitted, lines = memory.fit_memory(cfg, rows(20), rows(4))
    assert (fitted.train.batch_size, fitted.train.grad_accum) == (2, 1)
    assert "effective batch 2, 8 asked: grad_accum is yours" in lines[0]


def test_a_budget_nothing_fits_names_the_numbers_and_a_max_length_that_fits(tiny_model_dir, small_jsonl,
                                                                            tmp_path):
    base = config(tiny_model_dir, small_jsonl, tmp_path)
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, memory_gib=budget(base, 0.6 * LONGEST, checkpointing=True))
    with pytest.raises(TunesmithError) as err:
        memory.fit_memory(cfg, rows(20), rows(4))
    text = str(err.value)
    assert "training does not fit in memory: batch 8 x 1000 tokens needs ~" in text
    assert "even 1 row per step with gradient checkpointing needs ~" in text and "a smaller model" in text
    length = int(re.search(r"how to fix: --set template\.max_length=(\d+)$", text).group(1))
    assert 0.5 * LONGEST < length < 0.6 * LONGEST
    assert "20 of 20 training rows are longer" in text
    # The suggested length works: rows of that length fit (checkpointed, one per step).
    t = memory.fit_memory(cfg, rows(20, length), rows(4, length))[0].train
    assert (t.batch_size, t.gradient_checkpointing) == (1, True)


def test_max_tokens_per_row_is_the_one_checkpointed_row_that_fits(tiny_model_dir, small_jsonl, tmp_path):
    base = config(tiny_model_dir, small_jsonl, tmp_path)
    fits = memory.max_tokens_per_row(base, budget(base, 777.5, checkpointing=True))
    assert fits == 777
    assert memory.max_tokens_per_row(base, 0.01) == 0  # the model alone is over budget


def test_the_memory_estimate_follows_the_allocator_train_will_have(monkeypatch):
    from tunesmith import config, runtime

    cfg = config.parse({"name": "t", "model": "default", "data": {"train": ["x.jsonl"]}}, source="<test>")
    trainable, total, arch = memory.parameter_counts(cfg)
    monkeypatch.setattr(runtime, "tcmalloc_library", lambda: "/usr/lib/libtcmalloc.so.4")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("TUNESMITH_NO_TCMALLOC", raising=False)
    assert runtime.training_allocator() == "tcmalloc"
    fixed, per_token = memory.memory_terms(cfg, trainable, total, arch)
    monkeypatch.setenv("TUNESMITH_NO_TCMALLOC", "1")  # train will not preload it: glibc's peak is counted
    assert runtime.training_allocator() == "glibc"
    assert memory.memory_terms(cfg, trainable, total, arch) == (fixed, pytest.approx(per_token * memory.GLIBC_PER_TOKEN))


def test_attention_memory_counts_in_the_fit(tiny_model_dir, small_jsonl, tmp_path):
    # bf16 on the CPU: attention.py keeps B x H x L x L bf16 probabilities per layer while they fit its cap.
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, precision="bf16", padding_free="auto")
    trainable, total, arch = memory.parameter_counts(cfg)
    fixed, per_token = terms(cfg, False)
    kept = memory.attention_gib(cfg, arch, (LONGEST,) * 2, True)
    # layers x rows x heads x L^2 bf16, with the allocator's headroom and a whole run's creep (docs/memory.md)
    assert kept == pytest.approx(2 * 2 * 4 * LONGEST**2 * 2 * memory.ALLOCATOR * memory.RUN_CREEP / 2**30)
    assert per_token == pytest.approx(2 * 64 * memory.PER_TOKEN_BYTES["half"] * memory.width_factor(arch, "cpu")
                                      * memory.ALLOCATOR * memory._creep(cfg) / 2**30)
    assert memory._creep(cfg) in (memory.RUN_CREEP, pytest.approx(memory.RUN_CREEP * memory.GLIBC_PER_TOKEN))
    assert memory.estimate_memory_gib(memory.with_train(cfg, batch_size=2), trainable, total, arch, LONGEST) == \
        pytest.approx(fixed + per_token * 2 * LONGEST + kept)
    assert memory.attention_gib(cfg, arch, (LONGEST,) * 6, True) == 0  # past the cap SDPA runs, linear in tokens
    # train.attention: sdpa turns the matrix path off, and with it the quadratic term
    assert memory.attention_gib(memory.with_train(cfg, attention="sdpa"), arch, (LONGEST,) * 2, True) == 0
    assert memory.attention_gib(memory.with_train(cfg, gradient_checkpointing=True), arch, (LONGEST,) * 2, True) == \
        pytest.approx(kept / 2)
    for room in (2.2, 3.5, 4.5):
        budget_gib = fixed + per_token * room * LONGEST + memory.attention_gib(cfg, arch, (LONGEST,) * int(room), True)
        fitted = memory.fit_memory(config(tiny_model_dir, small_jsonl, tmp_path, precision="bf16",
                                        padding_free="auto", memory_gib=budget_gib), rows(20), rows(4))[0]
        assert memory.estimate_memory_gib(fitted, trainable, total, arch, LONGEST) <= budget_gib


def test_the_estimate_is_the_largest_batch_the_run_draws(tiny_model_dir, small_jsonl, tmp_path):
    """Random batches of mixed lengths: the estimate is the largest step among the batches train.drawn_batches says
    the run takes (tests/test_train.py holds those to the trainer's own); the memory fit keeps the worst case."""
    from tunesmith import train

    lengths = [100 + 37 * (i % 9) for i in range(40)]  # 100 to 396 tokens
    examples = [rows(1, n)[0] for n in lengths]
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, batch_size=4, max_steps=30, group_by_length=False)
    # padded rows (here drawn at random: grouped, the first batch is the longest rows)
    trainable, total, arch = memory.parameter_counts(cfg)
    fixed, per_token = terms(cfg, False)
    batches = list(train.drawn_batches(lengths, cfg))
    assert len(batches) == 30 and all(len(b) == 4 for b in batches)
    peak, largest = memory.drawn_memory_gib(cfg, trainable, total, arch, lengths)
    assert max(largest) * 4 == max(max(b) * 4 for b in batches)  # padded: rows x the batch's longest
    assert peak == pytest.approx(fixed + per_token * 4 * max(largest))
    worst = memory.estimate_memory_gib(cfg, trainable, total, arch, max(lengths))
    assert peak <= worst
    packed = config(tiny_model_dir, small_jsonl, tmp_path, batch_size=4, max_steps=30, precision="bf16",
                    padding_free="auto")
    peak, largest = memory.drawn_memory_gib(packed, trainable, total, arch, lengths)
    # padding-free: a batch's own tokens, and the attention probabilities of its length groups
    steps = {tuple(sorted(b)): memory.step_gib(packed, arch, terms(packed, False)[1], tuple(sorted(b)))
             for b in train.drawn_batches(lengths, packed)}
    assert largest == max(steps, key=steps.__getitem__) and sum(largest) < 4 * max(lengths)
    assert peak < memory.estimate_memory_gib(packed, trainable, total, arch, max(lengths))
    line = memory.plan_line(packed, examples, 20.0, "train.memory_gib")
    assert f"{len(largest)} rows, {sum(largest)} tokens (up to {max(largest)} a row)" in line
    assert "the 4 longest rows together (396 tokens)" in line
    # rows of one length: any draw is the worst case
    assert memory.drawn_memory_gib(packed, trainable, total, arch, [300] * 40)[0] == \
        pytest.approx(memory.estimate_memory_gib(packed, trainable, total, arch, 300))


@pytest.mark.parametrize("path", ["gpu", "cpu", "fp32"])
def test_what_a_layer_keeps_per_token_is_counted_at_a_shape_left_out_of_the_fit(path):
    """SAVED_PER_TOKEN was fitted on six shapes of 576-2,048 hidden units; the tests' 64-wide Llama (MLP 2x, 2 of 4
    heads for keys and values) was left out. Counted again here with autograd's saved-tensor hooks, one layer."""
    from bench.saved_activations import saved_bytes

    shape, tokens = (64, 128, 4, 2), 512
    counted = (saved_bytes(shape, 2, tokens, path) - saved_bytes(shape, 1, tokens, path)) / tokens
    hidden, mlp, heads, kv_heads = shape
    predicted = memory.saved_per_token((hidden, mlp, kv_heads * hidden // heads, heads), path)
    if path == "cpu":  # the matrix attention's probabilities, 4 rows of 128 tokens: counted apart by attention_gib
        predicted += heads * 128 * 2
    assert predicted == pytest.approx(counted, rel=1e-9 if path == "gpu" else 0.02)  # the CPU's dropout: random


def test_a_wider_mlp_keeps_more_per_token_than_the_measured_shape():
    import types

    from tunesmith import config

    def arch(hidden, mlp, heads, kv_heads):
        return types.SimpleNamespace(hidden_size=hidden, intermediate_size=mlp, num_attention_heads=heads,
                                     num_key_value_heads=kv_heads, num_hidden_layers=24, vocab_size=49152)

    assert memory.width_factor(arch(576, 1536, 9, 3), "gpu") == pytest.approx(1.0)  # SmolLM2-135M: as measured
    assert memory.width_factor(arch(960, 2560, 15, 5), "gpu") == pytest.approx(0.997, abs=1e-3)  # 360M: same ratio
    assert memory.width_factor(arch(2048, 8192, 32, 32), "gpu") == pytest.approx(71.61 / 56.90, rel=1e-3)  # 1.7B
    cfg = config.parse({"name": "t", "model": "default", "data": {"train": ["x.jsonl"]},
                        "train": {"precision": "bf16"}}, source="<test>")  # the path _path(True) names
    small = memory.memory_terms(cfg, 1, 1000, arch(576, 1536, 9, 3))[1]
    wide = memory.memory_terms(cfg, 1, 1000, arch(576, 4 * 1536, 9, 3))[1]
    assert wide / small == pytest.approx(memory.width_factor(arch(576, 4 * 1536, 9, 3), memory._path(True)))
    assert wide / small > 1.5


def test_on_a_gpu_the_estimate_is_the_gpus_peak_without_the_cpu_runtime(monkeypatch):
    """On CUDA the plan estimates the GPU's peak allocated memory: no Python/library RSS, no CPU creep. Held against
    what the H100 run recorded for SmolLM2-135M's shape (bench/results/gpu_contestants_h100.json)."""
    import json

    from tunesmith import config, runtime

    cfg = config.parse({"name": "t", "model": "default", "data": {"train": ["x.jsonl"]},
                        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}},
                       source="<test>")
    counts = memory.parameter_counts(cfg)
    monkeypatch.setattr(runtime, "choose_precision", lambda precision: "bf16")  # what auto picks on an H100
    monkeypatch.setattr(memory, "cuda", lambda: False)
    cpu_fixed, cpu_per_token = memory.memory_terms(cfg, *counts)
    monkeypatch.setattr(memory, "cuda", lambda: True)
    fixed, per_token = memory.memory_terms(cfg, *counts)
    assert fixed == pytest.approx(cpu_fixed - memory.RUNTIME_GIB)
    assert per_token == pytest.approx(cpu_per_token / memory._creep(cfg))
    measured = {(r["shape"], r["contestant"]): r["peak_gpu_gib"] for r in json.loads(
        (Path(__file__).parents[1] / "bench/results/gpu_contestants_h100.json").read_text())["results"]}
    # the bench's rows: 8 x <= 326 tokens (demo), 4 x <= 1,003 (long prompt); packed and padded rows
    for shape, rows_, longest in (("demo", 8, 326), ("long_prompt", 4, 1003)):
        estimate = memory.estimate_memory_gib(memory.with_train(cfg, batch_size=rows_), *counts, longest)
        for contestant in ("tunesmith", "tunesmith-padded"):
            assert estimate == pytest.approx(measured[shape, contestant], rel=0.2), (shape, contestant)


def test_under_fp16_the_frozen_weights_count_as_stored_in_fp16(monkeypatch):
    """A GPU without bf16 (T4, V100) trains under fp16 autocast with the frozen linear weights stored in fp16
    (fastpath.frozen_to_half): 2 bytes each, as under bf16; fp32 keeps 4 and no copies."""
    from tunesmith import config, fastpath, runtime

    cfg = config.parse({"name": "t", "model": "default", "data": {"train": ["x.jsonl"]}}, source="<test>")
    trainable, total, arch = memory.parameter_counts(cfg)
    monkeypatch.setattr(memory, "cuda", lambda: True)
    fixed = {}
    for precision in ("bf16", "fp16", "fp32"):
        monkeypatch.setattr(runtime, "choose_precision", lambda _, p=precision: p)
        monkeypatch.setattr(fastpath, "choose_precision", lambda _, p=precision: p)
        fixed[precision] = memory.memory_terms(cfg, trainable, total, arch)[0]
    assert fastpath.frozen_dtype(cfg) is None  # the last asked, fp32: nothing stored in half
    assert fixed["fp16"] == fixed["bf16"]
    converted = total - arch.vocab_size * arch.hidden_size  # all but the (tied) embeddings
    assert fixed["fp32"] - fixed["fp16"] == pytest.approx(2 * converted * memory.ALLOCATOR / 2**30)


def test_a_whole_runs_creep_follows_the_sampler(tiny_model_dir, small_jsonl, tmp_path, monkeypatch):
    """Random batches of changing shapes leave freed activations in the allocator's caches (RUN_CREEP); length-grouped
    batches draw their longest first, and later steps fit in what it left (GROUPED_CREEP; docs/memory.md)."""
    from tunesmith import runtime

    monkeypatch.setattr(memory, "cuda", lambda: False)
    monkeypatch.setattr(runtime, "training_allocator", lambda: "tcmalloc")
    packed = config(tiny_model_dir, small_jsonl, tmp_path, precision="bf16", padding_free="auto")  # random batches
    padded = config(tiny_model_dir, small_jsonl, tmp_path, precision="bf16", padding_free="off")  # grouped
    chosen = config(tiny_model_dir, small_jsonl, tmp_path, precision="bf16", padding_free="off",
                    group_by_length=False)  # padded, random: the user's choice
    assert [memory.run_creep(c) for c in (packed, padded, chosen)] == \
        [memory.RUN_CREEP, memory.GROUPED_CREEP, memory.RUN_CREEP]
    assert memory.run_creep(config(tiny_model_dir, small_jsonl, tmp_path)) == memory.GROUPED_CREEP  # padded
    assert memory.run_creep(config(tiny_model_dir, small_jsonl, tmp_path, padding_free="auto")) == memory.RUN_CREEP
    per_token = {name: terms(c, False)[1] for name, c in (("padded", padded), ("chosen", chosen))}
    assert per_token["chosen"] / per_token["padded"] == pytest.approx(memory.RUN_CREEP / memory.GROUPED_CREEP)


def test_a_grpo_step_counts_prompts_x_answers_padded_to_the_longest_prompt_and_answer(tiny_model_dir, small_jsonl,
                                                                                      tmp_path, monkeypatch):
    """grpo's estimate: batch_size x generations rows of (the longest prompt + grpo.max_new_tokens) tokens through
    the model together, with the frozen weights as loaded (grpo keeps them: its answers are written outside
    autocast); the plan says when it is over the budget, and what to lower."""
    from tunesmith import fastpath, plan, runtime

    monkeypatch.setattr(runtime, "choose_precision", lambda _: "bf16")
    monkeypatch.setattr(fastpath, "choose_precision", lambda _: "bf16")
    cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path, train={"objective": "grpo", "batch_size": 2},
                      grpo={"generations": 4, "max_new_tokens": 100})
    trainable, total, arch = memory.parameter_counts(cfg)
    fixed, per_token = memory.memory_terms(cfg, trainable, total, arch, frozen_half=False)
    assert fixed > memory.memory_terms(cfg, trainable, total, arch)[0]  # fp32 frozen weights, not bf16
    prompts = [30, 60, 45]
    peak, n, length = memory.grpo_memory_gib(cfg, prompts)
    assert (n, length) == (8, 160)
    twice, _, _ = memory.grpo_memory_gib(cfg.model_copy(update={"grpo": cfg.grpo.model_copy(
        update={"generations": 8})}), prompts)
    assert twice - fixed > 2 * (peak - fixed) * 0.99  # twice the rows: the activations (and attention) double
    examples = [Example(tuple(range(p + 10)), (IGNORE,) * p + (1,) * 10, f"x:{i}") for i, p in enumerate(prompts)]
    line = plan.grpo_memory_line(cfg, examples, peak / 2, "train.memory_gib")
    assert f"~{peak:.1f} GiB of {peak / 2:.1f} GiB" in line
    assert "2 prompts x 4 answers = 8 rows of up to 160 tokens" in line
    assert "over what is available: lower train.batch_size, grpo.generations, grpo.max_new_tokens" in line
