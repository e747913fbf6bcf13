"""Where a training step makes the host wait for the GPU, counted on any machine: the aten ops whose result the host
must read (.item(), bool(), nonzero, boolean indexing, masked_select) during the timed steps, by the source line that
asked, on the GPU's code path (train_contestants.py's --cuda-path).

    .venv/bin/python bench/step_syncs.py --contestants trl-tuned,tunesmith --model narrow4 --steps 4

On a GPU each of them drains the queue of launched kernels before the host goes on. Reads from torch.optim are
listed apart: transformers' default optimizers keep their step counters on the CPU (torch's fused AdamW on a GPU
keeps them on the device, and reads none), so on a GPU those reads wait for nothing. Prints one table per
contestant and, with --json, writes them.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_contestants as tc  # noqa: E402

READS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2"}  # the host needs the values


def counter() -> object:
    """A dispatch mode counting the reads by (op, the first frames outside torch and this bench)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Reads(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.counts: collections.Counter = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            name = func.__name__.split(".")[0]
            masked = name == "index" and any(getattr(i, "dtype", None) == torch.bool for i in (args[1] or ()))
            if name in READS or masked:
                frames = [f for f in traceback.extract_stack()
                          if "/torch/" not in f.filename or "/torch/optim/" in f.filename]
                frames = [f for f in frames if Path(f.filename).name not in ("step_syncs.py", "train_contestants.py")]
                where = " <- ".join(f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno}"
                                    for f in reversed(frames[-2:]))
                optimizer = any("/torch/optim/" in f.filename for f in frames)
                self.counts[(name if not masked else "index[bool]", where, optimizer)] += 1
            return func(*args, **(kwargs or {}))

    return Reads()


def count(contestant: str, data: Path, steps: int, out: Path) -> dict:
    """Run one contestant's training with the reads counted over its timed steps (the 2nd on)."""
    import torch

    mode, timed = counter(), [0]
    callback = tc.Meter.callback

    def counted(meter):  # noqa: ANN001, ANN202
        cb = callback(meter)
        begin, end = cb.on_step_begin, cb.on_step_end

        def on_begin(*a, **k):  # noqa: ANN002, ANN003, ANN202
            begin(*a, **k)
            if meter.times:
                mode.__enter__()
                timed[0] += 1

        def on_end(*a, **k):  # noqa: ANN002, ANN003, ANN202
            if meter.times:
                mode.__exit__(None, None, None)
            end(*a, **k)

        cb.on_step_begin, cb.on_step_end = on_begin, on_end
        return cb

    tc.Meter.callback = counted
    torch.manual_seed(tc.SEED)
    if contestant.startswith("tunesmith"):
        tc.tunesmith_run(data, "demo", steps, out, contestant)
    else:
        tc.trl_run(contestant, data, "demo", steps, out)
    tc.Meter.callback = callback
    rows = [{"op": op, "where": where, "optimizer_counter": optimizer, "per_step": round(n / timed[0], 2)}
            for (op, where, optimizer), n in mode.counts.items()]
    rows.sort(key=lambda r: -r["per_step"])
    device = [r for r in rows if not r["optimizer_counter"]]
    return {"contestant": contestant, "steps": timed[0], "reads_per_step": round(sum(r["per_step"] for r in device), 1),
            "optimizer_counter_reads_per_step": round(sum(r["per_step"] for r in rows) - sum(
                r["per_step"] for r in device), 1), "by_source": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contestants", default="trl-tuned,tunesmith")
    ap.add_argument("--model", default="narrow4", help="as train_contestants.py: default, a folder, or narrowN")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tc.CUDA_PATH = True
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tc.MODEL = (str(tc.narrow_model(int(args.model[len("narrow"):]), Path(tmp) / "model"))
                    if args.model.startswith("narrow") else args.model)
        data = tc.rows_for("demo", Path(tmp))
        for contestant in args.contestants.split(","):
            r = count(contestant, data, args.steps, Path(tmp) / contestant)
            results.append(r)
            print(f"{contestant}: {r['reads_per_step']} reads of device values a step "
                  f"(+ {r['optimizer_counter_reads_per_step']} of the optimizer's step counters)")
            for row in r["by_source"]:
                print(f"  {row['per_step']:6.1f}  {row['op']:20s} {row['where']}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
