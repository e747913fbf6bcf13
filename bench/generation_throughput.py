"""Generation throughput on the demo's held-out rows: batched (left padding, KV cache) against one row at a time.

Run: .venv/bin/python bench/generation_throughput.py [--rows 45] [--batch 16]
Both passes generate greedily for the same rows with the embedded model in this process; the ratio of new tokens
per second (batched / one at a time) is what to compare across machines. Target: batched >= 2x on 2 CPU cores.
Also reported: the share of rows whose text is identical in both passes (left padding may change a few greedy
choices through tiny numeric differences, which is why eval always uses one setting for both models).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tunesmith import evaluate, models, pipeline
from tunesmith.config import load
from tunesmith.data.prepare import prepare

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def measure(model, tok, convs, cfg) -> tuple[float, float, list]:  # noqa: ANN001
    start = time.perf_counter()
    gens = evaluate.generate(model, tok, convs, cfg)
    seconds = time.perf_counter() - start
    new_tokens = sum(len(tok(g.generation, add_special_tokens=False)["input_ids"]) + g.stopped for g in gens)
    return new_tokens / seconds, seconds, gens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=45)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    cfg = load(DEMO)
    model, tok = models.load(cfg.model)
    data, _, _ = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    convs = data.eval[: args.rows]
    results = {}
    for name, batch in (("one row at a time", 1), (f"batched ({args.batch})", args.batch)):
        ecfg = cfg.eval.model_copy(update={"batch_size": batch, "max_rows": len(convs)})
        results[name] = measure(model, tok, convs, ecfg)
        print(f"{name:20s} {results[name][0]:7.1f} new tokens/s, {results[name][1]:6.1f} s", file=sys.stderr)
    (one, one_s, g1), (many, many_s, g2) = results.values()
    same = sum(a.generation == b.generation for a, b in zip(g1, g2)) / len(g1)
    print(json.dumps({"rows": len(convs), "one_row": {"tokens_per_s": round(one, 1), "seconds": round(one_s, 1)},
                      "batched": {"batch": args.batch, "tokens_per_s": round(many, 1), "seconds": round(many_s, 1)},
                      "ratio": round(many / one, 2), "identical_text_share": round(same, 3)}))


if __name__ == "__main__":
    main()
