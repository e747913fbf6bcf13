"""Train throughput: plain TRL with its defaults, plain TRL tuned by hand, and tunesmith, on the same rows.

Run: .venv/bin/python bench/train_contestants.py [--shapes demo,long_prompt] [--steps 12] [--json FILE]
     [--model default|FOLDER|narrowN] [--rows DIR] [--cuda-path]
     [--contestants trl-defaults,trl-tuned,trl-tuned-fp32,trl-liger,unsloth,tunesmith,tunesmith-padded,...]
     [--profile] [--seeds 42,1,2,3]
On a CUDA machine every contestant trains on the GPU (bench/gpu_check.sh: a random-weight SmolLM2-135M, since
the embedded GGUF does not travel there); `--rows DIR` reuses (or writes) the shapes' JSONL files.

Contestants (issue 13), each in a child process of its own (its own peak RSS, its own LD_PRELOAD):
  (a) trl-defaults: SFTTrainer on prompt/completion conversations, every SFTConfig default kept (TRL 1.16:
      bf16 autocast, gradient checkpointing on, random batches), glibc malloc;
  (b) trl-tuned: the same script with bf16=True, gradient_checkpointing=False and tcmalloc preloaded;
  (c) tunesmith: tunesmith's own path (template stage, masking, its defaults for this config) as `train` runs it;
  trl-tuned-fp32: (b) in fp32 (bf16=False), as a user tunes it for a CPU without native bf16 (AVX2 only), where
      bf16 autocast is emulated (a forward 4.7-6x slower than fp32 on an AVX2-only EPYC);
  trl-liger (GPU only): (b) with SFTConfig(use_liger_kernel=True), issue 27's "(c) TRL tuned + Liger";
  unsloth (GPU only): issue 27's (d), FastLanguageModel + its get_peft_model + TRL's SFTTrainer, with its own
      transformers/TRL/datasets from UNSLOTH_SITE (bench/gpu_check.sh builds it).
A contestant that fails is recorded with its error (the rest still run).
Same model (SmolLM2-135M-Instruct, `model: default`), LoRA r=16 alpha=32 all-linear, rows per step, steps and
seed. Timing starts after the first step (warm-up: allocator, first-touch, oneDNN kernel choice).

Reported per contestant: real (non-padding) tokens/s over the timed steps, wall time of `trainer.train()`, peak
RSS of the child, the mean loss of the last three steps, and the model FLOP/s achieved (4 x parameters per real
token: forward 2 + backward 2 for LoRA) as a share of a 2048x2048 bf16 and fp32 matmul measured in the same run.
Shapes: the demo's rows (configs/demo.yaml, max_length 384) and generated long Korean paragraphs with a one-line
question as the answer (about 6% of tokens supervised), cut to rows of at most 1,024 tokens, 4 rows per step;
seq512 ... seq8192: the same kind of rows at about N tokens, 8,192 tokens a step (growth with sequence length).
With --profile each child runs its timed steps under torch.profiler and adds what a step spent (wall vs GPU busy,
kernel launches, ops and syncs per step, top ops); its tokens/s then include the profiler's overhead. On a CPU,
--cuda-path runs tunesmith's step as a GPU does (its CPU-only paths off), so that --profile's ops per step count
what a GPU would launch; --model narrow24 gives SmolLM2-1.7B's 24 layers at almost no arithmetic. On a GPU a
tunesmith row also carries the plan's memory estimate (settings.plan_gib: the largest batch the run draws;
settings.plan_worst_case_gib: the longest rows together) beside peak_gpu_gib.
With --seeds each contestant runs once per seed (data order, adapter init, dropout); x_<peer> compares rows of the
same seed, and `heldout_by_seed` gives each contestant's held-out loss per seed, mean and deviation: the noise a
"same held-out loss as (b)" claim is measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the generated shapes live with the test fixtures
from tests.fixtures.shapes import korean_rows  # noqa: E402

CONTESTANTS = ("trl-defaults", "trl-tuned", "tunesmith")
# tunesmith with train settings changed: padding_free forced to "padded" rows and "packed" rows; torch.compile
# (train.compile); and, GPU only, Liger's RMSNorm/RoPE/SwiGLU kernels patched into tunesmith's model (the loss
# stays TRL's chunked head); the adapters' inputs kept in bf16 as on the CPU (fastpath.bf16_lora_inputs, -10% of
# a step's ops in a --cuda-path count); transformers' fused AdamW (slower on the CPU); FlexAttention on packed rows
# (a block-sparse document mask where SDPA gets a dense one); compiled layers replayed as CUDA graphs, packed rows
# padded to a few lengths (graphs.py): candidates for issue 27, each kept only if a GPU run shows it
VARIANTS = {"tunesmith-padded": {"padding_free": "off"}, "tunesmith-packed": {"padding_free": "on"},
            "tunesmith-compile": {"compile": "layers"}, "tunesmith-graphs": {"compile": "graphs"},
            "tunesmith-graphs-varlen": {"compile": "graphs", "attention": "varlen"},  # the two together
            "tunesmith-liger": {}, "tunesmith-bf16in": {},
            "tunesmith-varlen": {"attention": "varlen"},  # packed rows through torch's FlashAttention varlen kernel
            "tunesmith-fused": {"optimizer": "adamw_torch_fused"},  # transformers' default optimizer
            "tunesmith-flex": {},
            "tunesmith-grouped": {"group_by_length": True}}  # length-grouped batches: the held-out loss's gap
MODEL = "default"  # --model: the weights every contestant starts from
PROFILE = False  # --profile: torch.profiler over the timed steps (slows them: its tokens/s are not the bench's)
SEED = 42  # --seeds: data order, adapter init and dropout; several seeds measure the held-out loss's noise
CUDA_PATH = False  # --cuda-path: on a CPU, tunesmith's step as a GPU runs it (what --profile's op counts compare)
# Unsloth pins transformers <= 5.17, TRL <= 1.15 and datasets < 5: its contestant runs with this folder first on
# PYTHONPATH (bench/gpu_check.sh installs it there), everything else with the project's versions
UNSLOTH_SITE = os.environ.get("UNSLOTH_SITE", "/tmp/site_unsloth")


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()
SHAPES = {"demo": {"batch": 8, "max_length": 384}, "long_prompt": {"batch": 4, "max_length": 1024},
          # issue 27's growth with sequence length: rows of about N tokens, 8,192 tokens a step at every N
          **{f"seq{n}": {"batch": max(1, 8192 // n), "max_length": n} for n in (512, 1024, 2048, 4096, 8192)}}
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}


def matmul_peak(dtype: str, n: int = 2048, repeats: int = 20) -> float:
    """FLOP/s of an n x n matmul in `dtype` on this machine now (best of `repeats`; 8192 on a GPU)."""
    import torch

    device = "cuda" if cuda() else "cpu"
    n = 8192 if device == "cuda" else n
    a = torch.randn(n, n, dtype=getattr(torch, dtype), device=device)
    b = torch.randn(n, n, dtype=getattr(torch, dtype), device=device)
    for _ in range(min(3, repeats)):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def narrow_model(layers: int, folder: Path) -> Path:
    """A random Llama of `layers` layers, 64 wide, with SmolLM2's tokenizer (`--model narrowN`; the tests' tiny
    model with more layers): a step that dispatches the ops of an N-layer model (SmolLM2-1.7B has 24) at almost no
    arithmetic, for --cuda-path counts."""
    from transformers import AutoTokenizer

    from tests.conftest import tiny_llama
    from tunesmith import models

    if not (folder / "config.json").exists():
        tiny_llama(AutoTokenizer.from_pretrained(models.resolve("default")), folder, context=8192, layers=layers)
    return folder


def rows_for(shape: str, folder: Path) -> Path:
    """The shape's rows as a JSONL file of OpenAI messages (the one input every contestant reads); an existing
    `folder/SHAPE.jsonl` is used as it is."""
    if (folder / f"{shape}.jsonl").exists():
        return folder / f"{shape}.jsonl"
    from tunesmith import models
    from tunesmith.config import DataConfig, TemplateConfig
    from tunesmith.data.prepare import prepare
    from tunesmith.template import render_dataset

    if shape == "demo":
        from tunesmith.config import load

        cfg = load(ROOT / "configs" / "demo.yaml")
        data = prepare(cfg.data)
        convs = list(data.train)
    else:  # ~2.1 tokens per character of these paragraphs, ~150 for the template and question, and a paragraph
        # overshoots its length by up to one sentence (~110 tokens): a seqN row is 60-100% of N tokens
        top = (SHAPES[shape]["max_length"] - 260) / 2.1
        chars = (250, 480) if shape == "long_prompt" else (int(0.6 * top), int(top))
        made = korean_rows(160 if shape == "long_prompt" else max(24, 6 * SHAPES[shape]["batch"]),
                           random.Random(0), chars=chars)
        raw = folder / "raw.jsonl"
        raw.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in made), encoding="utf-8")
        data = prepare(DataConfig(train=[raw]))
        convs = list(data.train)
    _, tok = models.load(MODEL, tokenizer_only=True)
    # Only rows every contestant keeps whole: TRL would cut a longer row's answer off at max_length.
    fits = render_dataset(tok, convs, TemplateConfig(max_length=SHAPES[shape]["max_length"], overflow="drop"))
    path = folder / f"{shape}.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": m.role, "content": m.content}
                                                     for m in c.messages]}, ensure_ascii=False) + "\n"
                            for c in fits.convs), encoding="utf-8")
    assert not any(e.truncated for e in fits.examples) and len(fits.examples) >= min(64, 3 * SHAPES[shape]["batch"])
    return path


class Meter:
    """Real tokens (attention_mask sums, or a packed row's length: the hook runs before tunesmith-graphs pads the
    row) and wall time of each training step, from a forward pre-hook and a TrainerCallback; the first step is the
    warm-up and is not timed."""

    def __init__(self, model, profile: bool = False) -> None:  # noqa: ANN001
        self.tokens, self.step_tokens, self.times, self.losses = [], 0, [], []
        self._t0 = 0.0
        self.profiler = None
        if profile:  # the timed steps (2nd on) under torch.profiler: where a step's time goes, per contestant
            import torch

            activities = [torch.profiler.ProfilerActivity.CPU] + (
                [torch.profiler.ProfilerActivity.CUDA] if cuda() else [])
            self.profiler = torch.profiler.profile(activities=activities)
        model.get_decoder().register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):  # noqa: ANN001, ANN202
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else (args[0] if args else None)
        if module.training:
            self.step_tokens += int(mask.sum()) if mask is not None and mask.dim() == 2 else int(ids.numel())

    def callback(self):  # noqa: ANN201
        from transformers import TrainerCallback

        meter = self

        class Timing(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
                if meter.profiler is not None and len(meter.times) == 1:
                    meter.profiler.__enter__()
                meter.step_tokens, meter._t0 = 0, time.perf_counter()

            def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
                if meter.profiler is not None and len(meter.times) > 1:
                    meter.profiler.__exit__(None, None, None)

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
                if cuda():
                    import torch

                    torch.cuda.synchronize()
                meter.times.append(time.perf_counter() - meter._t0)
                meter.tokens.append(meter.step_tokens)

            def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
                if logs and "loss" in logs:
                    meter.losses.append(float(logs["loss"]))

        return Timing()


# aten ops that only make or reshape a tensor's metadata (no kernel on a GPU); the rest count as a step's ops
METADATA_OPS = frozenset((
    "view", "_unsafe_view", "_reshape_alias", "reshape", "as_strided", "empty", "empty_strided", "empty_like", "t",
    "transpose", "permute", "expand", "unsqueeze", "squeeze", "slice", "select", "alias", "detach", "resolve_conj",
    "resolve_neg", "to", "result_type", "lift_fresh", "unbind", "split", "chunk", "narrow", "contiguous", "size",
    "stride", "scalar_tensor", "_local_scalar_dense", "item", "is_nonzero"))


def profile_summary(meter: Meter, top: int = 12) -> dict:
    """What the profiled steps spent: wall time, time the GPU was busy running kernels, kernel launches, and the
    ops with the most self time on the device and on the host (a step bound by launches shows busy << wall)."""
    from torch.autograd import DeviceType

    events = meter.profiler.key_averages()
    wall = sum(meter.times[1:])
    # the kernels themselves (an aten op's self device time would count its kernels a second time)
    device = [e for e in events if getattr(e, "device_type", None) == DeviceType.CUDA]
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC",
                                                        "cuLaunchKernelEx"))

    def rows(key: str, among: list) -> list[dict]:
        best = sorted(among, key=lambda e: -getattr(e, key, 0))[:top]
        return [{"op": e.key[:80], "ms": round(getattr(e, key) / 1e3, 1), "calls": e.count} for e in best]

    steps = max(len(meter.times) - 1, 1)
    every = meter.profiler.events()
    ops = [e for e in every if e.name.startswith("aten::") and not e.cpu_children and e.name[6:] not in METADATA_OPS]
    return {"steps": steps, "wall_ms_per_step": round(1e3 * wall / steps, 1),
            # what a step dispatches: the ops that do work (on a GPU each is a kernel launch or more), and the
            # ones that make the host wait for the device (.item(), and nonzero: boolean indexing)
            "ops_per_step": round(len(ops) / steps),
            "copies_per_step": round(sum(e.name == "aten::copy_" for e in ops) / steps),
            "syncs_per_step": {name: round(sum(e.name == f"aten::{name}" for e in every) / steps, 1)
                               for name in ("_local_scalar_dense", "nonzero")},
            "device_busy_ms_per_step": round(sum(e.self_device_time_total for e in device) / 1e3 / steps, 1),
            "host_ms_per_step": round(sum(e.self_cpu_time_total for e in events) / 1e3 / steps, 1),
            "kernel_launches_per_step": round(launches / steps),
            "top_device": rows("self_device_time_total", device),
            "top_host": rows("self_cpu_time_total", [e for e in events if e not in device])}


def trl_run(contestant: str, data: Path, shape: str, steps: int, out: Path) -> tuple[Meter, float, dict]:
    """A plain TRL script, as a user would write it from TRL's docs."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith import models

    source = models.resolve(MODEL)
    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    tuned = {"bf16": True, "gradient_checkpointing": False} if contestant in ("trl-tuned", "trl-liger") else {}
    if contestant == "trl-tuned-fp32":  # (b) as tuned by hand for a CPU without native bf16 (AVX2 only)
        tuned = {"bf16": False, "gradient_checkpointing": False}
    if contestant == "trl-liger":  # Liger's fused kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy)
        if not cuda():
            raise SystemExit("trl-liger needs a CUDA GPU: Liger's kernels are Triton kernels")
        tuned["use_liger_kernel"] = True
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], target_modules="all-linear",
                      task_type="CAUSAL_LM")
    meter, seconds, trainer = sft_train(model, tok, data, shape, steps, out, lora, **tuned)
    return meter, seconds, {"bf16": trainer.args.bf16,
                            "gradient_checkpointing": trainer.args.gradient_checkpointing}, trainer.model


def sft_train(model, tok, data: Path, shape: str, steps: int, out: Path, peft_config=None,  # noqa: ANN001
              **tuned: object) -> tuple[Meter, float, object]:
    """TRL's SFTTrainer as (a)-(d) run it: the file's rows as prompt/completion conversations (TRL applies the chat
    template and trains on the completion only), the same step settings; returns (meter, seconds, trainer)."""
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    ds = load_dataset("json", data_files=str(data), split="train")
    ds = ds.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                remove_columns=["messages"])
    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=SHAPES[shape]["batch"],
                     learning_rate=3e-4, logging_steps=1, save_strategy="no", report_to="none", seed=SEED,
                     max_length=SHAPES[shape]["max_length"], use_cpu=not cuda(), disable_tqdm=True, **tuned)
    meter = Meter(model, PROFILE)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config,
                         callbacks=[meter.callback()])
    start = time.perf_counter()
    trainer.train()
    return meter, time.perf_counter() - start, trainer

def tunesmith_run(data: Path, shape: str, steps: int, out: Path, variant: str = "tunesmith"
                  ) -> tuple[Meter, float, dict]:
    from tunesmith import models, pipeline, train
    from tunesmith.config import parse
    from tunesmith.data.prepare import prepare
    from tunesmith.rundir import create

    cfg = parse({"name": "bench", "model": MODEL, "output_dir": str(out),
                 "data": {"train": [str(data)], "eval_fraction": 0.05, "min_eval": 2},
                 "template": {"max_length": SHAPES[shape]["max_length"]},
                 "lora": {**LORA, "target_modules": "all-linear"},
                 # TRL's schedule (linear, no warm-up): with tunesmith's cosine and 5% warm-up, step 1 of 8 runs
                 # at learning rate 0 and the held-out loss after 8 steps was 0.07 higher (2.12 vs 2.05)
                 "train": {"max_steps": steps, "batch_size": SHAPES[shape]["batch"], "learning_rate": 3e-4,
                           "lr_scheduler": "linear", "warmup_ratio": 0.0,
                           "logging_steps": 1, "eval_strategy": "steps", "eval_steps": 100000,
                           "early_stopping_patience": 0, "load_best": False, "report_to": [], "seed": SEED,
                           **VARIANTS.get(variant, {})}},
                source=f"<bench {shape}>")
    tok = models.load(cfg.model, tokenizer_only=True)[1]
    _, train_ex, eval_ex = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    model = pipeline._starting_model(cfg)[0]  # the weights `tunesmith train` starts from
    if variant == "tunesmith-bf16in" or CUDA_PATH:
        step_as_on_a_gpu(bf16_inputs=variant == "tunesmith-bf16in")
    if variant == "tunesmith-flex":  # packed rows' document mask as FlexAttention's block mask (transformers builds
        if not cuda():  # it from the position ids: on the CPU its forward matched each row alone, 2e-7)
            raise SystemExit("tunesmith-flex needs a CUDA GPU: FlexAttention has no backward on the CPU")
        model.set_attn_implementation("flex_attention")
    if variant == "tunesmith-liger":
        if not cuda():
            raise SystemExit("tunesmith-liger needs a CUDA GPU: Liger's kernels are Triton kernels")
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                        fused_linear_cross_entropy=False)
    meter = Meter(model, PROFILE)
    run, _ = create(out, "bench", overwrite=True, config_yaml=cfg.to_yaml())
    start = time.perf_counter()
    result = train.train(model, tok, train_ex, eval_ex[:2], cfg, run, say=lambda _: None, progress=meter.callback())
    seconds = time.perf_counter() - start
    run.unlock()
    from tunesmith import memory

    # what `tunesmith plan` says the peak will be (process RSS on a CPU; on a GPU it is compared with the GPU's): the
    # largest batch this run draws, and the batch_size longest rows together (what the memory fit sizes for)
    counts = memory.parameter_counts(cfg)
    estimate = memory.drawn_memory_gib(cfg, *counts, [len(e.input_ids) for e in train_ex])[0]
    worst = memory.estimate_memory_gib(cfg, *counts, max(len(e.input_ids) for e in train_ex))
    t = cfg.train
    return meter, seconds, {"precision": t.precision,
                            "group_by_length": train.grouped_batches(cfg),
                            "padding_free": train.padding_free(cfg),
                            "compile": t.compile, "liger": variant == "tunesmith-liger",
                            "plan_gib": round(estimate, 2), "plan_worst_case_gib": round(worst, 2)}, result.model


def step_as_on_a_gpu(bf16_inputs: bool) -> None:
    """tunesmith's step as it runs on a GPU, where fastpath.cpu_step and cheap_dropout change nothing (--cuda-path
    on a CPU: the matrix attention, the cheap dropout and the bf16 adapter inputs off); with bf16_inputs the
    adapters' inputs stay in bf16 (fastpath.bf16_lora_inputs) on any device: the tunesmith-bf16in candidate."""
    import contextlib

    from tunesmith import fastpath

    @contextlib.contextmanager
    def step(model, cfg):  # noqa: ANN001, ANN202
        on = bf16_inputs and fastpath.frozen_dtype(cfg) == "bf16"
        with fastpath.bf16_lora_inputs(model) if on else contextlib.nullcontext():
            yield ["bf16 LoRA inputs"] if on else []

    fastpath.cpu_step = step
    fastpath.cheap_dropout = lambda model: 0


def unsloth_run(data: Path, shape: str, steps: int, out: Path) -> tuple[Meter, float, dict, object]:
    """(d) Unsloth as its README trains: FastLanguageModel (its patched Llama, bf16 weights), its get_peft_model
    with the same LoRA, TRL's SFTTrainer on the same prompt/completion rows as (b). CUDA only; runs with
    UNSLOTH_SITE first on PYTHONPATH (its pinned transformers/TRL/datasets)."""
    if not cuda():
        raise SystemExit("unsloth needs a CUDA GPU")
    import unsloth  # noqa: F401 - first, so that it patches transformers and TRL before they load
    import torch
    from unsloth import FastLanguageModel

    from tunesmith import models

    model, tok = FastLanguageModel.from_pretrained(model_name=str(models.resolve(MODEL)),
                                                   max_seq_length=SHAPES[shape]["max_length"], dtype=torch.bfloat16,
                                                   load_in_4bit=False)
    model = FastLanguageModel.get_peft_model(
        model, r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], bias="none", random_state=SEED,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        use_gradient_checkpointing=False)
    meter, seconds, trainer = sft_train(model, tok, data, shape, steps, out, bf16=True, gradient_checkpointing=False)
    return meter, seconds, {"unsloth": unsloth.__version__, "bf16": True, "gradient_checkpointing": False}, \
        trainer.model

HELDOUT = 16  # the file's last rows: the same rows, masking and batches score every contestant's final model


def heldout_loss(model, data: Path) -> float:  # noqa: ANN001
    """Mean loss per supervised token on the file's last HELDOUT rows, rendered and masked by tunesmith, under
    bf16 autocast (tunesmith's frozen weights are bf16). They are trained on too: this compares where the
    contestants got to, not generalisation."""
    import torch

    from tunesmith import generation, models
    from tunesmith.config import DataConfig, TemplateConfig
    from tunesmith.data.prepare import read_all
    from tunesmith.template import render_dataset

    convs = [c for f in read_all([data], DataConfig(train=[data])) for c in f.conversations][-HELDOUT:]
    tok = models.load(MODEL, tokenizer_only=True)[1]
    examples = list(render_dataset(tok, convs, TemplateConfig(max_length=4096)).examples)
    with torch.autocast("cuda" if cuda() else "cpu", dtype=torch.bfloat16):
        rows = generation.per_row_nll(model, examples, batch_size=4)
    return sum(s for s, _ in rows) / sum(n for _, n in rows)


def child(contestant: str, data: Path, shape: str, steps: int, out: Path) -> dict:
    import torch

    torch.manual_seed(SEED)  # the adapters' initial weights (PEFT draws them before the Trainer seeds)
    if contestant == "tunesmith" or contestant in VARIANTS:
        meter, seconds, settings, model = tunesmith_run(data, shape, steps, out, contestant)
    elif contestant == "unsloth":
        meter, seconds, settings, model = unsloth_run(data, shape, steps, out)
    else:
        meter, seconds, settings, model = trl_run(contestant, data, shape, steps, out)
    tokens, timed = sum(meter.tokens[1:]), sum(meter.times[1:])
    half = len(meter.times) // 2  # the later half of the steps: compiled candidates' recordings are behind them
    steady = sum(meter.tokens[half:]) / max(sum(meter.times[half:]), 1e-9)
    extra = {"profile": profile_summary(meter)} if meter.profiler is not None else {}
    try:
        heldout = round(heldout_loss(model, data), 4)
    except Exception as err:  # noqa: BLE001 - unsloth's child runs older transformers; its throughput still counts
        heldout, extra["heldout_error"] = None, f"{type(err).__name__}: {err}"[:300]
    total = sum(p.numel() for p in model.parameters() if not p.requires_grad)  # the base model's (LoRA frozen)
    if cuda():
        extra["peak_gpu_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    return {"contestant": contestant, "shape": shape, "settings": settings, "steps": len(meter.times), **extra,
            "tokens_per_s": round(tokens / timed, 1), "tokens_per_s_later_half": round(steady, 1),
            "model_flops": 4 * total * tokens / timed,
            "train_wall_s": round(seconds, 1), "peak_rss_gib": round(resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "loss_last3": round(sum(meter.losses[-3:]) / max(len(meter.losses[-3:]), 1), 4),
            "heldout_loss": heldout,
            "step_seconds": [round(t, 3) for t in meter.times], "step_tokens": meter.tokens,
            "malloc": "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "glibc",
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda() else None}


def run_child(contestant: str, data: Path, shape: str, steps: int, out: Path) -> dict:
    from tunesmith import runtime

    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if contestant != "trl-defaults" and runtime.tcmalloc_library():
        env["LD_PRELOAD"] = str(runtime.tcmalloc_library())
    if contestant == "unsloth":  # its own versions first; no statistics ping (the GPU machine is offline)
        env["PYTHONPATH"] = os.pathsep.join([UNSLOTH_SITE, str(ROOT / "src"), str(ROOT)])
        env.update(UNSLOTH_DISABLE_STATISTICS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    res = subprocess.run([sys.executable, __file__, "--child", contestant, "--data", str(data), "--shapes", shape,
                          "--steps", str(steps), "--out", str(out), "--model", MODEL, "--seeds", str(SEED)]
                         + (["--profile"] if PROFILE else []) + (["--cuda-path"] if CUDA_PATH else []),
                         env=env, capture_output=True, text=True)
    if res.returncode:  # recorded, not fatal: one contestant failing (say, Unsloth offline) keeps the others
        return {"contestant": contestant, "shape": shape, "error": res.stderr[-3000:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="demo,long_prompt")
    ap.add_argument("--contestants", default=",".join(CONTESTANTS))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child")
    ap.add_argument("--data", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--model", default="default",
                    help="default (embedded SmolLM2), a model folder, or narrowN (random, N layers, 64 wide)")
    ap.add_argument("--rows", type=Path, help="folder of the shapes' JSONL files (reused, or written there)")
    ap.add_argument("--profile", action="store_true", help="torch.profiler over each contestant's timed steps")
    ap.add_argument("--seeds", default="42", help="comma-separated: each contestant runs once per seed (the "
                    "held-out loss's spread across seeds is its noise)")
    ap.add_argument("--cuda-path", action="store_true",
                    help="on a CPU, run tunesmith's step as a GPU does (its CPU-only paths off): op counts for a GPU")
    args = ap.parse_args()
    global MODEL, PROFILE, CUDA_PATH, SEED
    MODEL, PROFILE, CUDA_PATH = args.model, args.profile, args.cuda_path
    seeds = [int(s) for s in args.seeds.split(",")]
    SEED = seeds[0]
    if args.child:
        print(json.dumps(child(args.child, args.data, args.shapes, args.steps, args.out)))
        return
    from tunesmith.runtime import cpu_has_bf16

    # Without native bf16 (AVX2 only) a bf16 matmul is emulated at ~1 GFLOP/s: 2048^3 twenty-three times took minutes
    emulated = not cuda() and not cpu_has_bf16()
    peaks = {"bf16": matmul_peak("bfloat16", **({"n": 512, "repeats": 2} if emulated else {})),
             "fp32": matmul_peak("float32")}
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        if MODEL.startswith("narrow"):
            MODEL = str(narrow_model(int(MODEL[len("narrow"):]), Path(tmp) / MODEL))
        for shape in args.shapes.split(","):
            (args.rows or Path(tmp)).mkdir(parents=True, exist_ok=True)
            data = rows_for(shape, args.rows or Path(tmp))
            steps = args.steps if shape == "demo" else max(args.steps // 2, 3)
            for SEED in seeds:  # noqa: B007 - run_child passes the global to the child
                for contestant in args.contestants.split(","):
                    results.append({**run_child(contestant, data, shape, steps, Path(tmp) / contestant),
                                    "seed": SEED})
                    say(results[-1], peaks)
                    if args.json:  # after every contestant: a run stopped at its time limit keeps what it measured
                        args.json.write_text(json.dumps(summarise(results, peaks), indent=1) + "\n",
                                             encoding="utf-8")
    print(json.dumps(summarise(results, peaks), indent=1))


def say(r: dict, peaks: dict) -> None:
    if "error" in r:
        print(f"{r['shape']:12s} {r['contestant']:13s} FAILED: {r['error'].strip().splitlines()[-1:]}", file=sys.stderr)
        return
    r["share_of_bf16_peak"] = round(r["model_flops"] / peaks["bf16"], 3)
    r["share_of_fp32_peak"] = round(r["model_flops"] / peaks["fp32"], 3)
    peak = "bf16" if peaks["bf16"] >= peaks["fp32"] else "fp32"  # emulated bf16 (AVX2 only): its share says nothing
    gpu = f"  {r['peak_gpu_gib']:5.2f} GiB GPU" if r.get("peak_gpu_gib") is not None else ""
    print(f"{r['shape']:12s} {r['contestant']:13s} seed {r['seed']:<3d} {r['tokens_per_s']:7.1f} tok/s  {r['train_wall_s']:6.1f} s  "
          f"{r['peak_rss_gib']:5.2f} GiB{gpu}  loss {r['loss_last3']:.4f} held-out {r['heldout_loss']}  "
          f"{r[f'share_of_{peak}_peak']:.1%} of {peak} peak  (later half {r['tokens_per_s_later_half']:.1f} tok/s)",
          file=sys.stderr)


def summarise(results: list[dict], peaks: dict) -> dict:
    """The JSON written: the machine, then each contestant's row; tunesmith's rows (and its variants') carry
    x_<peer> = their tokens/s over each peer's on the same shape."""
    import torch

    for r in results:
        if r["contestant"].startswith("tunesmith") and "error" not in r:
            for peer in results:
                if (peer["shape"] == r["shape"] and peer["seed"] == r["seed"] and "error" not in peer
                        and peer["contestant"] in ("trl-defaults", "trl-tuned", "trl-tuned-fp32", "trl-liger",
                                                   "unsloth")):
                    r[f"x_{peer['contestant']}"] = round(r["tokens_per_s"] / peer["tokens_per_s"], 2)
    return {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "gpu": torch.cuda.get_device_name(0) if cuda() else None, "model": MODEL,
                        "bf16_matmul_tflops": round(peaks["bf16"] / 1e12, 2),
                        "fp32_matmul_tflops": round(peaks["fp32"] / 1e12, 2)}, "results": results,
            "heldout_by_seed": heldout_spread(results)}


def heldout_spread(results: list[dict]) -> dict:
    """Per shape and contestant, the held-out loss at each seed, its mean and sample standard deviation; each
    tunesmith row's mean - trl-tuned's mean in trl-tuned's standard deviations (issue 27: the same steps should
    land "within noise of (b)"). Needs two seeds or more for a deviation."""
    from statistics import mean, stdev

    out: dict = {}
    for r in results:
        if r.get("heldout_loss") is not None:
            out.setdefault(r["shape"], {}).setdefault(r["contestant"], {"losses": []})["losses"].append(
                r["heldout_loss"])
    for shape in out.values():
        for row in shape.values():
            row["mean"] = round(mean(row["losses"]), 4)
            row["sd"] = round(stdev(row["losses"]), 4) if len(row["losses"]) > 1 else None
        base = shape.get("trl-tuned")
        for name, row in shape.items():
            if name.startswith("tunesmith") and base and base["sd"]:
                row["gap_in_trl_tuned_sd"] = round((row["mean"] - base["mean"]) / base["sd"], 2)
    return out

if __name__ == "__main__":
    main()
