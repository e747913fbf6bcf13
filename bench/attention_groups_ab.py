"""Packed rows' attention in length groups against one group, inside a training step, alternating.

Run: LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4 .venv/bin/python bench/attention_groups_ab.py [--rounds 6]
The demo config's model as `train` prepares it on the CPU (frozen weights in bf16, cheap dropout, fastpath.cpu_step)
and three packed batches of 8 demo rows drawn at random (seeded), as random batches (train.group_by_length off)
give them: forward + backward under bf16 autocast per round and variant, the order alternating each round:
  one     every row of the batch padded to the batch's longest for attention (attention.GROUP_COST huge)
  groups  attention.length_groups: rows of similar length padded together (the default)
Prints each batch's row lengths and groups, the seconds of each round and the medians, and JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from ab import alternate, fwd_bwd_seconds, packed

from tunesmith import attention, fastpath, models, pipeline, train
from tunesmith.config import load
from tunesmith.data.prepare import prepare

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def batches(cfg, tok, count: int = 3, seed: int = 0):  # noqa: ANN001, ANN201
    """`count` packed batches of 8 training rows drawn at random, as TRL's padding-free collator makes them."""
    _, rows, _ = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    draw = random.Random(seed)
    picked = [draw.sample(rows, 8) for _ in range(count)]
    return [packed(tok, batch) for batch in picked], [[len(e.input_ids) for e in batch] for batch in picked]


def main() -> None:
    from peft import get_peft_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    cfg = load(DEMO, [])
    tok = models.load(cfg.model, tokenizer_only=True)[1]
    work, lengths = batches(cfg, tok)
    model = get_peft_model(pipeline._starting_model(cfg)[0], train.peft_config(cfg))
    fastpath.frozen_to_half(model)
    fastpath.cheap_dropout(model)
    model.train()
    costs = {"one": 10**12, "groups": attention.GROUP_COST}

    def use(variant: str) -> None:
        attention.GROUP_COST = costs[variant]
        attention.length_groups.cache_clear()

    with fastpath.cpu_step(model, cfg):
        fwd_bwd_seconds(model, work)  # warm-up
        seconds = alternate(list(costs), args.rounds, use, lambda: fwd_bwd_seconds(model, work))
    attention.GROUP_COST = costs["groups"]
    attention.length_groups.cache_clear()
    groups = [[[n[i] for i in g] for g in attention.length_groups(tuple(n))] for n in lengths]
    for n, g in zip(lengths, groups):
        print(f"rows {n} -> groups {g}")
    for variant, times in seconds.items():
        print(f"{variant:6s} {times}  median {statistics.median(times):.3f} s")
    print(json.dumps({"lengths": lengths, "groups": groups, "seconds": seconds,
                      "median": {v: statistics.median(t) for v, t in seconds.items()}}))


if __name__ == "__main__":
    main()
