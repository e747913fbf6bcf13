"""train.compile: graphs, a GPU candidate (issue 27): each step's packed row padded to one of a few lengths, the
decoder layers compiled once (torch.compile, dynamic lengths) in its "reduce-overhead" mode, which records each
layer's forward and backward as CUDA graphs, one per length, and replays them: a launch per graph instead of one
per op.

Why: on the lent H200 (issue 27) a SmolLM2-1.7B-shaped LoRA step took 0.3-0.55 s whatever its tokens (638 or
2,459), where its matmuls are ~5 ms: the host dispatching ops, not the GPU computing them. Counted on the CPU
(docs/benchmarks.md, "Ops a step dispatches"), a tunesmith step dispatches thousands of ops; compiled layers
(train.compile: layers) 2.5x fewer, each still launched from Python. A CUDA graph replays a layer's kernels from
one call. Graphs are recorded per input shape: the packed length changes at every step, so this module pads it
(`pad_packed`) to the next rung of a ladder of lengths (`bucket_length`: 2^k and 3 x 2^(k-1), at most 1.5x the
step's tokens), one more row of pad tokens at the end that no label reads and no row attends to, and a run meets a
handful of lengths (the demo's 8-row steps, 400-900 tokens: 512, 768 and 1,024).

Not yet timed on a GPU (no device was lent in sessions 12 to 20): a candidate, chosen only by train.compile: graphs
(bench: tunesmith-graphs, first of bench/gpu_check.sh's candidates), and kept only if the bench shows it. On a CPU
there is nothing to replay: train and plan refuse it there (check). Before a new step's forward the graphs are told
a step begins (`marked_steps`), so that outputs of the last step's graphs, all read by then, may be overwritten.
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


def pad_packed(batch: dict[str, Any], pad_id: int) -> dict[str, Any]:
    """A padding-free batch (TRL's collator: one row of rows, positions restarting at 0, row bounds made on the
    host) padded to bucket_length with one more row of pad tokens: labels -100, its own positions 0, 1, ... (so
    no real row attends to it, nor it to them), its bounds added to cu_seq_lens and seq_idx. max_length_q/k become
    the padded length, an upper bound on every row (what the varlen kernel sizes its grid by), so that it too is one
    value per length and not a new graph per step."""
    import torch

    ids = batch["input_ids"]
    if "attention_mask" in batch or ids.shape[0] != 1:
        raise ValueError("pad_packed takes a padding-free batch (one packed row, no attention mask)")
    length = ids.shape[1]
    extra = bucket_length(length) - length
    if extra == 0:
        return batch
    out = dict(batch)
    out["input_ids"] = torch.cat([ids, ids.new_full((1, extra), pad_id)], dim=1)
    out["labels"] = torch.cat([batch["labels"], batch["labels"].new_full((1, extra), -100)], dim=1)
    positions = batch["position_ids"]
    out["position_ids"] = torch.cat([positions, torch.arange(extra, dtype=positions.dtype)[None]], dim=1)
    for key in ("cu_seq_lens_q", "cu_seq_lens_k"):
        if key in batch:
            bounds = batch[key]
            out[key] = torch.cat([bounds, bounds.new_tensor([length + extra])])
    for key in ("max_length_q", "max_length_k"):
        if key in batch:
            out[key] = length + extra
    if "seq_idx" in batch:
        index = batch["seq_idx"]
        rows = int(index[0, -1]) + 1 if index.numel() else 0
        out["seq_idx"] = torch.cat([index, index.new_full((1, extra), rows)], dim=1)
    return out


class Bucketed:
    """A padding-free collator whose batches come out padded by pad_packed (train.run_trainer wraps TRL's)."""

    def __init__(self, collate: Any, pad_id: int) -> None:
        self.collate, self.pad_id = collate, pad_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_packed(self.collate(examples), self.pad_id)


@contextlib.contextmanager
def marked_steps(model: Any) -> Iterator[None]:
    """Around the training loop: every forward pass of `model` first tells torch a new step begins
    (torch.compiler.cudagraph_mark_step_begin). The graphs' outputs live in memory that later replays overwrite;
    the mark says that none of the last step's is read any more (without it torch infers steps from the order of
    forward and backward calls). At the start of a forward pass the last micro-batch's backward is done, and an
    evaluation keeps nothing between its batches."""
    import torch

    hook = model.register_forward_pre_hook(lambda *_: torch.compiler.cudagraph_mark_step_begin())
    try:
        yield
    finally:
        hook.remove()
