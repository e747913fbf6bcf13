"""What training will do, before it does it: printed by `tunesmith plan` and at the start of `train`.

Counts are exact (rows, tokens, steps, parameters); memory and time are estimates from the architecture and
throughput measured on this project's machines, labelled as such.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tunesmith import graphs, memory, models, rewards, runtime, train
from tunesmith.config import REFERENCE_OBJECTIVES, RunConfig
from tunesmith.records import SKIP_KINDS, Example, PreparedData

# The CPU rates are shares of this machine's own 2048^3 matmul rate (runtime.matmul_flops, measured once and kept),
# calibrated on two 2-vCPU machines: a Zen 4 with AVX512-BF16 (bf16 0.41 TFLOP/s, fp32 0.19) and an AVX2-only EPYC
# (fp32 0.10-0.14, bf16 emulated). FLOPs are counted as in estimate_seconds.
# Training, with tcmalloc and logits for answer tokens only:
# - bf16 autocast, frozen weights in bf16: 159 GFLOP/s training 16 Korean paragraphs of ~3,300 tokens (51.5 TFLOP
#   an epoch in 325 s) on the Zen 4: 0.39 of its bf16 rate;
# - fp32, padding-free rows: the demo's 34.7 TFLOP (2 epochs, 3 eval-loss passes) in 473 s on the AVX2 EPYC
#   (73 GFLOP/s at ~0.135): 0.54 of its fp32 rate (the Zen 4's fp32 figure, 106 GFLOP/s, was 0.56 of its own).
# Without tcmalloc: 2/3 of it (demo: 140 vs 210 tokens/s).
TRAIN_SHARE = {"bf16": 0.39, "fp32": 0.54}
NO_TCMALLOC = 2 / 3
# Generation prompts prefilled in fp32, one long prompt at a time: 4 Korean paragraphs of ~3,100 tokens took 29.6 s
# with 16 new tokens each, 4.7 TFLOP counted as below (Zen 4: 158 GFLOP/s, 0.83 of its fp32 rate).
PREFILL_SHARE = 0.83
# Decoding reads every fp32 weight once per new token of a batch, plus each row's KV cache (bytes counted as in
# decode_seconds): the demo's 2 x 45 answers of up to 144 tokens took 82 s (base) and 96 s (tuned) on the AVX2 EPYC
# at fp32 0.11 TFLOP/s, 2.4 GB/s of those bytes after the prefill: 0.0214 bytes per matmul FLOP. (The Zen 4 read
# 6.75 GB/s in batches of 8 rows, 0.036 a FLOP, before generation batched rows by tokens.)
DECODE_BYTES_PER_FLOP = 0.0214
# The rest of an evaluation: loading each model, the embedder, the metrics and the report: the demo's evaluation took
# 298 s on the AVX2 EPYC, 274 s of it counted by the terms above.
EVAL_REST_S = 25.0
# eval.precision bf16 (auto where the CPU has native bf16) halves the bytes each decoding step reads: the demo's
# 45 generations took 23.3 s vs 46.4 s in fp32 (Zen 4, 2 cores); its prefill and scoring ride the bf16 matmul
# (0.41 vs 0.20 TFLOP/s for a 2048^3 matmul here): both are counted 2x faster.
HALF_EVAL_SPEEDUP = 2.0


@dataclasses.dataclass(frozen=True)
class CpuRates:
    """What estimate_seconds divides by: training FLOP/s, prefill FLOP/s and decoding bytes/s (fp32)."""

    train: float
    prefill: float
    decode_bytes: float


def cpu_rates(cfg: RunConfig) -> CpuRates:
    """This machine's rates for `cfg`: the shares above of its own matmul rate in the precision that runs."""
    cache = models.home() / "cache"
    fp32 = runtime.matmul_flops("fp32", cache)
    train_half = runtime.choose_precision(cfg.train.precision) == "bf16"
    train = TRAIN_SHARE["bf16"] * runtime.matmul_flops("bf16", cache) if train_half else TRAIN_SHARE["fp32"] * fp32
    if runtime.tcmalloc_library() is None:
        train *= NO_TCMALLOC
    return CpuRates(train, PREFILL_SHARE * fp32, DECODE_BYTES_PER_FLOP * fp32)


def estimate_seconds(cfg: RunConfig, total: int, arch: Any, train: Sequence[int], eval_lengths: Sequence[int],
                     evals: int, prompts: Sequence[int], reference: Sequence[int] = (),
                     rates: CpuRates | None = None, evaluated: int = 2) -> float | None:
    """Training + eval-loss passes + a generation pass per model evaluated, on rows of these lengths in tokens;
    None on a GPU.

    `train` holds each trained row once per epoch; `prompts` the generation prompts' lengths (each is
    prefilled once per model, then max_new_tokens are generated); `reference` the rows a preference objective's
    reference model scores once before training. `rates`: this machine's (cpu_rates) unless given. `evaluated`:
    base and tuned (2), or the tuned model alone where the base's evaluation comes from the evaluation cache.
    """
    import torch

    if torch.cuda.is_available():
        return None
    rates = rates or cpu_rates(cfg)
    # Forward FLOPs of a row of n tokens: 2 per parameter per token, plus causal attention (QK^T and AV over
    # the earlier positions: 2 n^2 d per layer). Backward: the parameters' part once more for LoRA (activation
    # gradients only; the adapters' own gradients are negligible), twice for full fine-tuning; attention's part
    # twice (gradients for Q, K and V). Gradient checkpointing runs the forward once more. The attention term is
    # what made a 16-row run of ~3,300-token Korean prompts take 31 min where the estimate without it said 23.
    attn = 2 * getattr(arch, "hidden_size", 768) * getattr(arch, "num_hidden_layers", 12)
    again = 1 if cfg.train.gradient_checkpointing else 0
    params = (2 if cfg.train.method == "lora" else 3) + again
    train_s = sum(params * 2 * total * n + (3 + again) * attn * n * n for n in train) / rates.train
    # the reference pass (dpo, kto): each row once, forward only
    train_s += sum(2 * total * n + attn * n * n for n in reference) / rates.train
    eval_s = evals * sum(2 * total * n + attn * n * n for n in eval_lengths) / rates.train
    prefill_s = evaluated * sum(2 * total * n + attn * n * n for n in prompts) / rates.prefill
    gen_s = evaluated * decode_seconds(cfg, total, arch, prompts, rates)
    # Then each model scores the references (an fp32 forward over the eval rows) and runs the retention check.
    nll_s = evaluated * sum(2 * total * n + attn * n * n for n in eval_lengths) / rates.prefill
    evaluation = (prefill_s + gen_s + nll_s) / eval_speedup(cfg) + evaluated * retention_seconds(cfg, total, rates)
    return train_s + eval_s + evaluation + EVAL_REST_S


def eval_speedup(cfg: RunConfig) -> float:
    """How much faster than the fp32 rates above evaluation runs in the dtype eval.precision resolves to."""
    return HALF_EVAL_SPEEDUP if runtime.choose_precision(cfg.eval.precision) != "fp32" else 1.0


# The retention set (retention.py) in SmolLM2's tokens: 16 passages (4,106) and 12 prompts with their reference
# answers (~450), then 12 greedy answers of up to retention.ANSWER_TOKENS in one batch.
RETENTION_TOKENS = 4_550


def retention_seconds(cfg: RunConfig, total: int, rates: CpuRates) -> float:
    """One model's retention check on a CPU: a forward over the set, then the answers' decoding (fp32 rates,
    divided by eval_speedup)."""
    from tunesmith.retention import ANSWER_TOKENS, AUTO_MAX_PARAMETERS

    if cfg.eval.retention == "off" or (cfg.eval.retention == "auto" and total > AUTO_MAX_PARAMETERS):
        return 0.0
    return (2 * total * RETENTION_TOKENS / rates.prefill
            + ANSWER_TOKENS * 4 * total / rates.decode_bytes) / eval_speedup(cfg)


def decode_seconds(cfg: RunConfig, total: int, arch: Any, prompts: Sequence[int], rates: CpuRates) -> float:
    """Decoding time of one model: eval's batches (generation.token_batches), max_new_tokens steps each, each step
    reading the fp32 weights and the batch's KV caches."""
    from tunesmith.generation import token_batches

    heads = getattr(arch, "num_attention_heads", 12)
    kv = getattr(arch, "num_key_value_heads", None) or heads
    kv_bytes = 2 * getattr(arch, "num_hidden_layers", 12) * kv * getattr(arch, "hidden_size", 768) // heads * 4
    ordered = sorted(prompts)
    steps_bytes = sum(4 * total + sum(kv_bytes * ordered[i] for i in batch)
                      for batch in token_batches(ordered, cfg.eval.batch_size))
    return cfg.eval.max_new_tokens * steps_bytes / rates.decode_bytes


def run_seconds(cfg: RunConfig, train_ex: list[Example], eval_ex: list[Example], total: int, arch: Any,
                evaluated: int = 2) -> float | None:
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
                            reference, evaluated=evaluated)


# Past half an hour (issue 12) the plan says which knobs cut the time and by how much.
LONG_RUN_S = 30 * 60
ROW_LIMIT = 200


def time_knobs(cfg: RunConfig, train_ex: list[Example], eval_ex: list[Example], total: int, arch: Any,
               evaluated: int = 2) -> list[str]:
    """Plan lines for a long run: each knob that cuts the time, with the time estimated again under it."""
    now = run_seconds(cfg, train_ex, eval_ex, total, arch, evaluated)
    if now is None or now <= LONG_RUN_S:
        return []
    knobs: list[tuple[str, RunConfig, list[Example]]] = []
    if len(train_ex) > ROW_LIMIT:  # data.max_rows applies after the split: the first rows of the shuffled train
        knobs.append((f"--set data.max_rows={ROW_LIMIT} (train on {ROW_LIMIT} of {len(train_ex)} rows)", cfg,
                      train_ex[:ROW_LIMIT]))
    t = cfg.train
    if t.max_steps > 0 and t.max_steps > 1:
        knobs.append((f"--set train.max_steps={t.max_steps // 2}", memory.with_train(cfg, max_steps=t.max_steps // 2), train_ex))
    elif t.max_steps <= 0 and t.epochs > 1:
        knobs.append(("--set train.epochs=1", memory.with_train(cfg, epochs=1), train_ex))
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
        after = run_seconds(knob_cfg, rows, eval_ex, total, arch, evaluated) or now
        lines.append(f"time: {knob} -> ~{duration(after)} ({1 - after / now:.0%} less)")
    return lines


def _cut(example: Example, length: int) -> Example:
    """An example of at most `length` tokens, for time estimates only (only its length is read)."""
    return dataclasses.replace(example, input_ids=example.input_ids[:length], labels=example.labels[:length])


def _allocator() -> str:
    if runtime.tcmalloc_preloaded():
        return "tcmalloc"
    if runtime.training_allocator() == "tcmalloc":
        return "tcmalloc (train preloads it)"
    if runtime.tcmalloc_library():
        return "glibc (TUNESMITH_NO_TCMALLOC is set; the memory estimate counts glibc's higher peak)"
    return ("glibc (apt-get install libgoogle-perftools4 for ~1.5x on CPU and a 1.7x lower per-token peak; the "
            "memory estimate counts glibc's)")


def _time_line(seconds: float | None, grpo: bool, eval_rows: int, evaluated: int) -> str:
    if seconds is None:
        return "estimated time: " + ("not estimated for grpo (writing the answers dominates it)" if grpo
                                     else "not estimated on GPU (the estimate is calibrated for CPUs)")
    generations = f"2 x {eval_rows} generations" if evaluated == 2 else (
        f"{eval_rows} generations with the tuned model (the base model's come from the evaluation cache)")
    return (f"estimated time: ~{duration(seconds)} for training, eval-loss passes, {generations} and their scoring "
            "(rates scaled to this CPU's matmul speed, measured once; rough)")


def duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _why_not(data: PreparedData) -> str:
    """': 64 left out by data.max_rows, 1 longer than template.max_length' for the rows line."""
    kinds = Counter(s.kind for s in data.dropped)
    return (": " + ", ".join(f"{n} {SKIP_KINDS.get(k, k)}" for k, n in kinds.most_common())) if kinds else ""


def describe(cfg: RunConfig, data: PreparedData, train_ex: list[Example], eval_ex: list[Example],
             base_cached: bool = False) -> list[str]:
    """The plan as lines of text; raises the errors training would (a QLoRA on a CPU, a misnamed LoRA target).
    `base_cached`: the base model's evaluation comes from the evaluation cache (evaluate.base_cached)."""
    t = cfg.train
    models.quantization_config(t.load_in)  # `plan --load-4bit` refuses where `train --load-4bit` would
    train.check_settings(cfg)  # and varlen without a GPU for it, a scheduler or optimizer that cannot run
    per_epoch, total_steps = train.steps(len(train_ex), cfg)
    epochs = total_steps / per_epoch
    tokens = sum(len(e.input_ids) for e in train_ex)
    supervised = sum(e.supervised_tokens for e in train_ex)
    trainable, total, arch = memory.parameter_counts(cfg)
    effective = t.batch_size * t.grad_accum * runtime.world_size()
    eval_rows = min(len(data.eval), cfg.eval.max_rows)
    grpo = t.objective == "grpo"  # its steps write answers: neither SFT's memory nor its time estimate holds
    evaluated = 1 if base_cached else 2
    seconds = None if grpo else run_seconds(cfg, train_ex, eval_ex, total, arch, evaluated)
    budget, source = memory.memory_budget(cfg)
    method = {"full": "full fine-tuning"}.get(t.method, "QLoRA" if t.load_in == "4bit" else "LoRA")
    lc = cfg.lora
    adapter = (f"r={lc.r}, alpha={lc.alpha}, dropout={lc.dropout}, targets={lc.target_modules}"
               + (", DoRA" if lc.dora else "") + (", rsLoRA" if lc.rslora else "")) if t.method == "lora" else ""
    guard = _guard(cfg)
    device = "CUDA GPU" if memory.cuda() else f"CPU ({os.cpu_count()} cores)"
    lines = [
        f"model: {cfg.model} -> {models.location(cfg.model)} ({arch.model_type}, {total / 1e6:.1f}M parameters)"
        + (f"; continuing from {cfg.continue_from}" if cfg.continue_from else ""),
        f"rows: {len(train_ex)} train, {len(eval_ex)} eval (read {data.rows_read}: {len(data.skipped)} skipped, "
        f"{len(data.duplicates)} duplicates, {len(data.dropped)} not trained{_why_not(data)})",
        f"tokens: {tokens} per epoch, {supervised} of them supervised (the loss is computed on those only)" if not grpo
        else f"tokens: {tokens} per epoch in the rows (grpo learns from the answers it writes to their prompts)",
        f"steps: {per_epoch} per epoch, {total_steps} in total ({epochs:g} epoch{'' if epochs == 1 else 's'}); "
        f"effective batch {effective} = "
        f"{t.batch_size} {'prompts' if grpo else 'rows'} x {t.grad_accum} accumulation x {runtime.world_size()} "
        "process(es)",
        f"method: {method}; {adapter + '; ' if adapter else ''}trainable {trainable:,} of {total:,} parameters "
        f"({100 * trainable / total:.2f}%)",
        f"optimizer: {t.optimizer}, lr {t.learning_rate} ({t.lr_scheduler}, warmup {t.warmup_ratio:.0%}), weight "
        f"decay {t.weight_decay}, grad clip {t.max_grad_norm or 'off'}, seed {t.seed}",
        *neftune_line(cfg, arch),
        f"guard rails: {guard}",
        f"precision: {runtime.precision_reason(t.precision)}; device: {device}; allocator: {_allocator()}",
        grpo_memory_line(cfg, train_ex, budget, source) if grpo else memory.plan_line(cfg, train_ex, budget, source),
        *compile_line(cfg),
        _time_line(seconds, grpo, eval_rows, evaluated),
        f"generation eval: {eval_rows} rows, up to {cfg.eval.max_new_tokens} new tokens, greedy",
        f"output: {cfg.output_dir / cfg.name}",
        *([_step_line(cfg, trainable)] if t.objective == "sft" else [grpo_step_line(cfg, data)] if grpo else []),
        # prefplan.objective_line for the preference objectives
    ]
    return lines + time_knobs(cfg, train_ex, eval_ex, total, arch, evaluated)


def thinking_room(cfg: RunConfig, data: PreparedData, eval_ex: list[Example]) -> tuple[RunConfig, list[str]]:
    """Room for the eval answers to end their thinking: where the eval rows' answers think before they answer and
    eval.max_new_tokens is fewer than what 9 rows in 10 learn (thinking and answer), an answer would be cut inside
    its thinking and scored as empty. Not set by you, it is raised to that and a quarter more, rounded up to 64 (the
    plan says so); set by you, the plan warns with that setting."""
    thinks = {c.source for c in data.eval if c.messages and c.messages[-1].reasoning}
    needed = sorted(e.supervised_tokens for e in eval_ex if e.source in thinks)
    most = needed[max(0, math.ceil(0.9 * len(needed)) - 1)] if needed else 0
    if most <= cfg.eval.max_new_tokens:
        return cfg, []
    room, now = math.ceil(most * 1.25 / 64) * 64, cfg.eval.max_new_tokens
    why = f"the eval rows' answers think before answering, {most} tokens with their thinking in 9 rows of 10"
    if "max_new_tokens" in cfg.eval.model_fields_set:
        return cfg, [f"warning: generation eval: {why}, more than eval.max_new_tokens={now}: answers cut inside "
                     f"their thinking are scored as empty. --set eval.max_new_tokens={room}"]
    return (cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"max_new_tokens": room})}),
            [f"generation eval: {why}: eval.max_new_tokens raised from {now} to {room} (set it to choose)"])


def _guard(cfg: RunConfig) -> str:
    """The plan's guard-rails line: what is measured held out, when, and what it stops and keeps."""
    t = cfg.train
    measure, better = ("held-out reward", "higher") if t.objective == "grpo" else ("eval loss", "lower")
    return (f"{measure} every {'epoch' if t.eval_strategy == 'epoch' else f'{t.eval_steps} steps'} and at step 0, "
            f"a checkpoint at each; " + (f"early stopping after {t.early_stopping_patience} evals without a {better} "
                                         f"{measure}; " if t.early_stopping_patience else "no early stopping; ")
            + ("ends on the best checkpoint" if t.load_best else "ends on the last step"))


def neftune_line(cfg: RunConfig, arch: Any) -> list[str]:
    alpha = cfg.train.neftune_alpha
    return [f"neftune: uniform noise on the input embeddings while training, up to {alpha:g} / sqrt(row length x "
            f"{getattr(arch, 'hidden_size', '?')}) per value, each row's own length (none in eval and generation)"
            ] if alpha else []


_grpo_knobs = ("train.batch_size", "grpo.generations", "grpo.max_new_tokens")


def grpo_memory_line(cfg: RunConfig, train_ex: list[Example], budget: float, source: str) -> str:
    g, t = cfg.grpo, cfg.train
    peak, rows, length = memory.grpo_memory_gib(cfg, [len(e.input_ids) - e.supervised_tokens for e in train_ex])
    over = f" (over what is available: lower {', '.join(_grpo_knobs)})" if peak > budget else ""
    return (f"estimated peak memory: ~{peak:.1f} GiB of {budget:.1f} GiB available ({source}){over}: a step puts "
            f"{t.batch_size} prompts x {g.generations} answers = {rows} rows of up to {length} tokens (the longest "
            f"prompt and grpo.max_new_tokens) through the model together (lower train.batch_size, grpo.generations "
            "or grpo.max_new_tokens where it does not fit; docs/grpo.md says how close it came on this CPU)")


def grpo_step_line(cfg: RunConfig, data: PreparedData) -> str:
    g, t = cfg.grpo, cfg.train
    names = rewards.chosen(g, data.train)
    summed = "summed" if g.reward_weights is None else "weighted " + ", ".join(f"{w:g}" for w in g.reward_weights)
    yours = "; yours run with --trust-code" if any(n not in rewards.FUNCTIONS for n in names) else ""
    return (f"each optimizer step (grpo): (1) take {t.batch_size} prompts of the training rows, rendered as eval "
            f"renders them; (2) write {g.generations} answers to each (sampled at temperature {g.temperature:g}, up "
            f"to {g.max_new_tokens} new tokens); (3) score each answer: {', '.join(map(rewards.label, names))} "
            f"({summed}{yours}; the built-in ones compare it with its row's answer); (4) each answer's advantage is "
            "its score less the mean of its prompt's answers; (5) the loss raises the likelihood of answers above "
            "that mean and lowers the others'"
            + (f", with a KL penalty of {g.beta:g} toward the starting model" if g.beta else "")
            + f"; {t.optimizer} updates the weights (TRL's GRPOTrainer). Held out: answers written to the eval "
              "prompts, scored alike, pick the kept checkpoint")


def compile_line(cfg: RunConfig) -> list[str]:
    """What train.compile will do, said in the plan when it is on: on a CPU it was measured slower (graphs do not
    train there: train.check_graphs)."""
    if cfg.train.compile == "off":
        return []
    if cfg.train.compile == "graphs":
        return [f"compile: each decoder layer compiled once, at the first step (dynamic lengths), and replayed as CUDA "
                f"graphs: each step's packed row is padded to the next of {graphs.SHORTEST}, 192, 256, 384, 512, "
                "768, ... tokens (at most 1.5x its own) and a graph is recorded at each new length; a candidate, not "
                "yet timed on a GPU (docs/benchmarks.md)"]
    if memory.cuda():
        return ["compile: each decoder layer compiled once, at the first step (dynamic lengths): that step takes "
                "longer; the compiled layers dispatch ~2.5x fewer ops a step (docs/benchmarks.md)"]
    return ["warning: compile: train.compile on a CPU was 3.3x slower on the demo rows (102.9 vs 337.9 tokens/s, 10 "
            "steps: it compiles again at each new set of attention length groups, and compiled steps were no "
            "faster); it is meant for long GPU runs. --set train.compile=off"]


def _step_line(cfg: RunConfig, trainable: int) -> str:
    t = cfg.train
    return (f"each optimizer step: (1) take a batch of rows "
            f"{'of similar length' if train.grouped_batches(cfg) else 'drawn at random'}, "
            + ("joined into one sequence (padding-free; attention stays within each row"
               + (", through PyTorch's FlashAttention varlen kernel)" if t.attention == "varlen" else ")")
               + (", padded to the next of a few lengths (CUDA graphs)" if t.compile == "graphs" else "")
               if train.padding_free(cfg) else "padded to the longest")
            + "; (2) forward pass over every position, logits only where the loss is computed (TRL's fused LM "
            "head); (3) loss = cross-entropy on supervised tokens only (prompt tokens carry label -100); "
            f"(4) backward: gradients for the {trainable:,} trainable parameters"
            + (f", summed over {t.grad_accum} batches" if t.grad_accum > 1 else "")
            + f"; (5) {'clip the gradient norm, ' if t.max_grad_norm else ''}{t.optimizer} updates the weights, the "
              f"{t.lr_scheduler} scheduler sets the next learning rate")
