"""Where a training step's time goes: torch.profiler's top ops for tunesmith's LoRA loop on the demo rows.

Run: .venv/bin/python bench/profile_train.py [--steps 4] [--top 15] [--set train.precision=fp32 ...]
Trains the demo config for `--steps` steps (the first one is the warm-up and is not profiled) and prints the ops
with the most self CPU time, as a table and as JSON. Run it under tcmalloc as `train` does:
LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4 .venv/bin/python bench/profile_train.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tunesmith import models, pipeline, train
from tunesmith.config import load
from tunesmith.data.prepare import prepare
from tunesmith.rundir import create

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def profiled_callback(steps: int):  # noqa: ANN201
    """A TrainerCallback that profiles steps 2..steps and keeps the profiler for reading afterwards."""
    import torch
    from transformers import TrainerCallback

    class Profile(TrainerCallback):
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=False)

        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
            if state.global_step == 1:
                self.prof.__enter__()

        def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
            self.prof.__exit__(None, None, None)

    return Profile()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = load(DEMO, [f"train.max_steps={args.steps}", f"train.logging_steps={args.steps}", "train.eval_strategy=steps",
                      "train.eval_steps=100000", "train.early_stopping_patience=0", "train.load_best=false",
                      "train.report_to=[]", *args.set])
    tok = models.load(cfg.model, tokenizer_only=True)[1]
    _, train_ex, eval_ex = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    model = pipeline._starting_model(cfg)[0]  # the weights `tunesmith train` starts from
    profile = profiled_callback(args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        run, _ = create(Path(tmp), "profile", overwrite=True, config_yaml=cfg.to_yaml())
        train.train(model, tok, train_ex, eval_ex[:2], cfg, run, say=lambda _: None, progress=profile)
        run.unlock()
    events = profile.prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]
    rows = [{"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1),
             "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in top]
    for r in rows:
        print(f"{r['share']:6.1%} {r['self_cpu_ms']:10.1f} ms {r['calls']:7d}  {r['op']}", file=sys.stderr)
    print(json.dumps({"steps_profiled": args.steps - 1, "settings": args.set, "top": rows}))


if __name__ == "__main__":
    main()
