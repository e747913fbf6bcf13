"""What training will do, before it does it: printed by `tunesmith plan` and at the start of `train`.

Counts are exact (rows, tokens, steps, parameters); memory and time are estimates from the architecture and
throughput measured on this project's machines, labelled as such.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tunesmith import attention, fastpath, models, runtime, train
from tunesmith.config import REFERENCE_OBJECTIVES, RunConfig
from tunesmith.errors import TunesmithError
from tunesmith.records import SKIP_KINDS, Example, PreparedData

# Effective training FLOP/s on 2 cores, FLOPs counted as in estimate_seconds: 159 GFLOP/s training 16 Korean
# paragraphs of ~3,300 tokens (51.5 TFLOP an epoch in 325 s; the eval forward of 20 rows ran at 200) with bf16
# autocast, tcmalloc, frozen weights in bf16 and logits for answer tokens only (a 2-vCPU VM without AMX); the
# demo measured 210 tokens/s before those changes (113 GFLOP/s). Without tcmalloc: 2/3 of it (demo: 140 vs 210).
CPU_FLOPS_PER_CORE = {"fast": 159e9 / 2, "slow": 159e9 / 2 * 140 / 210}
# Decoding reads every fp32 weight once per new token of a batch, plus each row's KV cache: bound by memory
# bandwidth. Batched greedy generation measured ~100 new tokens/s at batch 8 for the 135M model on 2 cores
# (8 rows x 540 MB of weights / 80 ms a step = 6.75 GB/s); one 3,300-token Korean prompt at a time then made
# 20 x 96 tokens in 412 s with the prefill, 364 s by this model.
CPU_DECODE_BYTES_PER_S = 4 * 135e6 / 0.08
# Generation prompts prefilled in fp32, one long prompt at a time: 4 Korean paragraphs of ~3,100 tokens took
# 29.6 s with 16 new tokens each, 4.7 TFLOP counted as below.
CPU_PREFILL_FLOPS_PER_CORE = 4.68e12 / 29.6 / 2
# eval.precision bf16 (auto where the CPU has native bf16) halves the bytes each decoding step reads: the demo's
# 45 generations took 23.3 s vs 46.4 s in fp32 (Zen 4, 2 cores); its prefill and scoring ride the bf16 matmul
# (0.41 vs 0.20 TFLOP/s for a 2048^3 matmul here): both are counted 2x faster.
HALF_EVAL_SPEEDUP = 2.0
# Peak training memory = fixed (weights, AdamW state, RUNTIME_GIB) + per token in a step (PER_TOKEN_BYTES per hidden
# unit per layer), both x ALLOCATOR. Calibrated with bench/memory_estimate.py (docs/memory.md) on SmolLM2-135M LoRA,
# bf16 autocast, tcmalloc, TRL 1.16, frozen weights in bf16 and logits for answer tokens only: a least-squares line
# through peak RSS 2.4 GiB at 8 x 95 tokens, 5.9 GiB at 4 x 1023 and 5.7 GiB at 6 x 496 (slope 1.14 MiB per token,
# intercept 1.76 GiB; each shape within 11%); held out, 1 x 6260 (16 Korean paragraphs) estimated 8.7 GiB, measured
# 8.2. Before the last two changes the slope was 2.42 MiB per token. Linear in tokens, not in length squared: SDPA
# keeps no attention matrix; attention.py's matrix path for short rows does, counted apart (attention_gib; measured
# 2026-12-06 at 6 x 496 multi-turn rows: estimate 6.0 GiB with it, 5.1 without, peak RSS 5.8). Gradient
# checkpointing: 2.67 GiB peak RSS over 40 steps at 4 x 1023 (2026-12-06; the 21 bytes scaled from an older
# measurement by 55/120 estimated 4.2): 7 bytes per hidden unit per layer, plus one layer recomputed at a time
# (estimate 2.72 GiB; fitted on that one shape, not held out). fp32 is not measured: bf16 / 0.65.
PER_TOKEN_BYTES = {"half": 55, "fp32": 85}
CHECKPOINTED_BYTES = 7
RUNTIME_GIB = 1.32  # a CPU process's RSS for Python and its libraries; on CUDA they are not in the GPU's memory
# On CUDA the estimate is the GPU's peak allocated memory: the same terms without RUNTIME_GIB (and without RUN_CREEP:
# the caching allocator reuses its blocks). Held out against the H100 run (bench/results/gpu_contestants_h100.json,
# SmolLM2-135M's shape, 12 demo / 6 long-prompt steps): 3.33 and 4.89 GiB estimated, 3.33 and 5.13 measured with
# packed rows, 3.11 and 4.54 padded (-5% to +8%; with RUNTIME_GIB counted it said 4.65 and 6.21, +21% to +50%).
ALLOCATOR = 1.25  # allocator headroom over the tensors' own size
# Over a run, peak RSS creeps above the first steps' peak and then stays: batches of changing shapes leave the freed
# activations of earlier ones in the allocator's caches. bench/memory_estimate.py --steps 40 (3 steps before):
# chat 2.3 -> 2.9 GiB, multi-turn 5.8 -> 6.8; the demo (8 x 326) 5.06 GiB after step 1, 6.02 at step 50, 6.12 at 120.
# The batch-dependent part of the estimate (activations, kept attention) is scaled by RUN_CREEP (CPU; the GPU's
# caching allocator is not measured).
RUN_CREEP = 1.3
# glibc malloc (no tcmalloc to preload) keeps freed activation pages: its per-token peak RSS is 1.7x tcmalloc's,
# a least-squares fit over bench/memory_estimate.py --allocator glibc (chat 3.06, long Korean prompt 8.88,
# multi-turn 8.22 GiB measured; the fit's errors +5%, +6%, -10%). The fixed part is the same for both.
GLIBC_PER_TOKEN = 1.7


def parameter_counts(cfg: RunConfig) -> tuple[int, int, Any]:
    """(trainable, total, architecture config), counted on an empty (meta-device) model: no weights load.

    Remembered per (model, method, LoRA settings): the length cap, the memory fit and the plan each need it, and
    building the empty model with its adapter takes 1-2 s.
    """
    key = (cfg.model, cfg.train.method, cfg.lora.model_dump_json())
    if key not in _COUNTS:
        _COUNTS[key] = _count_parameters(cfg)
    return _COUNTS[key]


_COUNTS: dict[tuple[str, str, str], tuple[int, int, Any]] = {}


def _count_parameters(cfg: RunConfig) -> tuple[int, int, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    arch = models.model_config(cfg.model)
    # torch's meta device, not accelerate.init_empty_weights: under the latter tied embeddings stay untied
    # and a 135M model counts as 163M.
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls a deprecated transformers helper
        model = AutoModelForCausalLM.from_config(arch)
        total = sum(p.numel() for p in model.parameters())
        if cfg.train.method == "full":
            return total, total, arch
        from peft import get_peft_model

        models.check_target_modules(model, cfg.lora)  # PEFT would fail with a traceback, or skip a typo
        peft = get_peft_model(model, train.peft_config(cfg))
        return sum(p.numel() for p in peft.parameters() if p.requires_grad), total, arch


def memory_terms(cfg: RunConfig, trainable: int, total: int, arch: Any) -> tuple[float, float]:
    """(GiB that do not depend on the batch, GiB per token in a step) of peak training memory (process RSS; on
    CUDA the GPU's allocated peak): weights, gradients + AdamW state of trainable weights and the runtime (CPU
    only); activations kept for backward.

    Logits cost no memory per token: TRL 1.16's fused LM head projects in tiles, and only the supervised
    positions (on the CPU since fastpath.supervised_logits_only), so prompt positions add activations only. PER_TOKEN_BYTES and
    RUNTIME_GIB say what the constants were calibrated on (bench/memory_estimate.py, docs/memory.md); the demo's
    estimate of 6 fp32 logits copies per token was 2x too high for long-prompt rows once TRL stopped making them.
    """
    t = cfg.train
    weight_bytes = {"none": 4, "8bit": 1, "4bit": 0.55}[t.load_in]
    half = runtime.choose_precision(t.precision) != "fp32"
    hidden = getattr(arch, "hidden_size", 768)
    layers = getattr(arch, "num_hidden_layers", 12)
    # Bytes kept per hidden unit per layer for backward (attention, MLP intermediates, LoRA dropout copies);
    # gradient checkpointing keeps less and recomputes one layer at a time in backward.
    per_layer = CHECKPOINTED_BYTES if t.gradient_checkpointing else PER_TOKEN_BYTES["half" if half else "fp32"]
    per_token = layers * hidden * per_layer + (hidden * PER_TOKEN_BYTES["half" if half else "fp32"]
                                               if t.gradient_checkpointing else 0)  # the one layer recomputed
    if fastpath.frozen_in_bf16(cfg):
        # fastpath.frozen_to_bf16: the frozen linear weights are kept in bf16; embeddings (vocabulary x hidden) in fp32
        embeddings = getattr(arch, "vocab_size", 0) * hidden
        fixed = embeddings * 4 + (total - embeddings) * 2 + trainable * (4 + 8)
    else:
        fixed = total * weight_bytes + trainable * (4 + 8)
    if _cuda():  # the GPU's memory: no Python/library RSS, no CPU allocator creep
        runtime_gib = 0.0
    else:
        runtime_gib, per_token = RUNTIME_GIB, per_token * _creep()
    return (fixed * ALLOCATOR + runtime_gib * 2**30) / 2**30, per_token * ALLOCATOR / 2**30


def _creep() -> float:
    """How much the batch-dependent memory grows over a CPU run: RUN_CREEP, and glibc's higher per-token peak where
    train will not have tcmalloc (the allocator it will really have, not the one it would prefer)."""
    return RUN_CREEP * (GLIBC_PER_TOKEN if runtime.training_allocator() == "glibc" else 1.0)


def estimate_memory_gib(cfg: RunConfig, trainable: int, total: int, arch: Any, longest: int) -> float:
    """Peak training memory (process RSS; on CUDA the GPU's allocated peak) for batches of `cfg.train.batch_size`
    rows padded to `longest` tokens.

    >>> estimate_memory_gib(cfg, *parameter_counts(cfg), longest=1024)  # doctest: +SKIP
    5.1
    """
    fixed, per_token = memory_terms(cfg, trainable, total, arch)
    rows = cfg.train.batch_size
    return fixed + per_token * rows * longest + attention_gib(cfg, arch, rows, longest)


def attention_gib(cfg: RunConfig, arch: Any, rows: int, longest: int) -> float:
    """GiB of attention probabilities kept for backward by attention.py's matrix path (CPU, bf16 autocast, batches
    small enough); SDPA, which the GPU and long rows use, keeps nothing quadratic. Checkpointed layers keep one."""
    if _cuda() or runtime.choose_precision(cfg.train.precision) != "bf16":
        return 0.0
    kept = attention.kept_bytes(arch, rows, longest)
    if cfg.train.gradient_checkpointing:
        kept //= getattr(arch, "num_hidden_layers", 12)
    return kept * ALLOCATOR * RUN_CREEP / 2**30


def memory_budget(cfg: RunConfig) -> tuple[float, str]:
    """(GiB the run may use, where that number came from): train.memory_gib, else what the machine has free."""
    if cfg.train.memory_gib is not None:
        return cfg.train.memory_gib, "train.memory_gib"
    available, source = runtime.available_memory_bytes()
    return available / 2**30, source


def max_tokens_per_row(cfg: RunConfig, budget_gib: float | None = None) -> int:
    """The longest row that trains within the memory budget at one row per step (with gradient checkpointing
    unless the user turned it off); template.max_length auto is capped by it. 0 when the model alone is too big.
    """
    budget = memory_budget(cfg)[0] if budget_gib is None else budget_gib
    t = cfg.train
    gc = t.gradient_checkpointing if "gradient_checkpointing" in t.model_fields_set else True
    trainable, total, arch = parameter_counts(cfg)
    fixed, per_token = memory_terms(_with(cfg, gradient_checkpointing=gc), trainable, total, arch)
    return max(int((budget - fixed) / per_token), 0)


def _with(cfg: RunConfig, **train: Any) -> RunConfig:
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=train)})


def fit_memory(cfg: RunConfig, train_ex: list[Example], eval_ex: list[Example]) -> tuple[RunConfig, list[str]]:
    """Fit the run into the memory budget before any weights load; returns (config to train with, plan lines).

    When the estimate exceeds the budget (train.memory_gib, else the machine's free memory), the knobs the user
    did not set change, in this order: rows per step from a token budget (budget tokens / longest row),
    grad_accum raised to keep the effective batch, then gradient checkpointing. Knobs set by the user are kept,
    with a warning when they cannot fit. When nothing fits (one row per step, checkpointed), a TunesmithError
    names the numbers and the options. Eval batches need less (no backward) and are not fitted.

    >>> cfg, lines = fit_memory(cfg, train_ex, eval_ex)  # doctest: +SKIP
    """
    t = cfg.train
    budget, source = memory_budget(cfg)
    trainable, total, arch = parameter_counts(cfg)
    longest = max(len(e.input_ids) for e in train_ex)
    asked = estimate_memory_gib(cfg, trainable, total, arch, longest)
    if asked <= budget:
        return cfg, []
    mine = t.model_fields_set
    need = (f"batch {t.batch_size} x {longest} tokens{' (checkpointed)' if t.gradient_checkpointing else ''} "
            f"needs ~{asked:.1f} GiB, {budget:.1f} GiB available ({source})")
    floor_fixed, floor_per_token = memory_terms(_with(cfg, gradient_checkpointing=True), trainable, total, arch)
    if floor_fixed + floor_per_token * longest > budget:
        raise _nothing_fits(cfg, train_ex, need, budget, floor_fixed, floor_per_token)
    checkpointing = [t.gradient_checkpointing] if "gradient_checkpointing" in mine else [False, True]
    for gc in checkpointing:
        with_gc = _with(cfg, gradient_checkpointing=gc)
        fixed, per_token = memory_terms(with_gc, trainable, total, arch)
        rows = min(int((budget - fixed) / per_token) // longest, t.batch_size)
        while rows > 1 and estimate_memory_gib(_with(with_gc, batch_size=rows), trainable, total, arch,
                                               longest) > budget:  # the attention term is not linear in rows
            rows -= 1
        if "batch_size" in mine and rows < t.batch_size or rows < 1:
            continue
        accum = t.grad_accum if "grad_accum" in mine else max(1, round(t.batch_size * t.grad_accum / rows))
        fitted = _with(cfg, batch_size=rows, grad_accum=accum, gradient_checkpointing=gc)
        effective, before = rows * accum, t.batch_size * t.grad_accum
        kept = f"effective batch {effective} kept" if effective == before else \
            f"effective batch {effective}, {before} asked: grad_accum is yours" if "grad_accum" in mine else \
            f"effective batch {effective}, the nearest to {before}"
        return fitted, [f"memory: {need}: {rows} row{'s' * (rows > 1)} per step x {accum} accumulation ({kept})"
                        + (f", gradient checkpointing on (~{2 / (6 if t.method == 'full' else 4):.0%} more compute)"
                           if gc and not t.gradient_checkpointing else "")
                        + f" -> ~{estimate_memory_gib(fitted, trainable, total, arch, longest):.1f} GiB (rows per "
                          f"step from a budget of {int((budget - fixed) / per_token)} tokens)"]
    yours = ", ".join(f"train.{k}={getattr(t, k)}" for k in ("batch_size", "gradient_checkpointing") if k in mine)
    return cfg, [f"warning: memory: {need}, and {yours} set by you keep it there; training will likely run out "
                 "of memory. Leave them unset for tunesmith to fit them, or set train.memory_gib if more will be "
                 "free when training runs"]


def _nothing_fits(cfg: RunConfig, train_ex: list[Example], need: str, budget: float, fixed: float,
                  per_token: float) -> TunesmithError:
    """The error when one checkpointed row per step is still over budget: the numbers and the options."""
    fits = int((budget - fixed) / per_token) // 16 * 16  # tokens of one checkpointed row that fit
    longest = max(len(e.input_ids) for e in train_ex)
    longer = sum(len(e.input_ids) > fits for e in train_ex)
    options = []
    if fits >= 64:
        options.append(f"--set template.max_length={fits}: rows up to {fits} tokens fit ({longer} of "
                       f"{len(train_ex)} training rows are longer: dropped, or cut with template.overflow=truncate)")
    options.append(f"a smaller model (--model): the weights, optimizer state and runtime alone take ~{fixed:.1f} GiB"
                   + ("; or train.method=lora instead of full" if cfg.train.method == "full" else ""))
    options.append("free memory (close other programs), or --set train.memory_gib=N if more will be free when "
                   "training runs")
    return TunesmithError(
        f"training does not fit in memory: {need}", where="plan",
        problems=[f"even 1 row per step with gradient checkpointing needs ~{fixed + per_token * longest:.1f} GiB",
                  *options], fix=options[0].split(":")[0])


def estimate_seconds(cfg: RunConfig, total: int, arch: Any, train: Sequence[int], eval_lengths: Sequence[int],
                     evals: int, prompts: Sequence[int], reference: Sequence[int] = ()) -> float | None:
    """Training + eval-loss passes + two generation passes, on rows of these lengths in tokens; None on a GPU.

    `train` holds each trained row once per epoch; `prompts` the generation prompts' lengths (each is
    prefilled once per model, then max_new_tokens are generated); `reference` the rows a preference objective's
    reference model scores once before training.
    """
    import torch

    if torch.cuda.is_available():
        return None
    cores = max(os.cpu_count() or 2, 1)
    fast = runtime.choose_precision(cfg.train.precision) == "bf16" and runtime.tcmalloc_library() is not None
    flops = CPU_FLOPS_PER_CORE["fast" if fast else "slow"] * cores
    # Forward FLOPs of a row of n tokens: 2 per parameter per token, plus causal attention (QK^T and AV over
    # the earlier positions: 2 n^2 d per layer). Backward: the parameters' part once more for LoRA (activation
    # gradients only; the adapters' own gradients are negligible), twice for full fine-tuning; attention's part
    # twice (gradients for Q, K and V). Gradient checkpointing runs the forward once more. The attention term is
    # what made a 16-row run of ~3,300-token Korean prompts take 31 min where the estimate without it said 23.
    attn = 2 * getattr(arch, "hidden_size", 768) * getattr(arch, "num_hidden_layers", 12)
    again = 1 if cfg.train.gradient_checkpointing else 0
    params = (2 if cfg.train.method == "lora" else 3) + again
    train_s = sum(params * 2 * total * n + (3 + again) * attn * n * n for n in train) / flops
    # the reference pass (dpo, kto): each row once, forward only
    train_s += sum(2 * total * n + attn * n * n for n in reference) / flops
    eval_s = evals * sum(2 * total * n + attn * n * n for n in eval_lengths) / flops
    prefill_s = 2 * sum(2 * total * n + attn * n * n for n in prompts) / (CPU_PREFILL_FLOPS_PER_CORE * cores)
    gen_s = 2 * decode_seconds(cfg, total, arch, prompts)
    # Then each model scores the references (an fp32 forward over the eval rows: the demo's 6,557 tokens took
    # 11-13 s a model) and runs the retention check (~17 s a model on the demo in fp32: see retention_seconds).
    nll_s = 2 * sum(2 * total * n + attn * n * n for n in eval_lengths) / (CPU_PREFILL_FLOPS_PER_CORE * cores)
    evaluation = (prefill_s + gen_s + nll_s) / eval_speedup(cfg) + 2 * retention_seconds(cfg, total, cores)
    return train_s + eval_s + evaluation


def eval_speedup(cfg: RunConfig) -> float:
    """How much faster than the fp32 rates above evaluation runs in the dtype eval.precision resolves to."""
    return HALF_EVAL_SPEEDUP if runtime.choose_precision(cfg.eval.precision) != "fp32" else 1.0


# The retention set (retention.py) in SmolLM2's tokens: 16 passages (4,106) and 12 prompts with their reference
# answers (~450), then 12 greedy answers of up to retention.ANSWER_TOKENS in one batch.
RETENTION_TOKENS = 4_550


def retention_seconds(cfg: RunConfig, total: int, cores: int) -> float:
    """One model's retention check on a CPU: a forward over the set, then the answers' decoding (fp32 rates,
    divided by eval_speedup)."""
    from tunesmith.retention import ANSWER_TOKENS, AUTO_MAX_PARAMETERS

    if cfg.eval.retention == "off" or (cfg.eval.retention == "auto" and total > AUTO_MAX_PARAMETERS):
        return 0.0
    return (2 * total * RETENTION_TOKENS / (CPU_PREFILL_FLOPS_PER_CORE * cores)
            + ANSWER_TOKENS * 4 * total / CPU_DECODE_BYTES_PER_S) / eval_speedup(cfg)


def decode_seconds(cfg: RunConfig, total: int, arch: Any, prompts: Sequence[int]) -> float:
    """Decoding time of one model: eval's batches (generation.token_batches), max_new_tokens steps each, each step
    reading the fp32 weights and the batch's KV caches."""
    from tunesmith.generation import token_batches

    heads = getattr(arch, "num_attention_heads", 12)
    kv = getattr(arch, "num_key_value_heads", None) or heads
    kv_bytes = 2 * getattr(arch, "num_hidden_layers", 12) * kv * getattr(arch, "hidden_size", 768) // heads * 4
    ordered = sorted(prompts)
    steps_bytes = sum(4 * total + sum(kv_bytes * ordered[i] for i in batch)
                      for batch in token_batches(ordered, cfg.eval.batch_size))
    return cfg.eval.max_new_tokens * steps_bytes / CPU_DECODE_BYTES_PER_S


def run_seconds(cfg: RunConfig, train_ex: list[Example], eval_ex: list[Example], total: int, arch: Any
                ) -> float | None:
    """estimate_seconds for these examples under this config (steps, epochs and eval passes counted as trained)."""
    t = cfg.train
    per_epoch, total_steps = train.steps(len(train_ex), cfg)
    epochs = total_steps / per_epoch
    evals = 1 + (math.ceil(epochs) if t.eval_strategy == "epoch" else math.ceil(total_steps / t.eval_steps))
    # A fractional epoch trains that share of the rows (the same share of each length, near enough).
    trained = [len(e.input_ids) for e in train_ex] * math.floor(epochs)
    trained += [len(e.input_ids) for e in train_ex][: round((epochs % 1) * len(train_ex))]
    prompts = [len(e.input_ids) - e.supervised_tokens for e in eval_ex[: cfg.eval.max_rows]]
    reference = [len(e.input_ids) for e in (*train_ex, *eval_ex)] if t.objective in REFERENCE_OBJECTIVES else []
    return estimate_seconds(cfg, total, arch, trained, [len(e.input_ids) for e in eval_ex], evals, prompts,
                            reference)


# Past half an hour (issue 12) the plan says which knobs cut the time and by how much.
LONG_RUN_S = 30 * 60
ROW_LIMIT = 200


def time_knobs(cfg: RunConfig, train_ex: list[Example], eval_ex: list[Example], total: int, arch: Any
               ) -> list[str]:
    """Plan lines for a long run: each knob that cuts the time, with the time estimated again under it."""
    now = run_seconds(cfg, train_ex, eval_ex, total, arch)
    if now is None or now <= LONG_RUN_S:
        return []
    knobs: list[tuple[str, RunConfig, list[Example]]] = []
    if len(train_ex) > ROW_LIMIT:  # data.max_rows applies after the split: the first rows of the shuffled train
        knobs.append((f"--set data.max_rows={ROW_LIMIT} (train on {ROW_LIMIT} of {len(train_ex)} rows)", cfg,
                      train_ex[:ROW_LIMIT]))
    t = cfg.train
    if t.max_steps > 0 and t.max_steps > 1:
        knobs.append((f"--set train.max_steps={t.max_steps // 2}", _with(cfg, max_steps=t.max_steps // 2), train_ex))
    elif t.max_steps <= 0 and t.epochs > 1:
        knobs.append(("--set train.epochs=1", _with(cfg, epochs=1), train_ex))
    lengths = sorted(len(e.input_ids) for e in train_ex)
    shorter = math.ceil(lengths[len(lengths) // 2] / 64) * 64  # the median row, rounded up to 64
    if shorter < lengths[-1]:
        longer = sum(n > shorter for n in lengths)
        if cfg.template.overflow == "drop":
            kept, what = [e for e in train_ex if len(e.input_ids) <= shorter], "dropped"
        else:  # truncate: each longer row is cut to the limit (its prompt; the answer is kept)
            kept, what = [_cut(e, shorter) for e in train_ex], "cut to fit"
        knobs.append((f"--set template.max_length={shorter} ({longer} of {len(lengths)} rows are longer: {what})",
                      cfg, kept))
    lines = [f"time: ~{duration(now)} is long; each of these cuts it (estimated again with it):"]
    for knob, knob_cfg, rows in knobs:
        after = run_seconds(knob_cfg, rows, eval_ex, total, arch) or now
        lines.append(f"time: {knob} -> ~{duration(after)} ({1 - after / now:.0%} less)")
    return lines


def _cut(example: Example, length: int) -> Example:
    """An example of at most `length` tokens, for time estimates only (only its length is read)."""
    return dataclasses.replace(example, input_ids=example.input_ids[:length], labels=example.labels[:length])


def duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _why_not(data: PreparedData) -> str:
    """': 64 left out by data.max_rows, 1 longer than template.max_length' for the rows line."""
    kinds = Counter(s.kind for s in data.dropped)
    return (": " + ", ".join(f"{n} {SKIP_KINDS.get(k, k)}" for k, n in kinds.most_common())) if kinds else ""


def describe(cfg: RunConfig, data: PreparedData, train_ex: list[Example], eval_ex: list[Example]) -> list[str]:
    """The plan as lines of text; raises the errors training would (a QLoRA on a CPU, a misnamed LoRA target)."""
    t = cfg.train
    models.quantization_config(t.load_in)  # `plan --load-4bit` refuses where `train --load-4bit` would
    per_epoch, total_steps = train.steps(len(train_ex), cfg)
    epochs = total_steps / per_epoch
    tokens = sum(len(e.input_ids) for e in train_ex)
    supervised = sum(e.supervised_tokens for e in train_ex)
    trainable, total, arch = parameter_counts(cfg)
    longest = max(len(e.input_ids) for e in train_ex)
    effective = t.batch_size * t.grad_accum * runtime.world_size()
    eval_rows = min(len(data.eval), cfg.eval.max_rows)
    seconds = run_seconds(cfg, train_ex, eval_ex, total, arch)
    budget, source = memory_budget(cfg)
    if runtime.tcmalloc_preloaded():
        allocator = "tcmalloc"
    elif runtime.training_allocator() == "tcmalloc":
        allocator = "tcmalloc (train preloads it)"
    elif runtime.tcmalloc_library():
        allocator = "glibc (TUNESMITH_NO_TCMALLOC is set; the memory estimate counts glibc's higher peak)"
    else:
        allocator = ("glibc (apt-get install libgoogle-perftools4 for ~1.5x on CPU and a 1.7x lower per-token "
                     "peak; the memory estimate counts glibc's)")
    method = {"full": "full fine-tuning"}.get(t.method, "QLoRA" if t.load_in == "4bit" else "LoRA")
    lc = cfg.lora
    adapter = (f"r={lc.r}, alpha={lc.alpha}, dropout={lc.dropout}, targets={lc.target_modules}"
               + (", DoRA" if lc.dora else "") + (", rsLoRA" if lc.rslora else "")) if t.method == "lora" else ""
    guard = (f"eval loss every {'epoch' if t.eval_strategy == 'epoch' else f'{t.eval_steps} steps'} and at step 0, "
             f"a checkpoint at each; " + (f"early stopping after {t.early_stopping_patience} evals without a lower "
                                          "eval loss; " if t.early_stopping_patience else "no early stopping; ")
             + ("ends on the best checkpoint" if t.load_best else "ends on the last step"))
    device = "CUDA GPU" if _cuda() else f"CPU ({os.cpu_count()} cores)"
    lines = [
        f"model: {cfg.model} -> {models.location(cfg.model)} ({arch.model_type}, {total / 1e6:.1f}M parameters)"
        + (f"; continuing from {cfg.continue_from}" if cfg.continue_from else ""),
        f"rows: {len(train_ex)} train, {len(eval_ex)} eval (read {data.rows_read}: {len(data.skipped)} skipped, "
        f"{len(data.duplicates)} duplicates, {len(data.dropped)} not trained{_why_not(data)})",
        f"tokens: {tokens} per epoch, {supervised} of them supervised (the loss is computed on those only)",
        f"steps: {per_epoch} per epoch, {total_steps} in total ({epochs:g} epoch{'' if epochs == 1 else 's'}); "
        f"effective batch {effective} = "
        f"{t.batch_size} rows x {t.grad_accum} accumulation x {runtime.world_size()} process(es)",
        f"method: {method}; {adapter + '; ' if adapter else ''}trainable {trainable:,} of {total:,} parameters "
        f"({100 * trainable / total:.2f}%)",
        f"optimizer: {t.optimizer}, lr {t.learning_rate} ({t.lr_scheduler}, warmup {t.warmup_ratio:.0%}), weight "
        f"decay {t.weight_decay}, grad clip {t.max_grad_norm or 'off'}, seed {t.seed}",
        f"guard rails: {guard}",
        f"precision: {runtime.precision_reason(t.precision)}; device: {device}; allocator: {allocator}",
        f"estimated peak memory: ~{estimate_memory_gib(cfg, trainable, total, arch, longest):.1f} GiB of "
        f"{budget:.1f} GiB available ({source}); longest row {longest} tokens x batch {t.batch_size}"
        f"{', checkpointed' if t.gradient_checkpointing else ''} ("
        + ("the GPU's peak allocated memory: -5% to +8% on an H100 at 135M; larger models not yet measured"
           if _cuda() else
           "a whole run's peak RSS: +5% to +36% on docs/memory.md's shapes; sized for a step of the longest "
           "rows, which random batches of mixed lengths rarely draw") + ")",
        "estimated time: " + (f"~{duration(seconds)} for training, eval-loss passes, 2 x {eval_rows} "
                              "generations and their scoring (calibrated on this project's 2-core CPU; rough)"
                              if seconds is not None
                              else "not estimated on GPU (the estimate is calibrated for CPUs)"),
        f"generation eval: {eval_rows} rows, up to {cfg.eval.max_new_tokens} new tokens, greedy",
        f"output: {cfg.output_dir / cfg.name}",
        *([_step_line(cfg, trainable)] if t.objective == "sft" else []),  # prefplan.objective_line otherwise
    ]
    return lines + time_knobs(cfg, train_ex, eval_ex, total, arch)


def _step_line(cfg: RunConfig, trainable: int) -> str:
    t = cfg.train
    grouped = runtime.choose_group_by_length(t.group_by_length, t.padding_free, t.precision)
    return (f"each optimizer step: (1) take a batch of rows {'of similar length' if grouped else 'drawn at random'}, "
            + ("joined into one sequence (padding-free; attention stays within each row)"
               if runtime.choose_padding_free(t.padding_free, t.precision) else "padded to the longest")
            + "; (2) forward pass over every position, logits only where the loss is computed (TRL's fused LM "
            "head); (3) loss = cross-entropy on supervised tokens only (prompt tokens carry label -100); "
            f"(4) backward: gradients for the {trainable:,} trainable parameters"
            + (f", summed over {t.grad_accum} batches" if t.grad_accum > 1 else "")
            + f"; (5) clip the gradient norm, {t.optimizer} updates the weights, the {t.lr_scheduler} scheduler "
              "sets the next learning rate")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
