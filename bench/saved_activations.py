"""Bytes a decoder layer keeps for backward per token, counted exactly, at the shapes people tune.

Run: .venv/bin/python bench/saved_activations.py [--tokens 512] [--paths gpu,cpu,fp32] [--json FILE]

The plan's per-token memory term was calibrated on SmolLM2-135M alone (docs/memory.md); a 1.7B model's layer is
not 135M's scaled by its hidden size (its MLP is 4x hidden wide, 135M's 2.67x). This counts, for each shape, what
autograd saves for backward in one training forward (LoRA r16 on every linear, bf16 autocast, frozen weights in
bf16 as train stores them, packed rows), through saved_tensors_hooks, each storage once: a model of 2 layers
minus the same model of 1 layer is one layer. Random weights from a config (no download); no GPU needed. Paths:
`gpu` (default): the ops a GPU runs, with nn.Dropout as CUDA runs it (torch's fused native_dropout, which keeps a
bool mask; the CPU's nn.Dropout keeps a float noise tensor, 4 bytes an element); `cpu`: train's step on a CPU
(fastpath.cpu_step: matrix attention, bf16 adapter inputs; the cheap dropout); `fp32`: train's step on a CPU
without bf16 (no autocast, fp32 weights, the cheap dropout). Prints bytes per token per layer and that per hidden
unit, and per path the least-squares fit memory.SAVED_PER_TOKEN holds (the `tiny` shape, the tests' model, is left out of it); JSON with --json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# name -> (hidden, intermediate, attention heads, key/value heads): SmolLM2's three sizes and other 0.5-2B models
SHAPES = {
    "SmolLM2-135M": (576, 1536, 9, 3),
    "SmolLM2-360M": (960, 2560, 15, 5),
    "SmolLM2-1.7B": (2048, 8192, 32, 32),
    "Qwen2.5-0.5B": (896, 4864, 14, 2),
    "Llama-3.2-1B": (2048, 8192, 32, 8),
    "Gemma-2B-like": (2048, 16384, 8, 1),
    "tiny": (64, 128, 4, 2),  # the tests' 2-layer Llama: held out of the fit
}


ROW = 128  # tokens a packed row


def saved_bytes(shape: tuple[int, int, int, int], layers: int, tokens: int, path: str) -> int:
    """Bytes autograd saves in one forward of a `layers`-layer Llama of this shape over `tokens` packed tokens."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunesmith import config, fastpath, train

    hidden, inter, heads, kv = shape
    torch.manual_seed(0)
    arch = LlamaConfig(vocab_size=1024, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=4096,
                       attn_implementation="sdpa")
    model = LlamaForCausalLM(arch)
    cfg = config.parse({"name": "b", "model": "default", "data": {"train": ["x.jsonl"]},
                        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
                        "train": {"precision": "fp32" if path == "fp32" else "bf16"}}, source="<bench>")
    from peft import get_peft_model

    model = get_peft_model(model, train.peft_config(cfg))
    if path != "fp32":
        fastpath.frozen_to_half(model)
    if path in ("cpu", "fp32"):  # train's CPU step, fp32 included: the cheap dropout keeps the dropped positions
        fastpath.cheap_dropout(model)
    if path == "gpu":
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):  # as F.dropout runs on CUDA: the fused kernel, a bool mask
                module.forward = lambda x, p=module.p: torch.native_dropout(x, p, True)[0]
    model.train()
    ids = torch.randint(0, 1024, (1, tokens))  # packed: rows of ROW tokens, positions restarting at 0
    positions = torch.arange(ROW).repeat(tokens // ROW)[None]
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    body = model.base_model.model.model
    frozen = {p.untyped_storage().data_ptr() for p in model.parameters()}  # weights are not activations
    step = fastpath.cpu_step(model, cfg) if path == "cpu" else contextlib.nullcontext()
    cast = contextlib.nullcontext() if path == "fp32" else torch.autocast("cpu", dtype=torch.bfloat16)
    with step, cast, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        body(input_ids=ids, position_ids=positions)
    return sum(n for (ptr, _), n in seen.items() if ptr not in frozen)


def fit(rows: list[dict], path: str) -> dict:
    """Least squares of bytes a token a layer over (hidden, MLP, key/value, heads, 1): memory.SAVED_PER_TOKEN[path].
    On the CPU path the matrix attention's probabilities (heads x row length x 2 bytes a token) come off first:
    memory counts them apart (attention_gib). The held-out `tiny` shape is left out."""
    import numpy as np

    used = [r for r in rows if r["shape"] != "tiny"]
    x = np.array([[r["hidden"], r["intermediate"], r["kv_width"], r["heads"], 1] for r in used], dtype=float)
    y = np.array([r["bytes_per_token_per_layer"] - (r["heads"] * ROW * 2 if path == "cpu" else 0) for r in used])
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    return {"coefficients": [round(float(c), 4) for c in coef],
            "largest_residual": round(float(np.abs(x @ coef - y).max()), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--paths", default="gpu,cpu,fp32")
    ap.add_argument("--json")
    args = ap.parse_args()
    out: dict = {"tokens": args.tokens, "rows_of": ROW, "results": [], "fits": {}}
    for path in args.paths.split(","):
        rows = []
        for name in args.shapes.split(","):
            hidden, inter, heads, kv = SHAPES[name]
            one, two = (saved_bytes(SHAPES[name], layers, args.tokens, path) for layers in (1, 2))
            per_token = (two - one) / args.tokens
            rows.append({"path": path, "shape": name, "hidden": hidden, "intermediate": inter, "heads": heads,
                         "kv_heads": kv, "kv_width": kv * (hidden // heads),
                         "bytes_per_token_per_layer": round(per_token, 1),
                         "per_hidden_unit": round(per_token / hidden, 2)})
            print(f"{path:4s} {name:14s} hidden {hidden:5d} intermediate {inter:6d}: {per_token:9.0f} bytes a token a "
                  f"layer = {per_token / hidden:6.2f} per hidden unit", file=sys.stderr)
        out["results"] += rows
        if len(rows) > 5:
            out["fits"][path] = fit(rows, path)
            print(f"{path}: fit {out['fits'][path]}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
