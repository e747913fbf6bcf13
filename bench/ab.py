"""In-process A/B timing for the bench scripts that compare variants of one training step (dropout_ab.py,
attention_groups_ab.py): whole-run timings move 5-10% between runs on a 2-vCPU VM, so a small effect is measured
as the same forward + backward, the variants alternating round by round in one process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def packed(tok: Any, rows: list) -> dict:  # noqa: ANN401
    """Rendered rows as one padding-free batch, as TRL's collator makes it for tunesmith's training."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collate = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)
    batch = collate([{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in rows])
    return {k: v for k, v in batch.items() if k in ("input_ids", "labels", "position_ids")}


def padded(tok: Any, rows: list) -> dict:  # noqa: ANN401
    """Rendered rows as one batch padded to its longest row, as TRL's collator makes it with padding_free off."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collate = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)
    batch = collate([{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in rows])
    return {k: v for k, v in batch.items() if k in ("input_ids", "labels", "attention_mask")}


def fwd_bwd_seconds(model: Any, batches: list[dict], bf16: bool = True) -> float:  # noqa: ANN401
    """Seconds of forward + backward over the batches under bf16 autocast, or in fp32 (gradients dropped after)."""
    import torch

    start = time.perf_counter()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def alternate(variants: list[str], rounds: int, use: Callable[[str], None],
              step: Callable[[], float]) -> dict[str, list[float]]:
    """Each round times every variant once (`use` switches to it), the order reversed every other round."""
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(rounds):
        for variant in variants if i % 2 == 0 else variants[::-1]:
            use(variant)
            seconds[variant].append(round(step(), 3))
    return seconds
