"""Training throughput of tunesmith's LoRA loop on the embedded model, as ratios against fp32 + random batches.

Run: .venv/bin/python bench/train_throughput.py [--steps 4]
Each variant trains the same rows for the same number of steps in this process; the ratio (tokens/s against the
baseline measured in the same run) is what to compare across machines, never the absolute number.
Target: the shipped defaults (precision auto, group_by_length) at >= 1.5x the fp32/random baseline on a CPU with
native bf16.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tunesmith import models, pipeline, train
from tunesmith.config import load
from tunesmith.data.prepare import prepare
from tunesmith.rundir import create

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
VARIANTS = {"baseline fp32/random": ["train.precision=fp32", "train.group_by_length=false"],
            "bf16/random": ["train.precision=bf16", "train.group_by_length=false"],
            "defaults (auto/grouped)": [],
            "defaults + torch.compile": ["train.compile=layers"]}


def measure(overrides: list[str], steps: int, out: Path) -> tuple[float, float]:
    """(real tokens/s of the logged window, wall seconds of the whole train call: compile time included)."""
    cfg = load(DEMO, [f"train.max_steps={steps}", f"train.logging_steps={steps}", "train.eval_strategy=steps",
                      "train.eval_steps=100000", "train.early_stopping_patience=0", "train.load_best=false",
                      "train.report_to=[]", *overrides])
    model, tok = models.load(cfg.model)
    _, train_ex, eval_ex = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    run, _ = create(out, "bench", overwrite=True, config_yaml=cfg.to_yaml())
    start = time.perf_counter()
    train.train(model, tok, train_ex, eval_ex[:2], cfg, run, say=lambda _: None)
    wall = time.perf_counter() - start
    run.unlock()
    return [r.tokens_per_s for r in run.read_metrics() if r.tokens_per_s is not None][-1], wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated; the first is the baseline")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            results[name] = measure(VARIANTS[name], args.steps, Path(tmp))
            print(f"{name:26s} {results[name][0]:7.1f} tok/s, train call {results[name][1]:6.1f} s", file=sys.stderr)
    base = next(iter(results.values()))[0]
    print(json.dumps({name: {"tokens_per_s": v, "ratio": round(v / base, 2), "train_seconds": round(w, 1)}
                      for name, (v, w) in results.items()}))


if __name__ == "__main__":
    main()
