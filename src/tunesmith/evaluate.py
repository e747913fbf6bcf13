"""Score one model on held-out rows: greedy generations through the same render path as training.

The main metric is chrF (sacrebleu): character n-grams work for Korean, where word-level BLEU punishes
every particle; BLEU is reported beside it because users know it.
"""

from __future__ import annotations

from typing import Any

from tunesmith.config import EvalConfig
from tunesmith.records import Conversation, Difference, EvalResult, Generation
from tunesmith.template import end_of_turn_ids, prompt_text

MAIN_METRIC = "chrf"


def generate(model: Any, tokenizer: Any, convs: tuple[Conversation, ...], cfg: EvalConfig) -> list[Generation]:
    """Greedy generations for the first `cfg.max_rows` conversations, in their original order.

    Generation stays in fp32: bf16 autocast made batched CPU decoding slower here (~100 s vs ~60 s for the demo's
    45 rows), since decoding is many small matmuls where the casts cost more than they save.
    """
    import torch

    rows = [(c, *prompt_text(tokenizer, c)) for c in convs[: cfg.max_rows]]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][1]))  # similar lengths -> less padding
    out: dict[int, tuple[str, bool]] = {}
    stop_ids = end_of_turn_ids(tokenizer)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # decoder-only models continue on the right
    model.eval()
    try:
        for b in range(0, len(order), cfg.batch_size):
            idx = order[b: b + cfg.batch_size]
            batch = tokenizer([rows[i][1] for i in idx], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                ids = model.generate(**batch, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            new = ids[:, batch["input_ids"].shape[1]:]
            for i, row, text in zip(idx, new.tolist(), tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[i] = (text.strip(), bool(stop_ids & set(row)))
    finally:
        tokenizer.padding_side = side
    return [Generation(c.source, p, ref, *out[i]) for i, (c, p, ref) in enumerate(rows)]


def score(generations: list[Generation]) -> dict[str, float]:
    """Corpus chrF and BLEU of generations against references (0-100, higher is better)."""
    import sacrebleu

    hyps = [g.generation for g in generations]
    refs = [[g.reference for g in generations]]
    return {"chrf": round(sacrebleu.corpus_chrf(hyps, refs).score, 2),
            "bleu": round(sacrebleu.corpus_bleu(hyps, refs).score, 2),
            "mean_words": round(sum(len(h.split()) for h in hyps) / max(len(hyps), 1), 1),
            "stopped_share": round(sum(g.stopped for g in generations) / max(len(generations), 1), 3)}


def paired_bootstrap(before: list[Generation], after: list[Generation], resamples: int = 2000,
                     seed: int = 0) -> Difference:
    """Resample rows with replacement; the same rows for both models, so row difficulty cancels out.

    >>> paired_bootstrap(gens_before, gens_after).verdict  # doctest: +SKIP
    'better'
    """
    import random

    import sacrebleu

    diffs = [sacrebleu.sentence_chrf(a.generation, [a.reference]).score
             - sacrebleu.sentence_chrf(b.generation, [b.reference]).score for b, a in zip(before, after)]
    if not diffs:
        return Difference(0.0, 0.0, 0.0, 0)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(resamples))
    return Difference(round(sum(diffs) / len(diffs), 2), round(means[int(0.025 * resamples)], 2),
                      round(means[int(0.975 * resamples) - 1], 2), len(diffs))


def evaluate(label: str, model: Any, tokenizer: Any, convs: tuple[Conversation, ...], cfg: EvalConfig,
             eval_loss: float | None) -> EvalResult:
    """Generate and score; `eval_loss` comes from the trainer's evaluation of the same rows."""
    gens = generate(model, tokenizer, convs, cfg)
    return EvalResult(label, eval_loss, score(gens), tuple(gens))
