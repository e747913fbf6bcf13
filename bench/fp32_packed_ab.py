"""fp32 training on a CPU without native bf16 (AVX2 only): padded length-grouped batches against padding-free rows.

Run: LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4 .venv/bin/python bench/fp32_packed_ab.py [--rounds 6]
The demo config's model as `train` prepares it in fp32 (weights as loaded, cheap dropout) and 24 training rows: the
demo's rows sorted by length and cut into batches of 8, as length-grouped batches come (train.group_by_length),
three of those batches drawn (seeded). Forward + backward of the 24 rows per round and variant, alternating:
  grouped   the three length-grouped batches, each padded to its longest row (fp32's default before this bench)
  packed    the same three batches padding-free, attention.py padding them again for attention alone (SDPA)
  random    the same 24 rows shuffled into three padding-free batches, as random batches give them
Prints the rows, the seconds of each round, the medians and real tokens/s, and JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from ab import alternate, fwd_bwd_seconds, packed, padded

from tunesmith import attention, fastpath, models, pipeline, train
from tunesmith.config import load
from tunesmith.data.prepare import prepare

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def draws(cfg, tok, seed: int = 0):  # noqa: ANN001, ANN201
    """Three length-grouped batches of 8 rows (drawn from the sorted epoch) and the same rows shuffled into three."""
    _, rows, _ = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    ordered = sorted(rows, key=lambda e: len(e.input_ids))
    bands = [ordered[i:i + 8] for i in range(0, len(ordered) - 7, 8)]
    draw = random.Random(seed)
    grouped = draw.sample(bands, 3)
    mixed = [e for band in grouped for e in band]
    draw.shuffle(mixed)
    return grouped, [mixed[i:i + 8] for i in range(0, 24, 8)]


def main() -> None:
    from peft import get_peft_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    cfg = load(DEMO, ["train.precision=fp32"])
    tok = models.load(cfg.model, tokenizer_only=True)[1]
    grouped, mixed = draws(cfg, tok)
    work = {"grouped": [padded(tok, b) for b in grouped], "packed": [packed(tok, b) for b in grouped],
            "random": [packed(tok, b) for b in mixed]}
    model = get_peft_model(pipeline._starting_model(cfg)[0], train.peft_config(cfg))
    fastpath.cheap_dropout(model)
    model.train()
    current = {}
    with attention.used_by(model):
        for batches in work.values():
            fwd_bwd_seconds(model, batches, bf16=False)  # warm-up
        seconds = alternate(list(work), args.rounds, lambda v: current.update(v=v),
                            lambda: fwd_bwd_seconds(model, work[current["v"]], bf16=False))
    tokens = sum(len(e.input_ids) for b in grouped for e in b)
    print("grouped rows", [[len(e.input_ids) for e in b] for b in grouped])
    print("random rows", [[len(e.input_ids) for e in b] for b in mixed])
    median = {v: statistics.median(t) for v, t in seconds.items()}
    for variant, times in seconds.items():
        print(f"{variant:8s} {times}  median {median[variant]:.3f} s  {tokens / median[variant]:.1f} real tokens/s")
    print(json.dumps({"tokens": tokens, "seconds": seconds, "median": median}))


if __name__ == "__main__":
    main()
