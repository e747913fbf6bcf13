"""Packed rows' attention on a CUDA GPU through PyTorch's own FlashAttention varlen kernel (train.attention: varlen).

A padding-free step is one row of rows, positions restarting at 0 (train.padding_free; on by default with a GPU).
transformers' SDPA path attends it through a [T x T] block-diagonal mask built from the position ids at every
forward, and with an arbitrary mask SDPA cannot take its flash kernel: the memory-efficient kernel scores every
(query, key) pair of the packed row, T^2, where causal rows need sum(len^2) / 2: 11.7x that on the demo's rows (8 a
step drawn at random, mean of 200 draws), 7.9x on issue 27's long rows (4 of ~966 tokens; counted on
bench/gpu_check.sh's rows with SmolLM2's tokenizer). transformers' own varlen path
(flash_attention_2) needs the flash-attn package, built against the CUDA toolkit; torch >= 2.10 ships the same FA2
varlen kernel as `torch.nn.attention.varlen.varlen_attn`, fed here by what TRL's padding-free collator already
computes on the host (cu_seq_lens_q, max_length_q): no mask (transformers still reads the position ids back once a
forward to see that the rows are packed; registering no mask function would skip that, and drop a padded batch's
mask with it).

Not yet timed on a GPU (sessions 12-19 had none lent): a candidate, chosen only by train.attention: varlen (bench:
tunesmith-varlen, run by bench/gpu_check.sh), and kept as the GPU default only if the bench shows it. Exactly where
it applies: CUDA with compute capability 8.0+ (A100, H100, RTX 30xx/40xx; not a T4 or V100), bf16 or fp16
training, causal self-attention without a cache, soft cap, sliding window or attention dropout (train refuses a
model whose config has them: model_unsupported), and a batch with no padding mask; a padded batch, or one row
alone, goes to transformers' SDPA function unchanged, and a packed batch the kernel cannot take is an error, never
SDPA without the mask that keeps its rows apart. Switched on around the training loop only
(`used_by`), as attention.py's CPU path is: generation and the saved model use the attention they were loaded with.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import Any

from tunesmith import attention as cpu_attention
from tunesmith.errors import TunesmithError

NAME = "tunesmith_varlen"
MIN_CAPABILITY = (8, 0)  # PyTorch's flash kernels: Ampere and later
DEVICES = ("cuda",)  # where the kernel runs (tests/test_varlen.py puts a per-row reference in its place on the CPU)


def unavailable(precision: str) -> str | None:
    """Why the varlen kernel cannot train here (`precision` resolved: fp32, bf16 or fp16), or None where it can."""
    import torch

    if not torch.cuda.is_available():
        return "it needs a CUDA GPU (the kernel is FlashAttention's)"
    capability = torch.cuda.get_device_capability()
    if capability < MIN_CAPABILITY:
        return (f"this GPU's compute capability is {capability[0]}.{capability[1]}; PyTorch's flash kernels need "
                f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or later (A100, H100, RTX 30xx/40xx)")
    if precision not in ("bf16", "fp16"):
        return f"it computes in bf16 or fp16, and this run trains in {precision}"
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return f"this torch ({torch.__version__}) has no torch.nn.attention.varlen (added in 2.10)"
    return None


def sequences(query: Any, kwargs: dict[str, Any]) -> tuple[Any, int] | None:
    """(cumulative row starts as int32 on the query's device, the longest row) of a padding-free batch, or None.

    TRL's collator hands both over (cu_seq_lens_q, max_length_q, made on the host); without them they are read
    from the position ids as attention.py reads them (one wait for the device, once per forward pass and layer)."""
    import torch

    if query.shape[0] != 1:
        return None
    starts, longest = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q")
    if starts is not None and longest is not None:
        return starts.to(device=query.device, dtype=torch.int32), int(longest)
    firsts = cpu_attention._packed_starts(kwargs.get("position_ids"))  # None for one row: plain causal
    if firsts is None:
        return None
    starts = torch.cat([firsts, firsts.new_tensor([kwargs["position_ids"].shape[1]])]).to(torch.int32)
    return starts, int(starts.diff().max())


def _unsupported(module: Any, query: Any, key: Any, dropout: float, kwargs: dict[str, Any]) -> str | None:
    """What in this attention call the kernel path does not cover, or None."""
    import torch

    checks = ((query.device.type not in DEVICES, f"the kernel runs on CUDA, these are on {query.device.type}"),
              (bool(dropout), "attention dropout"), (key.shape[2] != query.shape[2], "a KV cache"),
              (_half(query) not in (torch.bfloat16, torch.float16), "it computes in bf16 or fp16, not fp32"),
              (not getattr(module, "is_causal", True), "bidirectional attention"),
              (kwargs.get("softcap") is not None, "soft-capped attention scores"),
              (kwargs.get("sliding_window") is not None, "sliding-window attention"))
    return next((why for failed, why in checks if failed), None)


def model_unsupported(arch: Any) -> str | None:
    """What in a model's config the kernel path does not cover (the same as `_unsupported`, known before loading)."""
    windowed = "sliding_attention" in (getattr(arch, "layer_types", None) or ()) or (
        getattr(arch, "sliding_window", None) and getattr(arch, "use_sliding_window", True))
    checks = ((bool(windowed), "sliding-window attention"),
              (getattr(arch, "attn_logit_softcapping", None) is not None, "soft-capped attention scores"),
              (bool(getattr(arch, "attention_dropout", 0.0)), "attention dropout"))
    return next((f"this model uses {why}" for failed, why in checks if failed), None)


def _half(query: Any) -> Any:
    """The dtype the kernel computes in: autocast's where it is on, else the query's own (bf16 or fp16)."""
    import torch

    if torch.is_autocast_enabled(query.device.type):
        return torch.get_autocast_dtype(query.device.type)
    return query.dtype


def attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
              scaling: float | None = None, is_causal: bool | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-function signature: query [B, H, L, D], key/value [B, KV, L, D] -> ([B, L, H, D], None).

    `_mask` gave no mask to a batch without a padding mask, so a packed batch the kernel cannot take is an error
    here: SDPA without a mask would let its rows attend to each other."""
    packed = sequences(query, kwargs) if attention_mask is None else None
    why = _unsupported(module, query, key, dropout, kwargs) if packed is not None else None
    if packed is None or (why is not None and len(packed[0]) <= 2):  # padded, or one row: SDPA is exact
        return cpu_attention._sdpa()(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                     is_causal=is_causal, **kwargs)
    if why is not None:
        raise TunesmithError(f"train.attention: varlen cannot attend these packed rows: {why}",
                             fix="use train.attention: auto (--set train.attention=auto)")
    import torch.nn.attention.varlen as kernels

    starts, longest = packed
    half = _half(query)
    q, k, v = (x[0].transpose(0, 1).to(half) for x in (query, key, value))  # [T, heads, D]
    kernel = kernels.varlen_attn
    given = _parameters(kernel)
    how: dict[str, Any] = {"window_size": (-1, 0)} if "window_size" in given else {"is_causal": True}  # 2.10's
    if "enable_gqa" in given:
        how["enable_gqa"] = q.shape[1] != k.shape[1]  # (2.10 takes fewer K/V heads as they are)
    if "scale" in given:
        how["scale"] = scaling
    elif scaling is not None:  # 2.10 scales by 1/sqrt(D), fixed
        q = q * (scaling * q.shape[-1] ** 0.5)
    return kernel(q, k, v, starts, starts, longest, longest, **how)[None], None


@functools.cache
def _parameters(kernel: Any) -> frozenset[str]:
    """The keyword arguments this torch's varlen_attn takes: 2.10 has is_causal; 2.11 on window_size, scale and
    enable_gqa (the GPU machine lent so far runs 2.11, this project 2.13)."""
    return frozenset(inspect.signature(kernel).parameters)


def _mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """No mask where the batch has no padding mask (the rows' bounds come from cu_seq_lens or the position ids);
    SDPA's boolean mask otherwise, for the SDPA call `attention` then makes."""
    from transformers.masking_utils import sdpa_mask

    return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> None:
    """Make NAME a transformers attention implementation."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, _mask)


@contextlib.contextmanager
def used_by(model: Any) -> Iterator[bool]:
    """Train `model` with this attention; yields whether it was switched (only from SDPA, restored on exit)."""
    register()
    with cpu_attention.switched(model, NAME) as switched:
        yield switched
