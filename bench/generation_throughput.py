"""Generation throughput on the demo's held-out rows: batched (left padding, KV cache) against one row at a time.

Run: .venv/bin/python bench/generation_throughput.py [--rows 45] [--batch 16] [--precision auto] [--against fp32]
Both passes generate greedily for the same rows with the embedded model in this process; the ratio of new tokens
per second (batched / one at a time) is what to compare across machines. Target: batched >= 2x on 2 CPU cores.
`--against fp32 --batch 48` instead compares eval's own setting (batches of 48) in fp32 and in --precision.
Also reported: the share of rows whose text is identical in both passes (left padding may change a few greedy
choices through tiny numeric differences, which is why eval always uses one setting for both models).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tunesmith import generation, models, pipeline
from tunesmith.config import load
from tunesmith.data.prepare import prepare

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def measure(model, tok, convs, cfg) -> tuple[float, float, list]:  # noqa: ANN001
    start = time.perf_counter()
    gens = generation.generate(model, tok, convs, cfg)
    seconds = time.perf_counter() - start
    new_tokens = sum(len(tok(g.generation, add_special_tokens=False)["input_ids"]) + g.stopped for g in gens)
    return new_tokens / seconds, seconds, gens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=45)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--precision", default="auto", help="eval.precision: auto (bf16 where native), fp32, bf16")
    ap.add_argument("--against", choices=("one-row", "fp32"), default="one-row",
                    help="one-row: batched vs one row at a time, both in --precision; fp32: batched in fp32 vs "
                    "batched in --precision")
    args = ap.parse_args()
    cfg = load(DEMO)
    model, tok = models.load(cfg.model)
    data, _, _ = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    convs = data.eval[: args.rows]
    if args.against == "one-row":
        passes = [("one row at a time", 1, args.precision), (f"batched ({args.batch})", args.batch, args.precision)]
    else:
        passes = [(f"batched ({args.batch}), fp32", args.batch, "fp32"),
                  (f"batched ({args.batch}), {args.precision}", args.batch, args.precision)]
    results = {}
    for name, batch, precision in passes:
        resolved = models.for_inference(model, precision)  # as eval loads its models
        ecfg = cfg.eval.model_copy(update={"batch_size": batch, "max_rows": len(convs)})
        results[name] = (*measure(model, tok, convs, ecfg), resolved)
        print(f"{name:26s} {results[name][0]:7.1f} new tokens/s, {results[name][1]:6.1f} s", file=sys.stderr)
    (first, first_s, g1, p1), (second, second_s, g2, p2) = results.values()
    same = sum(a.generation == b.generation for a, b in zip(g1, g2)) / len(g1)
    print(json.dumps({"rows": len(convs), "against": args.against,
                      "first": {"batch": passes[0][1], "precision": p1, "tokens_per_s": round(first, 1),
                                "seconds": round(first_s, 1)},
                      "second": {"batch": passes[1][1], "precision": p2, "tokens_per_s": round(second, 1),
                                 "seconds": round(second_s, 1)},
                      "ratio": round(second / first, 2), "identical_text_share": round(same, 3)}))


if __name__ == "__main__":
    main()
