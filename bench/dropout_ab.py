"""LoRA dropout's cost inside a training step: the same forward + backward, the dropout drawn three ways, alternating.

Run: LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4 .venv/bin/python bench/dropout_ab.py [--rounds 6]
The demo config's model (SmolLM2-135M, LoRA r16 all-linear, dropout 0.05) as `train` prepares it on the CPU
(frozen weights in bf16, fastpath.cpu_step), two packed batches of 8 demo rows (a short and the longest), forward +
backward under bf16 autocast per round and variant, the order alternating each round:
  torch  PEFT's nn.Dropout (one Mersenne-twister draw per element, a float mask)
  words  fastpath's 16-bit draws, four an int64 word, a bool mask (KeepScale): the path above GAP_MAX_P
  gaps   fastpath's dropped positions (geometric gaps) zeroed in x * scale (ScaleZero): the path up to GAP_MAX_P
Prints the seconds of each round and the medians, and JSON. docs/benchmarks.md (fifth run) records the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ab import alternate, fwd_bwd_seconds, packed

from tunesmith import fastpath, models, pipeline, train
from tunesmith.config import load
from tunesmith.data.prepare import prepare

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def batches(cfg, tok):  # noqa: ANN001, ANN201
    """Two packed batches of 8 training rows, as TRL's padding-free collator makes them: a short one, the longest."""
    _, rows, _ = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    rows = sorted(rows, key=lambda e: len(e.input_ids))
    return [packed(tok, rows[i:i + 8]) for i in (len(rows) // 4, len(rows) - 8)]


def use(model, layers: list) -> None:  # noqa: ANN001
    """Put a variant's dropout layers into the model's adapters."""
    for (drops, name), layer in zip(slots(model), layers):
        drops[name] = layer


def slots(model) -> list:  # noqa: ANN001
    import torch

    return [(m.lora_dropout, name) for m in model.modules()
            if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict) for name in m.lora_dropout]


def main() -> None:
    from peft import get_peft_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--variants", default="torch,words,gaps")
    args = ap.parse_args()
    cfg = load(DEMO, [])
    tok = models.load(cfg.model, tokenizer_only=True)[1]
    work = batches(cfg, tok)
    model = get_peft_model(pipeline._starting_model(cfg)[0], train.peft_config(cfg))
    fastpath.frozen_to_half(model)
    model.train()
    torch_drops = [drops[name] for drops, name in slots(model)]
    cheap = fastpath.cheap_dropout_class()
    layers = {"torch": torch_drops, "words": [cheap(layer.p, gaps=False) for layer in torch_drops],
              "gaps": [cheap(layer.p, gaps=True) for layer in torch_drops]}

    with fastpath.cpu_step(model, cfg):
        fwd_bwd_seconds(model, work)  # warm-up
        seconds = alternate(args.variants.split(","), args.rounds, lambda v: use(model, layers[v]),
                            lambda: fwd_bwd_seconds(model, work))
    tokens = [int(b["input_ids"].numel()) for b in work]
    for variant, times in seconds.items():
        print(f"{variant:6s} {times}  median {statistics.median(times):.3f} s")
    print(json.dumps({"tokens": tokens, "seconds": seconds,
                      "median": {v: statistics.median(t) for v, t in seconds.items()}}))


if __name__ == "__main__":
    main()
