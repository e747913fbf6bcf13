"""What makes a training step cheap on top of TRL's loop, each kept because a profile showed it (the numbers are
in each docstring): frozen linear weights stored in bf16 (frozen_to_bf16), the fused LM head scoring only the
supervised positions on the CPU too (supervised_logits_only), and LoRA dropout drawn 4 elements per random word
(cheap_dropout). train.train applies them; plan's memory estimate asks frozen_in_bf16.
"""

from __future__ import annotations

import functools
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.runtime import choose_precision


def frozen_in_bf16(cfg: RunConfig) -> bool:
    """Whether training stores the frozen linear weights in bf16 (frozen_to_bf16): LoRA on an unquantised base
    under bf16 autocast. The plan's memory estimate asks the same question."""
    t = cfg.train
    return t.method == "lora" and t.load_in == "none" and choose_precision(t.precision) == "bf16"


def frozen_to_bf16(model: Any) -> int:
    """Store the frozen weights of linear layers in bf16; returns how many parameters changed.

    Under bf16 autocast every matmul casts its fp32 weight to bf16 first, and autocast caches that copy only for
    weights that require grad: the frozen base of a LoRA model was cast again in every forward of every
    micro-batch (~0.65 GB of memory traffic per forward for SmolLM2-135M) and the copies saved for backward
    sat beside the fp32 originals. Pre-cast weights give bit-identical matmuls. Embeddings, norms and the LM
    head (tied to the embeddings in many small models) stay fp32, so the residual stream adds in fp32 as before;
    the LoRA weights and their optimizer state stay fp32.
    """
    import torch

    tied = {id(p) for p in model.get_input_embeddings().parameters()}
    changed = 0
    for module in model.modules():
        w = getattr(module, "weight", None)
        if (isinstance(module, torch.nn.Linear) and w is not None and not w.requires_grad
                and w.dtype == torch.float32 and id(w) not in tied):
            module.weight.data = w.data.to(torch.bfloat16)
            if module.bias is not None and not module.bias.requires_grad:
                module.bias.data = module.bias.data.to(torch.bfloat16)
            changed += w.numel()
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


def cheap_dropout(model: Any) -> int:
    """Replace the LoRA adapters' dropout layers with cheap_dropout_class(); returns how many were replaced.

    torch.profiler on the demo (3 steps, 210 adapted layers): `aten::bernoulli_` of nn.Dropout took 19% of the
    CPU time, as much as half of all matmuls: one Mersenne-twister draw per element (~5 ns). Same p, same
    scaling, a mask drawn 4 elements per 64-bit random word.
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


@functools.cache  # one class: built on first use, since importing this module must not import torch
def cheap_dropout_class() -> type:
    import torch

    class CheapDropout(torch.nn.Module):
        """Inverted dropout with p quantised to 1/32768: each 64-bit random word gives four 15-bit draws."""

        def __init__(self, p: float) -> None:
            super().__init__()
            self.p, self.threshold = p, round(p * 32768)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.threshold == 0:
                return x
            n = x.numel()
            words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
            keep = (words.view(torch.int16)[:n].view(x.shape) & 0x7FFF) >= self.threshold
            return x * keep * (32768 / (32768 - self.threshold))

        def extra_repr(self) -> str:
            return f"p={self.p}"

    return CheapDropout
