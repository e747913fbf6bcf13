"""Training memory before any weights load: the peak a run will reach, and the run fitted into what the machine has.

The peak is weights + optimizer state (+ the runtime on a CPU) and what a step keeps for backward: per token, as
measured on SmolLM2-135M and scaled to other layer shapes by the bytes autograd saves (counted, not guessed), plus
the attention probabilities the CPU's matrix path keeps. The plan shows the largest batch this run will draw
(train.drawn_batches); fit_memory sizes for the worst case, the `batch_size` longest rows together. Calibration and
errors: docs/memory.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from tunesmith import attention, fastpath, graphs, models, runtime, train
from tunesmith.config import RunConfig
from tunesmith.errors import TunesmithError
from tunesmith.records import Example

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
# (estimate 2.72 GiB; fitted on that one shape, not held out).
# fp32 (no autocast, rows padded and length-grouped on a CPU): the saved bytes counted below, 95 at 135M's shape
# (55 x 89.81 / 51.82 per hidden unit), with GROUPED_CREEP: bench/memory_estimate.py, 8 x 95, 6 x 496 and 4 x 1023
# tokens, 2.68, 7.46 and 8.58 GiB measured, +20%, +5%, +18% estimated (it was 85, a guess, then 75 fitted on these
# three with bf16's random-batch creep: +17%, +0%, +13%). fp32 with padding-free rows in random batches (every fp32
# run since session 26; RUN_CREEP) keeps 54-92 of those bytes by the peaks, more the more of a batch is supervised:
# bench/memory_estimate.py on an AVX2-only EPYC (2026-12-08): chat 8 x 95 2.64 GiB measured (54), the demo 4.68 (66),
# long Korean prompts with one-line answers 4 x 1023 7.14 (62), multi-turn 6 x 496 7.36 (77), and a real therapist
# file, 74% of its tokens supervised, 11.73 over 8 steps (92). 95 stays: +2% on the last, +18% to +40% on the others;
# a figure per supervised token is what a closer fit needs.
PER_TOKEN_BYTES = {"half": 55, "fp32": 95}
# Bytes a decoder layer keeps for backward per token (LoRA r16 on every linear), counted with autograd's saved-tensor
# hooks (bench/saved_activations.py, bench/results/saved_activations_2026-12-06.json) on six shapes, SmolLM2-135M to
# a Gemma-2B-like MLP: (per hidden unit, per MLP unit, per key/value unit, per attention head, constant), fitted by
# least squares; "gpu" is exact on all six and on the tests' held-out 64-wide Llama, "cpu" and "fp32" (whose cheap
# dropout keeps a random number of positions) within 4 bytes of ~30,000-360,000. "gpu": bf16 autocast with CUDA's
# fused dropout (a bool mask); "cpu": train's bf16 step on a CPU (attention probabilities apart); "fp32": train's step
# on a CPU without bf16. A layer is not 135M's scaled by its width: SmolLM2-1.7B's MLP is 4x its hidden size (135M's
# 2.67x), so it keeps 71.6 bytes per hidden unit to 135M's 56.9 (gpu); Qwen2.5-0.5B's (5.4x) 81.4.
SAVED_PER_TOKEN = {"gpu": (30.5625, 9.1875, 4.125, 4.0, 232.0), "cpu": (26.985, 8.592, 4.124, 0.856, 312.8),
                   "fp32": (42.4224, 16.4045, 7.9992, 4.8559, 520.8)}
# SmolLM2-135M's layer (hidden, MLP, key/value, heads): where PER_TOKEN_BYTES were measured
MEASURED_SHAPE = (576, 1536, 192, 9)
CHECKPOINTED_BYTES = 7
# A CPU process's RSS for Python and its libraries (on CUDA they are not in the GPU's memory). It was fitted as 1.32
# while 0.36 GiB of the memory-mapped weight file stayed resident after fastpath.frozen_to_half (0.31-0.39 lower on
# the four shapes of bench/memory_estimate.py once the mapping went): 1.32 - 0.36.
RUNTIME_GIB = 0.96
# On CUDA the estimate is the GPU's peak allocated memory: the same terms without RUNTIME_GIB (and without RUN_CREEP:
# the caching allocator reuses its blocks). Held out against the H100 run (bench/results/gpu_contestants_h100.json,
# SmolLM2-135M's shape, 12 demo / 6 long-prompt steps): 3.33 and 4.89 GiB estimated, 3.33 and 5.13 measured with
# packed rows, 3.11 and 4.54 padded (-5% to +8%; with RUNTIME_GIB counted it said 4.65 and 6.21, +21% to +50%).
ALLOCATOR = 1.25  # allocator headroom over the tensors' own size
# Over a run, peak RSS creeps above the first steps' peak and then stays: batches of changing shapes leave the freed
# activations of earlier ones in the allocator's caches. bench/memory_estimate.py --steps 40 (3 steps before):
# chat 2.3 -> 2.9 GiB, multi-turn 5.8 -> 6.8; the demo (8 x 326) 5.06 GiB after step 1, 6.02 at step 50, 6.12 at 120.
# The batch-dependent part of the estimate (activations, kept attention) of a run of random batches is scaled by
# RUN_CREEP (CPU; the GPU's caching allocator is not measured).
RUN_CREEP = 1.3
# Length-grouped batches (padded rows: train.padding_free off) draw their longest batch first, and
# later steps mostly fit in what it left: 1.08, the least that keeps six grouped shapes at or above their peaks
# (bench/memory_estimate.py --steps 40, bf16 padded: chat 2.25, multi-turn 5.93, long Korean 5.91 GiB measured, +5%,
# +1%, +7% estimated, where 1.3 said +14%, +16%, +23%; and the three fp32 shapes above). Fitted, not held out.
GROUPED_CREEP = 1.08
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

    arch = models.model_config(cfg.model)
    model = models.empty_model(arch)
    total = sum(p.numel() for p in model.parameters())
    if cfg.train.method == "full":
        return total, total, arch
    from peft import get_peft_model

    models.check_target_modules(model, cfg.lora)  # PEFT would fail with a traceback, or skip a typo
    with torch.device("meta"), warnings.catch_warnings():  # the adapters' weights on the meta device too
        warnings.simplefilter("ignore", FutureWarning)  # peft calls a deprecated transformers helper
        peft = get_peft_model(model, train.peft_config(cfg))
    return sum(p.numel() for p in peft.parameters() if p.requires_grad), total, arch


def memory_terms(cfg: RunConfig, trainable: int, total: int, arch: Any, *, frozen_half: bool = True
                 ) -> tuple[float, float]:
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
    # Bytes kept per hidden unit per layer for backward (attention, MLP intermediates, LoRA dropout copies), as
    # measured at 135M and scaled to this shape; gradient checkpointing keeps less and recomputes one layer at a
    # time in backward.
    layer = PER_TOKEN_BYTES["half" if half else "fp32"] * width_factor(arch, _path(half))
    per_layer = CHECKPOINTED_BYTES if t.gradient_checkpointing else layer
    per_token = layers * hidden * per_layer + (hidden * layer if t.gradient_checkpointing else 0)  # the one recomputed
    if frozen_half and fastpath.frozen_dtype(cfg):
        # fastpath.frozen_to_half: the frozen linear weights are kept in bf16/fp16; embeddings (vocabulary x hidden)
        # in fp32
        embeddings = getattr(arch, "vocab_size", 0) * hidden
        fixed = embeddings * 4 + (total - embeddings) * 2 + trainable * (4 + 8)
    else:
        fixed = total * weight_bytes + trainable * (4 + 8)
    if cuda():  # the GPU's memory: no Python/library RSS, no CPU allocator creep
        runtime_gib = 0.0
    else:
        runtime_gib, per_token = RUNTIME_GIB, per_token * _creep(cfg)
    return (fixed * ALLOCATOR + runtime_gib * 2**30) / 2**30, per_token * ALLOCATOR / 2**30


def _path(half: bool) -> str:
    return "gpu" if half and cuda() else "cpu" if half else "fp32"


def layer_shape(arch: Any) -> tuple[int, int, int, int]:
    """(hidden, MLP, key/value, heads) widths of a decoder layer, from its config."""
    hidden = getattr(arch, "hidden_size", 768)
    heads = getattr(arch, "num_attention_heads", 12)
    head_dim = getattr(arch, "head_dim", None) or hidden // heads
    mlp = getattr(arch, "intermediate_size", None) or 4 * hidden
    return hidden, mlp, (getattr(arch, "num_key_value_heads", None) or heads) * head_dim, heads


def saved_per_token(shape: tuple[int, int, int, int], path: str) -> float:
    """Bytes a decoder layer of this (hidden, MLP, key/value, heads) shape keeps for backward per token."""
    per_hidden, per_mlp, per_kv, per_head, constant = SAVED_PER_TOKEN[path]
    hidden, mlp, kv, heads = shape
    return per_hidden * hidden + per_mlp * mlp + per_kv * kv + per_head * heads + constant


def width_factor(arch: Any, path: str) -> float:
    """What a layer of this shape keeps per hidden unit over what SmolLM2-135M's does (1.0 for it): the measured
    PER_TOKEN_BYTES scaled to another model's MLP and attention widths."""
    shape = layer_shape(arch)
    return (saved_per_token(shape, path) / shape[0]) / (saved_per_token(MEASURED_SHAPE, path) / MEASURED_SHAPE[0])


def _creep(cfg: RunConfig) -> float:
    """How much the batch-dependent memory grows over a CPU run (run_creep), and glibc's higher per-token peak where
    train will not have tcmalloc (the allocator it will really have, not the one it would prefer)."""
    return run_creep(cfg) * (GLIBC_PER_TOKEN if runtime.training_allocator() == "glibc" else 1.0)


def run_creep(cfg: RunConfig) -> float:
    """RUN_CREEP for random batches, GROUPED_CREEP for length-grouped ones (the run's sampler, as train draws it)."""
    return GROUPED_CREEP if train.grouped_batches(cfg) else RUN_CREEP


def estimate_memory_gib(cfg: RunConfig, trainable: int, total: int, arch: Any, longest: int) -> float:
    """Peak training memory (process RSS; on CUDA the GPU's allocated peak) for batches of `cfg.train.batch_size`
    rows of `longest` tokens: the worst step any draw of the rows can make, what the memory fit sizes for.

    >>> estimate_memory_gib(cfg, *parameter_counts(cfg), longest=1024)  # doctest: +SKIP
    5.1
    """
    fixed, per_token = memory_terms(cfg, trainable, total, arch)
    return fixed + step_gib(cfg, arch, per_token, (longest,) * cfg.train.batch_size)


def drawn_memory_gib(cfg: RunConfig, trainable: int, total: int, arch: Any, lengths: Sequence[int]
                     ) -> tuple[float, tuple[int, ...]]:
    """(peak training memory of this run, the row lengths of the batch that needs it): the largest step among the
    batches the run will draw from rows of these lengths (train.drawn_batches: the same seed, the same sampler).
    Random batches of mixed lengths rarely draw the longest rows together: on the demo rows the largest of 46
    steps holds 1,750 tokens, the longest rows 8 x 326 = 2,608."""
    fixed, per_token = memory_terms(cfg, trainable, total, arch)
    seen: dict[tuple[int, ...], float] = {}
    for batch in train.drawn_batches(list(lengths), cfg):
        rows = tuple(sorted(batch))
        if rows not in seen:
            seen[rows] = step_gib(cfg, arch, per_token, rows)
    largest = max(seen, key=seen.__getitem__)
    return fixed + seen[largest], largest


def step_gib(cfg: RunConfig, arch: Any, per_token: float, lengths: tuple[int, ...]) -> float:
    """GiB one batch of rows of these lengths adds to the fixed part: activations for its tokens (step_tokens) and
    the attention probabilities kept for backward."""
    return per_token * step_tokens(cfg, lengths) + attention_gib(cfg, arch, lengths, train.padding_free(cfg))


def step_tokens(cfg: RunConfig, lengths: Sequence[int]) -> int:
    """Tokens a batch of rows of these lengths puts through the model: padding-free, the rows' own (under
    train.compile: graphs, padded to graphs.bucket_length); padded, rows x the longest."""
    if not train.padding_free(cfg):
        return len(lengths) * max(lengths)
    return graphs.bucket_length(sum(lengths)) if cfg.train.compile == "graphs" else sum(lengths)


def attention_gib(cfg: RunConfig, arch: Any, lengths: tuple[int, ...], packed: bool) -> float:
    """GiB of attention probabilities kept for backward by attention.py's matrix path (CPU, bf16 autocast, batches
    small enough; packed rows padded in length groups); SDPA, which the GPU and long rows use, keeps nothing
    quadratic (nor does varlen.py's kernel). Checkpointed layers keep one."""
    if cuda() or runtime.choose_precision(cfg.train.precision) != "bf16" or cfg.train.attention != "auto":
        return 0.0
    kept = (attention.kept_bytes_packed(arch, lengths) if packed
            else attention.kept_bytes(arch, len(lengths), max(lengths)))
    if cfg.train.gradient_checkpointing:
        kept //= getattr(arch, "num_hidden_layers", 12)
    return kept * ALLOCATOR * run_creep(cfg) / 2**30


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
    fixed, per_token = memory_terms(with_train(cfg, gradient_checkpointing=gc), trainable, total, arch)
    return max(int((budget - fixed) / per_token), 0)


def with_train(cfg: RunConfig, **train: Any) -> RunConfig:
    """`cfg` with these train settings changed."""
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
    floor_fixed, floor_per_token = memory_terms(with_train(cfg, gradient_checkpointing=True), trainable, total, arch)
    if floor_fixed + floor_per_token * longest > budget:
        raise _nothing_fits(cfg, train_ex, need, budget, floor_fixed, floor_per_token)
    checkpointing = [t.gradient_checkpointing] if "gradient_checkpointing" in mine else [False, True]
    for gc in checkpointing:
        with_gc = with_train(cfg, gradient_checkpointing=gc)
        fixed, per_token = memory_terms(with_gc, trainable, total, arch)
        rows = min(int((budget - fixed) / per_token) // longest, t.batch_size)
        while rows > 1 and estimate_memory_gib(with_train(with_gc, batch_size=rows), trainable, total, arch,
                                               longest) > budget:  # the attention term is not linear in rows
            rows -= 1
        if "batch_size" in mine and rows < t.batch_size or rows < 1:
            continue
        accum = t.grad_accum if "grad_accum" in mine else max(1, round(t.batch_size * t.grad_accum / rows))
        fitted = with_train(cfg, batch_size=rows, grad_accum=accum, gradient_checkpointing=gc)
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


def plan_line(cfg: RunConfig, train_ex: list[Example], budget: float, source: str) -> str:
    """The estimated peak: the largest batch this run draws, and the worst case (the longest rows together) the
    memory fit sizes for."""
    t = cfg.train
    trainable, total, arch = parameter_counts(cfg)
    longest = max(len(e.input_ids) for e in train_ex)
    peak, batch = drawn_memory_gib(cfg, trainable, total, arch, [len(e.input_ids) for e in train_ex])
    worst = estimate_memory_gib(cfg, trainable, total, arch, longest)
    return (f"estimated peak memory: ~{peak:.1f} GiB of {budget:.1f} GiB available ({source}): the largest batch "
            f"this run draws, {len(batch)} rows, {step_tokens(cfg, batch)} tokens"
            f"{' padded' * (not train.padding_free(cfg))} (up to {max(batch)} a row)"
            f"{', checkpointed' if t.gradient_checkpointing else ''}; the {t.batch_size} longest rows together "
            f"({longest} tokens) would need ~{worst:.1f}, what the memory fit sizes for ("
            + ("the GPU's peak allocated memory: -5% to +8% on an H100 at 135M; other shapes scaled by the bytes a "
               "layer keeps, not yet measured on a GPU" if cuda()
               else "a whole run's peak RSS: +5% to +18% on docs/memory.md's four shapes of random batches, +1% to "
               "+7% on three of padded bf16 rows, fp32 +5% to +20% on three padded, +2% to +40% on five of "
               "padding-free rows") + ")")


def grpo_memory_gib(cfg: RunConfig, prompt_lengths: Sequence[int]) -> tuple[float, int, int]:
    """(peak training memory of a grpo run, the rows a step puts through the model, their padded length): each
    step's batch_size prompts x grpo.generations answers, padded to the longest prompt and grpo.max_new_tokens, go
    through forward and backward together, with the frozen weights as loaded (grpo writes its answers outside
    autocast: run_trainer keeps them). TRL's GRPO loss asks the model for its fused LM head (fused_lm_head=True,
    trl 1.16), as SFT's does: no logits per token. Writing the answers needs less (a KV cache of the same rows, no
    activations kept for backward)."""
    g, t = cfg.grpo, cfg.train
    trainable, total, arch = parameter_counts(cfg)
    fixed, per_token = memory_terms(cfg, trainable, total, arch, frozen_half=False)
    rows, length = t.batch_size * g.generations, max(prompt_lengths, default=0) + g.max_new_tokens
    return (fixed + per_token * rows * length + attention_gib(cfg, arch, (length,) * rows, packed=False),
            rows, length)


def cuda() -> bool:
    """Whether training will run on a CUDA GPU (the estimate is then of the GPU's memory)."""
    import torch

    return torch.cuda.is_available()
