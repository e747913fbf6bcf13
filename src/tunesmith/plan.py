"""What training will do, before it does it: printed by `tunesmith plan` and at the start of `train`.

Counts are exact (rows, tokens, steps, parameters); memory and time are estimates from the architecture and
throughput measured on this project's machines, labelled as such.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

from tunesmith import models, runtime, train
from tunesmith.config import RunConfig
from tunesmith.records import Example, PreparedData

# Effective training throughput measured with `make demo` (SmolLM2-135M LoRA on 2 Sapphire Rapids cores):
# ~210 real tokens/s with bf16 autocast + tcmalloc, ~140 without tcmalloc, at ~4 FLOPs per parameter per token.
CPU_FLOPS_PER_CORE = {"fast": 4 * 135e6 * 210 / 2, "slow": 4 * 135e6 * 140 / 2}
# Batched greedy generation measured ~100 new tokens/s (batch 8) for the same 135M model on 2 cores.
CPU_GEN_PARAM_TOKENS_PER_CORE = 135e6 * 100 / 2


def parameter_counts(cfg: RunConfig) -> tuple[int, int, Any]:
    """(trainable, total, architecture config), counted on an empty (meta-device) model: no weights load."""
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


def estimate_memory_gib(cfg: RunConfig, trainable: int, total: int, arch: Any, longest: int) -> float:
    """Peak training memory (process RSS): weights, gradients + AdamW state of trainable weights, activations,
    logits, with allocator headroom.

    Calibrated on the demo (SmolLM2-135M, batch 8 x 326 tokens, bf16 autocast, tcmalloc): measured peak RSS
    8.2 GiB during training, estimated 7.5 GiB. Logits dominate small models with large vocabularies: TRL keeps
    about six fp32 copies (upcast, log-softmax, entropy, token accuracy, gradients).
    """
    t = cfg.train
    weight_bytes = {"none": 4, "8bit": 1, "4bit": 0.55}[t.load_in]
    scale = 1.0 if runtime.choose_precision(t.precision) == "fp32" else 0.65  # half-precision matmul inputs
    hidden = getattr(arch, "hidden_size", 768)
    layers = getattr(arch, "num_hidden_layers", 12)
    tokens = t.batch_size * longest
    # ~70 bytes per hidden unit per layer kept for backward (attention, MLP intermediates, norms) in fp32;
    # gradient checkpointing keeps only each layer's input.
    per_layer = (4 if t.gradient_checkpointing else 70 * scale) * hidden
    logits = tokens * getattr(arch, "vocab_size", 32000) * 4 * 6
    tensors = total * weight_bytes + trainable * (4 + 8) + tokens * layers * per_layer + logits
    return (tensors * 1.25 + 0.8 * 2**30) / 2**30  # allocator headroom + the Python/torch runtime


def estimate_seconds(cfg: RunConfig, trainable: int, total: int, train_tokens: int, eval_tokens: int,
                     evals: int, eval_rows: int) -> float | None:
    """Training + eval-loss passes + two generation passes; None on a GPU (not calibrated there)."""
    import torch

    if torch.cuda.is_available():
        return None
    cores = max(os.cpu_count() or 2, 1)
    fast = runtime.choose_precision(cfg.train.precision) == "bf16" and runtime.tcmalloc_library() is not None
    flops = CPU_FLOPS_PER_CORE["fast" if fast else "slow"] * cores
    per_token = (6 if cfg.train.method == "full" else 4) * total
    train_s = train_tokens * per_token / flops
    eval_s = evals * eval_tokens * 2 * total / flops
    gen_s = 2 * eval_rows * cfg.eval.max_new_tokens * total / (CPU_GEN_PARAM_TOKENS_PER_CORE * cores)
    return train_s + eval_s + gen_s


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


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
    evals = 1 + (math.ceil(epochs) if t.eval_strategy == "epoch" else math.ceil(total_steps / t.eval_steps))
    eval_rows = min(len(data.eval), cfg.eval.max_rows)
    seconds = estimate_seconds(cfg, trainable, total, int(tokens * epochs),
                               sum(len(e.input_ids) for e in eval_ex), evals, eval_rows)
    if runtime.tcmalloc_preloaded():
        allocator = "tcmalloc"
    elif runtime.tcmalloc_library():
        allocator = "tcmalloc (train preloads it)"
    else:
        allocator = "glibc (apt-get install libgoogle-perftools4 for ~1.5x on CPU)"
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
        f"model: {cfg.model} -> {models.resolve(cfg.model)} ({arch.model_type}, {total / 1e6:.1f}M parameters)"
        + (f"; continuing from {cfg.continue_from}" if cfg.continue_from else ""),
        f"rows: {len(train_ex)} train, {len(eval_ex)} eval (read {data.rows_read}: {len(data.skipped)} skipped, "
        f"{len(data.duplicates)} duplicates, {len(data.dropped)} not trained after templating)",
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
        f"estimated peak memory: ~{estimate_memory_gib(cfg, trainable, total, arch, longest):.1f} GiB (longest "
        f"row {longest} tokens x batch {t.batch_size}; rough)",
        "estimated time: " + (f"~{_duration(seconds)} for training, eval-loss passes and 2 x {eval_rows} "
                              "generations (calibrated on this project's 2-core CPU; rough)" if seconds is not None
                              else "not estimated on GPU (the estimate is calibrated for CPUs)"),
        f"generation eval: {eval_rows} rows, up to {cfg.eval.max_new_tokens} new tokens, greedy",
        f"output: {cfg.output_dir / cfg.name}",
        "each optimizer step: (1) take a batch of rows padded to the longest; (2) forward pass: logits for every "
        "position; (3) loss = cross-entropy on supervised tokens only (prompt tokens carry label -100); "
        f"(4) backward: gradients for the {trainable:,} trainable parameters"
        + (f", summed over {t.grad_accum} batches" if t.grad_accum > 1 else "")
        + f"; (5) clip the gradient norm, {t.optimizer} updates the weights, the {t.lr_scheduler} scheduler sets "
          "the next learning rate",
    ]
    return lines


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
