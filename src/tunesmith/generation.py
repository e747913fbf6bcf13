"""Generation and scoring with a loaded model, the one path eval, retention, chat, compare, export and serve take:
a model loaded for inference (load_model), batched greedy or sampled generation over rendered rows (generate),
the settings every `model.generate` call gets (generation_kwargs), and the NLL of reference answers
(reference_nll). evaluate.py orchestrates these into before/after comparisons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tunesmith import metrics, models, rundir
from tunesmith.config import EvalConfig, RunConfig
from tunesmith.records import Conversation, Generation, Rendered
from tunesmith.template import end_of_turn_ids, prompt_text


def generate(model: Any, tokenizer: Any, convs: Sequence[Conversation], cfg: EvalConfig,
             out: tuple[rundir.EvalDir, str] | None = None, progress: Callable[[int, int], None] | None = None
             ) -> list[Generation]:
    """Generations for the first `cfg.max_rows` conversations, in their original order.

    Rows are batched by prompt length with left padding (decoder-only models continue on the right) and the
    KV cache, at most `cfg.batch_size` rows and metrics.BATCH_TOKENS prompt tokens a batch. With `out` (an eval folder and a model label), each batch is appended to that model's JSONL file
    as soon as it is generated, and rows already in it are not generated again; at the end the file is
    rewritten in row order.

    The model's dtype is load_model's (eval.precision, models.for_inference).
    """
    import torch

    rows = [(c, *prompt_text(tokenizer, c)) for c in convs[: cfg.max_rows]]
    done = _done(out, {c.source for c, _, _ in rows})
    tokens = {i: len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
              for i, (c, prompt, _) in enumerate(rows) if c.source not in done}
    todo = sorted(tokens, key=tokens.__getitem__)  # similar lengths -> less padding
    stop_ids = end_of_turn_ids(tokenizer)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    model.eval()
    torch.manual_seed(cfg.seed)
    try:
        finished = len(rows) - len(todo)
        for batch in metrics.token_batches([tokens[i] for i in todo], cfg.batch_size):
            idx = [todo[j] for j in batch]
            batch = tokenizer([rows[i][1] for i in idx], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                ids = model.generate(**batch, **generation_kwargs(tokenizer, cfg))
            new = ids[:, batch["input_ids"].shape[1]:]
            fresh = [Generation(rows[i][0].source, rows[i][1], rows[i][2], text.strip(), bool(stop_ids & set(r)))
                     for i, r, text in zip(idx, new.tolist(), tokenizer.batch_decode(new, skip_special_tokens=True))]
            done.update((g.source, g) for g in fresh)
            if out is not None:
                out[0].append_generations(out[1], fresh)
            finished += len(idx)
            if progress:
                progress(finished, len(rows))
    finally:
        tokenizer.padding_side = side
    gens = [done[c.source] for c, _, _ in rows]
    if out is not None:
        out[0].write_generations(out[1], gens)
    return gens


# A temperature below this generates greedily. Logits divided by 1e-300 are inf and sampling fails on nan
# probabilities; and at 1e-3 a logit gap of bf16's resolution near 30 (0.125) already weighs e^-125 against the
# runner-up: sampling there is greedy decoding with extra steps.
GREEDY_BELOW = 1e-3


def generation_kwargs(tokenizer: Any, cfg: EvalConfig) -> dict[str, Any]:
    """model.generate's settings from the eval section: the one place eval, chat and serve take them from, so a
    chat answer equals eval's generation for the same row. Generation stops at any end-of-turn token the
    vocabulary has (template.end_of_turn_ids), not only the model's configured eos. A temperature under
    GREEDY_BELOW (0 included) decodes greedily."""
    sampling = ({"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p}
                if cfg.temperature >= GREEDY_BELOW else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
    return {"max_new_tokens": cfg.max_new_tokens, "use_cache": True, "repetition_penalty": cfg.repetition_penalty,
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": sorted(end_of_turn_ids(tokenizer)), **sampling}


def _done(out: tuple[rundir.EvalDir, str] | None, wanted: set[str]) -> dict[str, Generation]:
    """Generations already on disk for the rows asked for now; a half-written last line is ignored."""
    if out is None or not out[0].generations(out[1]).is_file():
        return {}
    found = {g.source: g for g in out[0].read_generations(out[1], torn_ok=True) if g.source in wanted}
    # Rewritten before anything is appended: a torn last line would otherwise swallow the next row appended.
    out[0].write_generations(out[1], found.values())
    return found


def load_model(label: str, run: rundir.RunDir, cfg: RunConfig) -> tuple[Any, Any, str]:
    """(model, tokenizer, what was loaded) for an eval label.

    base = the model training started from (cfg.model, or the weights of `continue_from`); tuned = this run's
    weights; anything else = another run folder's tuned model, or any model spec (folder, .gguf, hub id).
    Each in eval.precision's dtype (models.for_inference), so base and tuned are generated and scored alike.
    """
    if label == "base" and cfg.continue_from is None:
        model, tok = models.load(cfg.model, load_in=cfg.train.load_in)
        loaded = (model, tok, cfg.model)
    elif label == "base":
        loaded = models.load_run_weights(rundir.RunDir(cfg.continue_from), merged=True)
    elif label == "tuned":
        loaded = models.load_run_weights(run, merged=True)
    else:
        loaded = models.load_target(label)
    models.for_inference(loaded[0], cfg.eval.precision)
    return loaded


def reference_nll(model: Any, rendered: Rendered, batch_size: int) -> list[tuple[float, int]]:
    """NLL of each reference answer given its prompt (`rendered` with the last assistant turn supervised).

    A row too long for template.max_length even after truncation counts (0.0, 0): its nll is left out.
    """
    nll = dict(zip((e.source for e in rendered.examples),
                   metrics.per_row_nll(model, list(rendered.examples), batch_size=batch_size)))
    return [nll.get(c.source, (0.0, 0)) for c in rendered.convs]
