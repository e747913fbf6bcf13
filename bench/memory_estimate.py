"""The plan's memory estimate against measured peak RSS, on three shapes of data, with the default model.

Run: .venv/bin/python bench/memory_estimate.py [--steps 40] [--shapes chat,long_prompt_ko,multi_turn,demo]
     .venv/bin/python bench/memory_estimate.py --measured bench/results/memory_estimate_....json   (no training)
Each shape trains SmolLM2-135M (`model: default`, LoRA, the shipped precision and tcmalloc as `train` runs it)
for 40 steps (peak RSS creeps up over the first ~40 steps of changing shapes, then stays: docs/memory.md) in a
child process of its own, so each peak RSS (ru_maxrss) belongs to one run. The rows are
the bundled sample data (short chat; the demo's English and Korean rows, split as `make demo` splits them) or
generated here (no real corpora): long Korean paragraphs with a one-line question as the answer, and long English
conversations of 6-10 turns. Batch sizes and lengths keep each run under ~12 GiB. Each shape records the plan's
estimate for the batches the run draws (`estimate_gib`, the largest of them in `drawn_tokens`) and for the
`batch_size` longest rows together (`worst_case_gib`, what the memory fit sizes for). Prints one line per shape and
a JSON summary; docs/memory.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "tunesmith" / "sample_data"
sys.path.insert(0, str(ROOT))  # the generated shapes live with the test fixtures, shared with the tests
from tests.fixtures.shapes import korean_rows, multi_turn_rows  # noqa: E402
# shape -> (rows, batch_size, template.max_length, gradient checkpointing); a name ending in _fp32 trains in fp32 (a
# CPU without bf16: no autocast; padding-free rows in random batches since session 26, padded and length-grouped
# before); _checkpointed checks the checkpointed estimate; _padded trains with padded rows (train.padding_free off:
# length-grouped batches). On a CPU without native bf16 every shape trains in fp32 (`precision: auto`).
SHAPES = {"chat": (None, 8, 384, False), "long_prompt_ko": (48, 4, 1024, False), "multi_turn": (48, 6, 512, False),
          "demo": (None, 8, 384, False), "long_prompt_ko_checkpointed": (48, 4, 1024, True),
          "long_prompt_ko_fp32": (48, 4, 1024, False),
          "chat_fp32": (None, 8, 384, False), "multi_turn_fp32": (48, 6, 512, False),
          "chat_padded": (None, 8, 384, False), "multi_turn_padded": (48, 6, 512, False),
          "long_prompt_ko_padded": (48, 4, 1024, False)}


def data_files(shape: str, rows: int | None, folder: Path) -> list[Path]:
    shape = shape.removesuffix("_checkpointed").removesuffix("_fp32").removesuffix("_padded")
    if shape == "chat":
        return [SAMPLE / "counsel_en.jsonl"]
    if shape == "demo":
        return [SAMPLE / "counsel_en.jsonl", SAMPLE / "counsel_ko.json"]
    rng = random.Random(0)
    path = folder / f"{shape}.jsonl"
    made = korean_rows(rows or 0, rng) if shape == "long_prompt_ko" else multi_turn_rows(rows or 0, rng)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in made), encoding="utf-8")
    return [path]


def child(shape: str, steps: int, folder: Path, measured: float | None = None) -> dict:
    """Train one shape in this process; returns the plan's estimate and this process's peak RSS (or, given the peak
    measured before, only the estimate: what new constants say about an earlier run)."""
    from tunesmith import memory, models, pipeline, train
    from tunesmith.config import parse
    from tunesmith.data.prepare import prepare
    from tunesmith.rundir import create

    rows, batch, max_length, checkpointing = SHAPES[shape]
    cfg = parse({"name": shape, "model": "default", "output_dir": str(folder / "runs"),
                 "data": {"train": [str(f) for f in data_files(shape, rows, folder)],
                          **({"eval_fraction": 0.2, "seed": 42} if shape == "demo" else {})},
                 "template": {"max_length": max_length, "overflow": "truncate"},
                 "train": {"max_steps": steps, "batch_size": batch, "gradient_checkpointing": checkpointing,
                           "logging_steps": 1, "eval_strategy": "steps",
                           "eval_steps": 100000, "early_stopping_patience": 0, "load_best": False,
                           "report_to": [], **({"precision": "fp32"} if shape.endswith("_fp32") else {}),
                           **({"padding_free": "off"} if shape.endswith("_padded") else {})}},
                source=f"<bench {shape}>")
    model, tok = models.load(cfg.model)
    _, train_ex, eval_ex = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    trainable, total, arch = memory.parameter_counts(cfg)
    longest = max(len(e.input_ids) for e in train_ex)
    worst = memory.estimate_memory_gib(cfg, trainable, total, arch, longest)
    estimate, drawn = memory.drawn_memory_gib(cfg, trainable, total, arch, [len(e.input_ids) for e in train_ex])
    peak = measured
    if peak is None:
        run, _ = create(folder / "runs", shape, overwrite=True, config_yaml=cfg.to_yaml())
        train.train(model, tok, train_ex, eval_ex[:2], cfg, run, say=lambda _: None)  # 2 eval rows: not measured
        run.unlock()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux reports KiB
    from tunesmith import runtime

    return {"shape": shape, "allocator": runtime.training_allocator(), "rows": len(train_ex), "batch_size": batch,
            "longest": longest, "drawn_longest": max(drawn), "packed": train.padding_free(cfg),
            "drawn_tokens": memory.step_tokens(cfg, drawn),
            "estimate_gib": round(estimate, 2), "worst_case_gib": round(worst, 2), "measured_gib": round(peak, 2),
            "error": round(estimate / peak - 1, 3), "worst_case_error": round(worst / peak - 1, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--allocator", choices=("tcmalloc", "glibc"), default="tcmalloc",
                    help="glibc: the children run without tcmalloc (TUNESMITH_NO_TCMALLOC=1), as train does where "
                         "libtcmalloc is not installed")
    ap.add_argument("--measured", help="a JSON this bench wrote: estimate its shapes again with the current "
                                       "constants against the peaks measured there (no training)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--peak", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, Path(args.folder), args.peak)))
        return
    before = {r["shape"]: r["measured_gib"] for r in json.loads(Path(args.measured).read_text())} \
        if args.measured else {}
    if before:
        args.shapes = ",".join(before)
    from tunesmith import runtime

    import os

    results = []
    env = (runtime.tcmalloc_env() or dict(os.environ)) if args.allocator == "tcmalloc" else {
        **{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, "TUNESMITH_NO_TCMALLOC": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            # One child per shape: ru_maxrss is a high-water mark for the whole process, never reset.
            peak = ["--peak", str(before[shape])] if shape in before else []
            out = subprocess.run([sys.executable, __file__, "--child", shape, "--steps", str(args.steps),
                                  "--folder", tmp, *peak], capture_output=True, text=True, env=env)
            if out.returncode:
                sys.exit(f"{shape} failed:\n{out.stderr[-3000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"{shape:15s} largest drawn batch {r['drawn_tokens']:5d} tokens: estimate {r['estimate_gib']:5.2f} "
                  f"GiB, measured {r['measured_gib']:5.2f} GiB, error {r['error']:+.0%}; worst case "
                  f"{r['batch_size']} x {r['longest']}: {r['worst_case_gib']:5.2f} GiB ({r['worst_case_error']:+.0%})",
                  file=sys.stderr)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
