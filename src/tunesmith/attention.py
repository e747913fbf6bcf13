"""Attention for training short rows on the CPU: the whole score matrix in bf16 matmuls, not SDPA's CPU kernel.

torch's CPU flash-attention kernel (what SDPA runs on the CPU) works in 64-query blocks with the softmax in fp32 and
reached 107-135 GFLOP/s (a quarter of this machine's bf16 matmul) on the demo's rows: with a padding mask it skips
no block, and at 8 x 326 tokens attention was 19% of a training step. Two batched bf16 matmuls over the whole
[query x key] matrix, the softmax in fp32 and a hand-written backward (flash attention's: dS = P * (dP - rowsum(dO *
O))) took a training step (fwd + bwd of a 8 x 85 and a 8 x 326 batch, SmolLM2-135M, 2 Zen 4 cores) from 11.49 s to
10.15 s (median of 8, alternating), with outputs and gradients within one bf16 rounding of SDPA's. The price is the
probabilities kept for backward, B x H x L x L bf16 per layer: taken only while that is at most MAX_SCORE_BYTES
(longer rows go to SDPA, whose memory grows linearly), and counted by plan's memory estimate (kept_bytes).

Padding-free batches (one row of rows, positions restarting at 0; train.padding_free) are padded again
here for attention alone, so the projections, MLP and norms run on real tokens only while attention keeps its
padded cost; SDPA's block-diagonal mask for such a row was 2x slower on long rows. The rows are padded in groups
of similar length (length_groups): on random batches of the demo's rows (English ~85 tokens, Korean ~300), fwd +
bwd of three batches took 10.99 s instead of 12.79 with every row padded to the batch's longest (median of 6,
alternating; bench/attention_groups_ab.py).

Only where it was measured: training under bf16 autocast on the CPU (and its eval batches, when packed),
self-attention without a cache, a boolean mask or none (causal); in fp32 on the CPU (no autocast: a CPU without
native bf16) only padding-free batches, padded again for SDPA (fp32 8-step demo runs: 116.6 tokens/s against 117.2
with length-grouped padded rows, the peak 1.8 GiB lower). Everything else (generation, CUDA, fp16, soft caps,
attention dropout, padded fp32 rows) calls transformers' SDPA function unchanged. train switches it on around the
loop only (`used_by`), so the saved model and every later generation use SDPA as loaded.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

NAME = "tunesmith_cpu"
# bf16 probabilities kept per layer per batch. 32 MiB = 8 rows x 9 heads x 482 tokens (SmolLM2-135M); the matrix
# path was still 1.3x faster than masked SDPA at 4 x 700 (alone, fwd + bwd) and no faster at 4 x 1024.
MAX_SCORE_BYTES = 32 * 2**20


def fits(batch: int, heads: int, length: int) -> bool:
    """Whether a batch takes the matrix path (its probabilities fit MAX_SCORE_BYTES)."""
    return batch * heads * length * length * 2 <= MAX_SCORE_BYTES


def kept_bytes(arch: Any, batch: int, length: int) -> int:
    """Bytes of probabilities all layers keep for backward at one batch of `batch` rows of `length` tokens (padded
    rows: one length group)."""
    return kept_bytes_packed(arch, (length,) * batch)


def kept_bytes_packed(arch: Any, lengths: tuple[int, ...]) -> int:
    """Bytes of probabilities all layers keep for backward at one padding-free batch of rows of these lengths: each
    length group padded to its longest (length_groups), the matrix path taken for all or none, as `_packed` does."""
    heads = getattr(arch, "num_attention_heads", 12)
    layers = getattr(arch, "num_hidden_layers", 12)
    if not fits(len(lengths), heads, max(lengths)):
        return 0
    return layers * heads * 2 * sum(len(rows) * max(lengths[r] for r in rows) ** 2 for rows in length_groups(lengths))


@functools.cache  # built on first use: importing this module must not import torch
def _function() -> type:
    import torch

    class MatrixAttention(torch.autograd.Function):
        """softmax(Q K^T * scale + mask) V with grouped K/V heads; bf16 matmuls and storage, the softmax and its
        backward computed in fp32 (each [L x L] pass reads and writes bf16: 2 passes forward, 2 backward)."""

        @staticmethod
        def forward(ctx: Any, q: Any, k: Any, v: Any, mask: Any, scaling: float) -> Any:
            b, h, n, d = q.shape
            groups = h // k.shape[1]  # query heads per K/V head, as repeat_kv orders them
            qg = (q * scaling).to(torch.bfloat16).reshape(b, k.shape[1], groups * n, d)
            kb, vb = k.to(torch.bfloat16), v.to(torch.bfloat16)
            scores = torch.matmul(qg, kb.transpose(-1, -2)).view(b, k.shape[1], groups, n, n)
            scores.masked_fill_(~mask.view(mask.shape[0], 1, 1, n, n), torch.finfo(torch.bfloat16).min)
            p = torch.softmax(scores, dim=-1).view(b, k.shape[1], groups * n, n)  # computed in fp32, stored bf16
            out = torch.matmul(p, vb)
            ctx.save_for_backward(qg, kb, vb, p, out)
            ctx.scaling, ctx.dtypes = scaling, (q.dtype, k.dtype, v.dtype)
            return out.view(b, h, n, d)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, ...]:
            qg, kb, vb, p, out = ctx.saved_tensors
            b, kv, gn, d = qg.shape
            dout = grad.to(torch.bfloat16).reshape(b, kv, gn, d)
            dv = torch.matmul(p.transpose(-1, -2), dout)  # sums over the query heads sharing each K/V head
            dp = torch.matmul(dout, vb.transpose(-1, -2))
            delta = (dout.float() * out.float()).sum(-1, keepdim=True)  # rowsum(dP * P), as flash attention
            ds = torch.mul(p, dp - delta, out=torch.empty_like(p))  # fp32 arithmetic, one bf16 rounding
            dq = torch.matmul(ds, kb) * ctx.scaling
            dk = torch.matmul(ds.transpose(-1, -2), qg)  # qg carries the scale already
            q_dtype, k_dtype, v_dtype = ctx.dtypes
            n = kb.shape[2]
            return dq.view(b, gn // n * kv, n, d).to(q_dtype), dk.to(k_dtype), dv.to(v_dtype), None, None

    return MatrixAttention


def _sdpa() -> Any:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward


def _matrix_mask(module: Any, query: Any, mask: Any, kwargs: dict[str, Any]) -> Any:
    """The boolean [B or 1, 1, L, L] mask the matrix path applies, or None where it must leave the call to SDPA."""
    import torch

    n = query.shape[2]
    if mask is None:  # transformers drops the mask where it is only causal
        if not getattr(module, "is_causal", True) or kwargs.get("sliding_window") is not None:
            return None
        return torch.ones(n, n, dtype=torch.bool, device=query.device).tril_()[None, None]
    if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != (n, n):
        return None
    return mask


def attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
              scaling: float | None = None, is_causal: bool | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-function signature: query [B, H, L, D], key/value [B, KV, L, D] -> ([B, L, H, D], None)."""
    import torch

    b, h, n, d = query.shape
    scaling = scaling if scaling is not None else d ** -0.5
    usable = (query.device.type == "cpu" and not dropout and key.shape[2] == n
              and kwargs.get("softcap") is None and kwargs.get("position_bias") is None)
    half = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    full = not torch.is_autocast_enabled("cpu") and query.dtype == torch.float32
    starts = _packed_starts(kwargs.get("position_ids")) if usable and (half or full) and b == 1 else None
    if starts is not None and getattr(module, "is_causal", True) and kwargs.get("sliding_window") is None:
        # training and its eval batches (no gradients there): SDPA's block-diagonal mask was 2x slower
        return _packed(module, query, key, value, starts, scaling, kwargs, matrix=half)
    matrix = usable and half and torch.is_grad_enabled() and fits(b, h, n)
    mask = _matrix_mask(module, query, attention_mask, kwargs) if matrix else None
    if mask is None:
        return _sdpa()(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                       is_causal=is_causal, **kwargs)
    out = _function().apply(query, key, value, mask, scaling)
    return out.transpose(1, 2).contiguous(), None


def _packed_starts(position_ids: Any) -> Any:
    """Where each row starts in a padding-free batch (one row of rows, positions restarting at 0), or None."""
    if position_ids is None or position_ids.shape[0] != 1:
        return None
    starts = (position_ids[0] == 0).nonzero().flatten()
    return starts if len(starts) > 1 and int(starts[0]) == 0 else None


def _packed(module: Any, query: Any, key: Any, value: Any, starts: Any, scaling: float,
            kwargs: dict[str, Any], *, matrix: bool) -> tuple[Any, None]:
    """A padding-free batch: the rows are padded again for attention alone (the projections, MLP and norms ran
    on real tokens only), in groups of similar length (length_groups), attended with a padding mask, and put back
    in packed order."""
    import torch

    total = query.shape[2]
    lengths = torch.diff(torch.cat([starts, starts.new_tensor([total])]))
    sizes = tuple(lengths.tolist())
    # The matrix path for every group or none, decided as for the rows padded to the longest: groups of fewer rows
    # would each fit and together keep more than MAX_SCORE_BYTES (long rows: 6.5 GiB peak instead of 5.3)
    matrix = matrix and fits(len(sizes), query.shape[1], max(sizes))
    outs, where = [], []
    for rows in length_groups(sizes):
        index, real, out = _attend_rows(module, (query, key, value), starts, lengths, rows,
                                        max(sizes[r] for r in rows), (scaling, matrix, kwargs))
        outs.append(out.reshape(-1, out.shape[-2], out.shape[-1]).index_select(0, real))  # [real tokens, H, D]
        where.append(index.index_select(0, real))  # their places in the packed row
    if len(outs) == 1:  # one group: its tokens are in packed order already
        return outs[0][None], None
    order = torch.cat(where).argsort()
    return torch.cat(outs).index_select(0, order)[None], None


def _attend_rows(module: Any, qkv: tuple[Any, Any, Any], starts: Any, lengths: Any, rows: tuple[int, ...],
                 longest: int, how: tuple[float, bool, dict[str, Any]]) -> tuple[Any, Any, Any]:
    """Attention over some rows of a packed batch, each padded to the longest of them, `how` being (scaling, the
    matrix path or SDPA, the attention call's other arguments): (each padded slot's place in the packed row, the
    flat indices of the real slots, the output [rows, longest, H, D])."""
    import torch

    query, key, value = qkv
    scaling, matrix, kwargs = how
    total = query.shape[2]
    picked = torch.tensor(rows, device=query.device)
    sizes, firsts = lengths.index_select(0, picked), starts.index_select(0, picked)
    offsets = torch.arange(longest, device=query.device)
    real = offsets[None, :] < sizes[:, None]  # [rows, longest]
    index = torch.where(real, firsts[:, None] + offsets[None, :], total).flatten()  # padding reads a zero row

    def padded(x: Any) -> Any:  # [1, H, T, D] -> [rows, H, longest, D]
        x = torch.cat([x[0], x.new_zeros(x.shape[1], 1, x.shape[3])], dim=1)
        return x.index_select(1, index).view(x.shape[0], len(rows), longest, x.shape[2]).transpose(0, 1)

    q, k, v = padded(query), padded(key), padded(value)
    mask = torch.ones(longest, longest, dtype=torch.bool, device=query.device).tril_()[None, None] \
        & real[:, None, None, :]
    if matrix:
        out = _function().apply(q, k, v, mask, scaling).transpose(1, 2)
    else:
        kw = {name: arg for name, arg in kwargs.items() if name != "position_ids"}
        out = _sdpa()(module, q, k, v, mask, scaling=scaling, **kw)[0]
    return index, real.flatten().nonzero().flatten(), out


# What one more group costs beside its arithmetic, in padded score elements (rows x longest^2): a group's ~40 ops
# (padding, mask, the function each way) took ~0.6 ms a layer on the 2-vCPU Zen 4, the score elements of one
# 128-token row at SmolLM2-135M's 9 x 64 head width
GROUP_COST = 128 * 128


@functools.lru_cache(maxsize=256)  # a step's rows: every layer of its forward asks again
def length_groups(lengths: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The rows (indices into `lengths`) split into groups attended together, each padded to its longest row:
    rows sorted by length, cut where padding would cost more than a group (GROUP_COST), so that a step of mixed
    lengths (random batches) pays about what the rows cost alone. Exact: dynamic programming over the sorted rows."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sizes = [lengths[i] for i in order]
    best = [0] + [0] * len(sizes)  # best[j]: the cheapest cost of the first j sorted rows
    cut = [0] * (len(sizes) + 1)
    for j in range(1, len(sizes) + 1):
        best[j], cut[j] = min((best[i] + (j - i) * sizes[j - 1] ** 2 + GROUP_COST, i) for i in range(j))
    groups, j = [], len(sizes)
    while j:
        groups.append(tuple(sorted(order[cut[j]:j])))  # in packed order: one group needs no reordering
        j = cut[j]
    return tuple(reversed(groups))


def register() -> None:
    """Make NAME a transformers attention implementation, with SDPA's boolean masks."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


@contextlib.contextmanager
def used_by(model: Any) -> Iterator[bool]:
    """Train `model` (a PeftModel or a transformers model) with this attention; yields whether it was switched."""
    register()
    with switched(model, NAME) as done:
        yield done


@contextlib.contextmanager
def switched(model: Any, name: str) -> Iterator[bool]:
    """Switch `model` to the registered attention implementation `name` for the block; yields whether it was.

    Only a model on SDPA is switched (eager, flash-attention or flex chosen by the user stay); the implementation it
    had comes back on exit, errors included. varlen.py switches through here too.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = getattr(base.config, "_attn_implementation", None)
    if before != "sdpa" or not hasattr(base, "set_attn_implementation"):
        yield False
        return
    base.set_attn_implementation(name)
    try:
        yield True
    finally:
        base.set_attn_implementation(before)
