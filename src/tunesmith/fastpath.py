"""What makes a training step cheap on top of TRL's loop, each kept because a profile showed it (the numbers are
in each docstring): frozen linear weights stored in bf16 or fp16 (frozen_to_half), the fused LM head scoring only the
supervised positions on the CPU too (supervised_logits_only), and LoRA dropout that draws only where it drops
(cheap_dropout); around the loop on the CPU (cpu_step), attention over the whole score matrix for short rows
(attention.py) and the LoRA adapters' inputs kept in bf16 (bf16_lora_inputs); on CUDA, train.attention: varlen
(gpu_step, varlen.py); train.compile's regional compilation (compile_layers; graphs.py pads its rows).
train.run_trainer applies them; memory's estimate asks frozen_dtype and attention.kept_bytes.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from typing import Any

from tunesmith import attention, varlen
from tunesmith.config import RunConfig
from tunesmith.runtime import choose_padding_free, choose_precision


def frozen_dtype(cfg: RunConfig) -> str | None:
    """The half precision training stores the frozen linear weights in (frozen_to_half): "bf16" or "fp16" for LoRA
    on an unquantised base under that autocast, else None. The plan's memory estimate asks the same question."""
    t = cfg.train
    precision = choose_precision(t.precision)
    return precision if t.method == "lora" and t.load_in == "none" and precision in ("bf16", "fp16") else None


def frozen_to_half(model: Any, dtype: str = "bf16") -> int:
    """Store the frozen weights of linear layers in `dtype` ("bf16", or "fp16" on GPUs without bf16: T4, V100);
    returns how many parameters changed.

    Under half autocast every matmul casts its fp32 weight to bf16/fp16 first, and autocast caches that copy only
    for weights that require grad: the frozen base of a LoRA model was cast again in every forward of every
    micro-batch (~0.65 GB of memory traffic per forward for SmolLM2-135M) and the copies saved for backward
    sat beside the fp32 originals (2 bytes a frozen parameter more at the peak: 3.4 GB for a 1.7B model on a 16 GB
    T4). Pre-cast weights give bit-identical matmuls (tests/test_fastpath.py, bf16 and fp16 autocast). Embeddings,
    norms and the LM head (tied to the embeddings in many small models) stay fp32, so the residual stream adds in
    fp32 as before; the LoRA weights and their optimizer state stay fp32 (fp16's loss scaler unscales only those).

    On the CPU the weights loaded from safetensors are views of the memory-mapped file: while one of them (the
    embeddings) stayed a view, the mapping stayed, and with it every page of the converted fp32 weights that the
    conversion had read, counted in the process's memory beside their bf16 copies (SmolLM2-135M: 0.41 GiB of the
    file resident, RSS 1.04 GiB). The frozen weights left in fp32 are copied out of the file, so the mapping goes
    (RSS 0.75 GiB; 4 bytes a converted parameter, ~6 GiB for a 1.7B model).
    """
    import torch

    half = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    tied = {id(p) for p in model.get_input_embeddings().parameters()}
    changed = 0
    for module in model.modules():
        w = getattr(module, "weight", None)
        if (isinstance(module, torch.nn.Linear) and w is not None and not w.requires_grad
                and w.dtype == torch.float32 and id(w) not in tied):
            module.weight.data = w.data.to(half)
            if module.bias is not None and not module.bias.requires_grad:
                module.bias.data = module.bias.data.to(half)
            changed += w.numel()
    for param in model.parameters():  # the rest off the memory-mapped file, so that its mapping is released
        if changed and not param.requires_grad and param.dtype == torch.float32 and param.device.type == "cpu":
            param.data = param.data.clone()
    return changed


def supervised_logits_only() -> bool:
    """Make TRL's fused LM head project only the supervised positions on the CPU too; True once it does.

    TRL 1.16 (trl.trainer.utils.add_fused_lm_head) passes `hidden_states[labels != -100]` to its chunked
    log-prob kernel only where Triton runs (CUDA, XPU); elsewhere it scores every position, because a varying
    number of positions recompiles graphs on devices like Neuron. On the CPU nothing is compiled, and scoring
    every position cost the vocabulary projection (49k x 576 for SmolLM2) forward and an fp32 backward for each
    prompt token: the one `aten::addmm_` of the demo's profile took 7% of a step, and long prompts with short
    answers are 94% prompt. The kernel itself keeps its own device test (torch code on the CPU).
    """
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return False
    original = getattr(trl_utils, "_use_triton", None)
    if original is None:  # another TRL: nothing to change, the loss is right either way
        return False
    if getattr(original, "tunesmith", False):
        return True

    def compact(device: Any) -> bool:
        return device.type == "cpu" or original(device)

    compact.tunesmith = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact
    return True


def compile_layers(model: Any, mode: str | None = None) -> int:
    """train.compile: torch.compile each decoder layer in place, with dynamic sequence lengths, in torch.compile's
    `mode` (graphs.py: "reduce-overhead"); returns how many.

    Regional compilation: the layers share one class and one graph, compiled once and reused by all of them, and
    the weights' names (what saves the adapter) stay as they were. Handing TRL `torch_compile=True` compiled the
    whole model, twice: at the first batch, and again at the second, whose packed length differed (dynamo then
    marks the length dynamic). A 4-layer random Llama, the step as on a GPU (bench/train_contestants.py --model
    narrow4 --cuda-path, 6 demo steps, 2 vCPUs): the whole model compiled for 65.6 + 62.5 s, accelerate's regional
    compilation with dynamic lengths 38.0 s once, these layers 18.4 s once; then step times as uncompiled (0.25-0.36
    s vs 0.24-0.30). On the CPU's own path (SmolLM2-135M, 10 demo steps) it compiled again at three more lengths
    (attention.py's length groups are Python values) and steps were no faster (2.3-3.5 s): for GPUs only.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())  # transformers' name for its repeated block
    layers = [m for m in base.modules() if type(m).__name__ in names]
    for layer in layers:
        layer.compile(dynamic=True, mode=mode)
    return len(layers)


@contextlib.contextmanager
def cpu_step(model: Any, cfg: RunConfig) -> Iterator[list[str]]:
    """Around trainer.train on the CPU under bf16 autocast: the matrix attention for short rows and, for LoRA on a
    bf16-stored base, the adapters' inputs in bf16; yields what was switched on, and switches it off on exit
    (the trained model then generates and saves exactly as loaded). Measured together with the new dropout
    (fwd + bwd of a 8 x 85 and a 8 x 326 batch of the demo, median of 8 alternating): 11.49 s -> 9.35 s.
    On CUDA nothing changes: none of it was measured there. In fp32 (a CPU without native bf16) only
    padding-free rows go through attention.py, padded again in length groups for SDPA.
    """
    precision = choose_precision(cfg.train.precision)
    if next(model.parameters()).is_cuda or precision not in ("bf16", "fp32"):
        yield []
        return
    # fp32: only padding-free rows' attention (padded again for SDPA), no matrix path and no bf16 inputs
    wanted = cfg.train.attention == "auto" and (precision == "bf16" or choose_padding_free(cfg.train.padding_free))
    with contextlib.ExitStack() as stack:
        matrix = wanted and stack.enter_context(attention.used_by(model))
        switched = [("attention" if precision == "bf16" else "attention (padding-free rows padded again)")] \
            if matrix else []
        if frozen_dtype(cfg) == "bf16" and stack.enter_context(bf16_lora_inputs(model)):
            switched.append("bf16 LoRA inputs")
        yield switched


@contextlib.contextmanager
def gpu_step(model: Any, cfg: RunConfig) -> Iterator[list[str]]:
    """Around trainer.train on CUDA: train.attention: varlen switches the model to varlen.py's attention (train
    checks first that it can run: train.check_attention); yields what was switched on, off again on exit."""
    if cfg.train.attention != "varlen" or not next(model.parameters()).is_cuda:
        yield []
        return
    with varlen.used_by(model) as switched:
        yield ["varlen attention"] if switched else []


@contextlib.contextmanager
def bf16_lora_inputs(model: Any) -> Iterator[int]:
    """Keep the LoRA adapters' inputs in bf16 under bf16 autocast; yields how many norm outputs were cast.

    Each decoder layer's two norms feed only projections (q/k/v, gate/up), and autocast cast their fp32 output to
    bf16 once per projection (5 per layer) while PEFT cast every adapter's input back to its fp32 weights' dtype
    before the dropout (then autocast to bf16 again for lora_A). Casting each norm's output once and leaving PEFT's
    input cast off gives the base matmuls the very same bf16 input and the adapters their input rounded once;
    the dropout then runs on bf16. Measured: 10.15 -> 9.81 s for the demo batches above (with the matrix
    attention). Layers where a norm also feeds the residual stream (Gemma's post-attention norm) keep it in fp32.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapters = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    hooks = [norm.register_forward_hook(_to_bf16) for norm in _projection_norms(model)]
    for layer in adapters:
        layer.cast_input_dtype_enabled = False
    try:
        yield len(hooks)
    finally:
        for hook in hooks:
            hook.remove()
        for layer in adapters:
            layer.cast_input_dtype_enabled = True


def _projection_norms(model: Any) -> list[Any]:
    """The norms whose output goes only into linear projections: in each decoder layer (a module with `self_attn`
    and `mlp`), the one before attention and the one before the MLP."""
    norms = []
    for layer in model.modules():
        if not (hasattr(layer, "self_attn") and hasattr(layer, "mlp")):
            continue
        before_mlp = "pre_feedforward_layernorm" if hasattr(layer, "pre_feedforward_layernorm") \
            else "post_attention_layernorm"
        norms += [n for n in (getattr(layer, "input_layernorm", None), getattr(layer, before_mlp, None))
                  if n is not None]
    return norms


def _to_bf16(module: Any, inputs: Any, output: Any) -> Any:
    import torch

    device = output.device.type  # under bf16 autocast on that device (cpu_step: CPU only; a GPU bench candidate)
    bf16 = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16
    return output.to(torch.bfloat16) if bf16 else output


def cheap_dropout(model: Any) -> int:
    """Replace the LoRA adapters' dropout layers with cheap_dropout_class(); returns how many were replaced.

    torch.profiler on the demo (3 steps, 210 adapted layers): `aten::bernoulli_` of nn.Dropout took 19% of the
    CPU time, as much as half of all matmuls: one Mersenne-twister draw per element (~5 ns). Same p, same
    scaling, drawn as in cheap_dropout_class.
    """
    import torch

    cheap, count = cheap_dropout_class(), 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if isinstance(drops, torch.nn.ModuleDict):
            for name, layer in drops.items():
                if isinstance(layer, torch.nn.Dropout) and layer.p > 0:
                    drops[name] = cheap(layer.p)
                    count += 1
    return count


# Up to this p a mask is drawn as the gaps between dropped elements (dropped_positions), above it as 16-bit draws:
# masks of 1,352 x 576 elements took 0.34 / 0.53 / 0.76 / 1.00 / 1.45 ms at p = 0.05 / 0.1 / 0.15 / 0.2 / 0.3 that
# way, 1.01 ms at every p the other (2 threads, this Zen 4)
GAP_MAX_P = 0.15


def dropped_positions(n: int, p: float, device: Any = "cpu", spare: float = 6.0) -> Any:
    """The indices in [0, n) that a dropout of probability p drops, each independently with probability p: the
    gaps between drops are geometric, floor(log(U) / log(1 - p)) kept elements before each drop for U uniform in
    (0, 1]. Draws the expected number of drops and `spare` standard deviations more, and more again in the rare
    case that those end before n. One float32 draw per dropped element instead of 16 random bits per element."""
    import torch

    log_keep = math.log1p(-p)
    ends, start = [], 0
    while start < n:  # `start`: the first index not yet decided
        left = (n - start) * p  # the drops expected in what is left
        # U uniform in (0, 1]: log(0) would be an infinite gap
        u = torch.rand(max(int(left + spare * math.sqrt(left)), 0) + 16, device=device).neg_().add_(1)
        positions = u.log_().div_(log_keep).floor_().to(torch.int64).add_(1).cumsum_(0).add_(start - 1)
        ends.append(positions)
        start = int(positions[-1]) + 1
    if not ends:  # n == 0
        return torch.empty(0, dtype=torch.int64, device=device)
    positions = torch.cat(ends) if len(ends) > 1 else ends[0]
    return positions[: int(torch.searchsorted(positions, n))]


@functools.cache  # built on first use, since importing this module must not import torch
def _dropout_functions() -> tuple[type, type]:
    """The two autograd functions CheapDropout applies its mask with: KeepScale (a bool mask) and ScaleZero (the
    dropped positions)."""
    import torch

    class KeepScale(torch.autograd.Function):
        """x * keep * scale in one pass each way (addcmul rounds x * scale once, as x * scale would)."""

        @staticmethod
        def forward(ctx: Any, x: Any, keep: Any, scale: float) -> Any:
            ctx.save_for_backward(keep)  # bool: 1 byte per element kept for backward, not x's 2 or 4
            ctx.scale = scale
            return torch.addcmul(x.new_zeros(()), x, keep.to(x.dtype), value=scale)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, None, None]:
            (keep,) = ctx.saved_tensors
            return torch.addcmul(grad.new_zeros(()), grad, keep.to(grad.dtype), value=ctx.scale), None, None

    class ScaleZero(torch.autograd.Function):
        """x * scale with the dropped elements zeroed, each way: one pass over x and a write per dropped element."""

        @staticmethod
        def forward(ctx: Any, x: Any, dropped: Any, scale: float) -> Any:
            ctx.save_for_backward(dropped)  # int64 indices: 8 bytes per dropped element (0.4 per element at p 0.05)
            ctx.scale = scale
            return (x * scale).contiguous().view(-1).index_fill_(0, dropped, 0).view(x.shape)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, None, None]:
            (dropped,) = ctx.saved_tensors
            return (grad * ctx.scale).contiguous().view(-1).index_fill_(0, dropped, 0).view(grad.shape), None, None

    return KeepScale, ScaleZero


@functools.cache  # one class: built on first use, since importing this module must not import torch
def cheap_dropout_class() -> type:
    import torch

    KeepScale, ScaleZero = _dropout_functions()

    class CheapDropout(torch.nn.Module):
        """Inverted dropout whose mask costs a fraction of nn.Dropout's (one Mersenne-twister draw per element).

        Up to p = GAP_MAX_P (LoRA's usual 0.05 and 0.1) it draws only the positions of the dropped elements
        (dropped_positions: one uniform each, p exact) and zeroes them in x * scale, forward and backward
        (ScaleZero). Forward + backward of two packed demo batches (663 and 2,553 tokens), median of 6 alternating
        in one process: 9.09 s with 16-bit draws and a bool mask, 8.68 s with the gaps made into that mask, 8.51 s
        with ScaleZero (-6.4%). Above GAP_MAX_P each 64-bit random word gives four 16-bit draws (p rounded to
        1/32768) and the bool mask is applied with the scale in one addcmul each way (KeepScale): 2.9 vs 3.9 ms
        (bf16, 8 x 300 x 576) against a mask-then-two-multiplies, the bool mask saving 0.7 GiB at 4 x 1,024 tokens
        against one in x's dtype.
        """

        def __init__(self, p: float, gaps: bool | None = None) -> None:  # gaps: None = up to GAP_MAX_P
            super().__init__()
            self.p, self.gaps = p, p <= GAP_MAX_P if gaps is None else gaps
            self.threshold = round(p * 32768)  # the 16-bit draws' p, in 1/32768ths
            self.cut = -32768 + 2 * self.threshold
            self.scale = 1 / (1 - p) if self.gaps else 32768 / (32768 - self.threshold)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p == 0 or (not self.gaps and self.threshold == 0):
                return x
            n = x.numel()
            if self.gaps:
                return ScaleZero.apply(x, dropped_positions(n, self.p, x.device), self.scale)
            # a 16-bit draw v (uniform over -32768..32767) drops its element when v < cut
            words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
            keep = words.view(torch.int16)[:n].view(x.shape) >= self.cut  # random_(-2**63): every bit random
            return KeepScale.apply(x, keep, self.scale)

        def extra_repr(self) -> str:
            return f"p={self.p}"

    return CheapDropout
