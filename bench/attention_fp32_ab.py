"""fp32 attention on the CPU: SDPA's kernel against the whole score matrix in two fp32 matmuls (autograd's backward).

Run: .venv/bin/python bench/attention_fp32_ab.py [--rounds 7]
Why attention.py's matrix path stays bf16-only: under bf16 it beat SDPA's CPU kernel (bf16 matmuls against SDPA's
fp32 softmax blocks); in fp32 the question is whether the same shape of work still wins. SmolLM2-135M's heads (9
query, 3 key/value, 64 wide), causal masks, forward + backward of 10 calls per round, the variants in turn; prints
the median seconds per shape (the first round dropped) and the ratio matrix / SDPA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

SHAPES = ((8, 85), (5, 95), (3, 326), (8, 326))  # the demo's rows: English ~85 tokens, Korean ~326


def sdpa(q, k, v, mask):  # noqa: ANN001, ANN201
    import torch.nn.functional as F  # noqa: N812

    return F.scaled_dot_product_attention(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), attn_mask=mask,
                                          scale=0.125)


def matrix(q, k, v, mask):  # noqa: ANN001, ANN201
    import torch

    scores = torch.matmul(q * 0.125, k.repeat_interleave(3, 1).transpose(-1, -2))
    scores = scores.masked_fill(~mask, torch.finfo(torch.float32).min)
    return torch.matmul(torch.softmax(scores, -1), v.repeat_interleave(3, 1))


def seconds(fn, tensors, rounds: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(10):
            fn(*tensors).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.manual_seed(0)
    out = []
    for b, n in SHAPES:
        q = torch.randn(b, 9, n, 64, requires_grad=True)
        k, v = (torch.randn(b, 3, n, 64, requires_grad=True) for _ in range(2))
        mask = torch.ones(n, n, dtype=torch.bool).tril()[None, None].expand(b, 1, n, n)
        got = {name: seconds(fn, (q, k, v, mask), args.rounds) for name, fn in (("sdpa", sdpa), ("matrix", matrix))}
        out.append({"rows": b, "tokens": n, **{k: round(s, 3) for k, s in got.items()},
                    "matrix_over_sdpa": round(got["matrix"] / got["sdpa"], 2)})
        print(out[-1])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
