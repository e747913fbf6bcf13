"""Score one model on held-out rows: greedy generations through the same render path as training.

The main metric is chrF (sacrebleu): character n-grams work for Korean, where word-level BLEU punishes
every particle; BLEU is reported beside it because users know it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith import rundir
from tunesmith.config import EvalConfig
from tunesmith.records import Conversation, Difference, EvalResult, Generation
from tunesmith.template import end_of_turn_ids, prompt_text

MAIN_METRIC = "chrf"


def generate(model: Any, tokenizer: Any, convs: tuple[Conversation, ...], cfg: EvalConfig,
             out: Path | None = None, progress: Callable[[int, int], None] | None = None) -> list[Generation]:
    """Greedy generations for the first `cfg.max_rows` conversations, in their original order.

    With `out`, each batch is appended to that JSONL file as soon as it is generated, and rows already in it
    are not generated again: a crash loses nothing, a re-run continues where it stopped. At the end the file
    is rewritten in row order. `progress(done, total)` is called after each batch.

    Generation stays in fp32: bf16 autocast made batched CPU decoding slower here (~100 s vs ~60 s for the demo's
    45 rows), since decoding is many small matmuls where the casts cost more than they save.
    """
    import torch

    rows = [(c, *prompt_text(tokenizer, c)) for c in convs[: cfg.max_rows]]
    done = _done(out, {c.source for c, _, _ in rows})
    todo = sorted((i for i, (c, _, _) in enumerate(rows) if c.source not in done),
                  key=lambda i: len(rows[i][1]))  # similar lengths -> less padding
    stop_ids = end_of_turn_ids(tokenizer)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # decoder-only models continue on the right
    model.eval()
    try:
        for b in range(0, len(todo), cfg.batch_size):
            idx = todo[b: b + cfg.batch_size]
            batch = tokenizer([rows[i][1] for i in idx], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                ids = model.generate(**batch, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            new = ids[:, batch["input_ids"].shape[1]:]
            fresh = [Generation(rows[i][0].source, rows[i][1], rows[i][2], text.strip(), bool(stop_ids & set(r)))
                     for i, r, text in zip(idx, new.tolist(), tokenizer.batch_decode(new, skip_special_tokens=True))]
            done.update((g.source, g) for g in fresh)
            if out is not None:
                rundir.append_jsonl(out, [dataclasses.asdict(g) for g in fresh])
            if progress:
                progress(len(rows) - len(todo) + b + len(idx), len(rows))
    finally:
        tokenizer.padding_side = side
    gens = [done[c.source] for c, _, _ in rows]
    if out is not None:
        rundir.write_jsonl(out, [dataclasses.asdict(g) for g in gens])
    return gens


def _done(out: Path | None, wanted: set[str]) -> dict[str, Generation]:
    """Generations already in `out` for the rows asked for now; a half-written last line is ignored."""
    import json

    found: dict[str, Generation] = {}
    if out is None or not out.is_file():
        return found
    for line in out.read_text(encoding="utf-8").splitlines():
        try:
            g = Generation(**json.loads(line))
        except (ValueError, TypeError):
            continue  # the line a crash cut short; that row is generated again
        if g.source in wanted:
            found[g.source] = g
    return found


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
             eval_loss: float | None, out: Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Generate (incrementally into `out`) and score; `eval_loss` comes from the trainer's evaluation."""
    gens = generate(model, tokenizer, convs, cfg, out, progress)
    return EvalResult(label, eval_loss, score(gens), tuple(gens))
