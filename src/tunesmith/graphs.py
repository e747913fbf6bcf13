"""train.compile: graphs, a GPU candidate (issue 27): each step's packed row padded to one of a few lengths, the
decoder layers compiled once (torch.compile, dynamic lengths) in its "reduce-overhead" mode, which records each
layer's forward and backward as CUDA graphs, one per length, and replays them: a launch per graph instead of one
per op.

Why: on the lent H200 (issue 27) a SmolLM2-1.7B-shaped LoRA step took 0.3-0.55 s whatever its tokens (638 or
2,459), where its matmuls are ~5 ms: the host dispatching ops, not the GPU computing them. Counted on the CPU
(docs/benchmarks.md, "Ops a step dispatches"), a step on the GPU's path of a 24-layer model dispatches 6,000-8,400
ops; compiled layers (train.compile: layers) 2.5x fewer, each still launched from Python. A CUDA graph replays a
layer's kernels from one call. Graphs are recorded per input shape, and the packed length changes at every step: the decoder takes
each packed row padded (`pad_packed`) to the next rung of a ladder of lengths (`bucket_length`: 2^k and 3 x 2^(k-1),
at most 1.5x the step's tokens) with one more row of pad tokens that no row attends to, and gives back the real
tokens' hidden states (`used_by`), so a run meets a handful of lengths (the demo's 8-row steps, 400-900 tokens: 512,
768 and 1,024) while the loss, TRL's token counts and the logged tokens/s see the rows as they are.

Not yet timed on a GPU (no device was lent in sessions 12 to 20): a candidate, chosen only by train.compile: graphs
(bench: tunesmith-graphs, run by bench/gpu_check.sh after (b) and tunesmith), and kept only if the bench shows it.
On a CPU there is nothing to replay: train and plan refuse it there (train.check_graphs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

SHORTEST = 128  # the lowest rung: shorter steps are padded to it


def bucket_length(tokens: int) -> int:
    """The length a packed row of `tokens` tokens is padded to: the smallest 2^k or 3 x 2^(k-1) not below it (and
    not below SHORTEST), so at most 1.5x the tokens, and two lengths per doubling."""
    if tokens <= SHORTEST:
        return SHORTEST
    power = 1 << (tokens - 1).bit_length()  # the smallest power of two >= tokens
    three_quarters = 3 * power // 4
    return three_quarters if three_quarters >= tokens else power


def unavailable() -> str | None:
    """Why train.compile: graphs cannot train here, or None where it can."""
    import torch

    if not torch.cuda.is_available():
        return "CUDA graphs need a CUDA GPU (on a CPU torch.compile records none, and compiled layers were slower)"
    return None


def pad_packed(inputs: dict[str, Any], pad_id: int) -> dict[str, Any]:
    """A padding-free batch (TRL's collator: one row of rows, positions restarting at 0, row bounds made on the
    host), or the decoder's keyword arguments for one, padded to bucket_length with one more row of pad tokens:
    its own positions 0, 1, ... (so no real row attends to it, nor it to them), labels -100 where labels are given,
    its bounds added to cu_seq_lens and seq_idx. max_length_q/k become the padded length, an upper bound on every
    row (what the varlen kernel sizes its grid by), so that it too is one value per length and not a new graph per
    step. Shapes only are read: no wait for the device."""
    import torch

    ids = inputs["input_ids"]
    length = ids.shape[1]
    extra = bucket_length(length) - length
    if extra == 0:
        return inputs
    out = dict(inputs)
    out["input_ids"] = torch.cat([ids, ids.new_full((1, extra), pad_id)], dim=1)
    if inputs.get("labels") is not None:
        out["labels"] = torch.cat([inputs["labels"], inputs["labels"].new_full((1, extra), -100)], dim=1)
    positions = inputs["position_ids"]
    tail = torch.arange(extra, dtype=positions.dtype, device=positions.device)[None]
    out["position_ids"] = torch.cat([positions, tail.expand(positions.shape[0], -1)], dim=1)
    rows = None
    for key in ("cu_seq_lens_q", "cu_seq_lens_k"):
        if inputs.get(key) is not None:
            bounds = inputs[key]
            rows = bounds.shape[0] - 1
            out[key] = torch.cat([bounds, bounds.new_full((1,), length + extra)])
    for key in ("max_length_q", "max_length_k"):
        if inputs.get(key) is not None:
            out[key] = length + extra
    if inputs.get("seq_idx") is not None:  # the pad row's index: the next one (any index no real row has)
        index = inputs["seq_idx"]
        out["seq_idx"] = torch.cat([index, index.new_full((1, extra), length if rows is None else rows)], dim=1)
    return out


def packed(kwargs: dict[str, Any]) -> bool:
    """Whether the decoder's keyword arguments are one packed row (padding-free: position ids, no padding mask)."""
    ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
    return (ids is not None and ids.dim() == 2 and ids.shape[0] == 1 and kwargs.get("position_ids") is not None
            and (mask is None or mask.dim() != 2))


@contextlib.contextmanager
def used_by(model: Any) -> Iterator[None]:
    """Around the training loop: the decoder of `model` takes each packed row padded by pad_packed and gives back
    the hidden states of the row's own tokens (the LM head and the loss, TRL's, and its token counts never see the
    pad row); and each forward pass of `model` first tells torch that a new step begins
    (torch.compiler.cudagraph_mark_step_begin). The graphs' outputs live in memory that later replays overwrite;
    the mark says that none of the last step's is read any more (without it torch infers steps from the order of
    forward and backward calls). At the start of a forward pass the last micro-batch's backward is done, and an
    evaluation keeps nothing between its batches. The pad row's token is the model's pad token (or 0: no label
    reads it and no row attends to it)."""
    import torch

    decoder = model.get_decoder()
    pad_id = getattr(model.config, "pad_token_id", None) or 0
    length = [-1]  # the row's own length in the decoder's current call (-1: not padded); set anew by each call

    def pad(module: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]] | None:
        length[0] = -1 if args or not packed(kwargs) else kwargs["input_ids"].shape[1]
        return None if length[0] < 0 else (args, pad_packed(kwargs, pad_id))

    def cut(module: Any, args: tuple, output: Any) -> Any:
        if length[0] < 0:
            return None
        if isinstance(output, tuple):
            return (output[0][:, :length[0]], *output[1:])
        output["last_hidden_state"] = output["last_hidden_state"][:, :length[0]]
        return output

    hooks = [decoder.register_forward_pre_hook(pad, with_kwargs=True), decoder.register_forward_hook(cut),
             model.register_forward_pre_hook(lambda *_: torch.compiler.cudagraph_mark_step_begin())]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
