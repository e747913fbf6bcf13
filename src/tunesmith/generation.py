"""Generation and scoring with a loaded model, the one path eval, retention, chat, compare, export and serve take:
a model loaded for inference (load_model), batched greedy or sampled generation over rendered rows (generate),
the settings every `model.generate` call gets (generation_kwargs), and the NLL of reference answers
(reference_nll, per_row_nll), in batches of at most BATCH_TOKENS tokens (token_batches). evaluate.py
orchestrates these into before/after comparisons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tunesmith import models, rundir
from tunesmith.config import EvalConfig, RunConfig
from tunesmith.records import Conversation, Example, Generation, Rendered
from tunesmith.template import IGNORE, end_of_turn_ids, prompt_text


def generate(model: Any, tokenizer: Any, convs: Sequence[Conversation], cfg: EvalConfig,
             out: tuple[rundir.EvalDir, str] | None = None, progress: Callable[[int, int], None] | None = None
             ) -> list[Generation]:
    """Generations for the first `cfg.max_rows` conversations, in their original order.

    Rows are batched by prompt length with left padding (decoder-only models continue on the right) and the
    KV cache, at most `cfg.batch_size` rows and BATCH_TOKENS prompt tokens a batch. With `out` (an eval folder and a model label), each batch is appended to that model's JSONL file
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
        for batch in token_batches([tokens[i] for i in todo], cfg.batch_size):
            idx = [todo[j] for j in batch]
            batch = tokenizer([rows[i][1] for i in idx], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                ids = model.generate(**batch, **generation_kwargs(tokenizer, cfg))
            new = ids[:, batch["input_ids"].shape[1]:]
            fresh = [Generation(rows[i][0].source, rows[i][1], rows[i][2], whole_characters(text).strip(),
                                bool(stop_ids & set(r)))
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


def whole_characters(text: str) -> str:
    """A generation cut at max_new_tokens can end inside a character's bytes (byte-level tokenizers split an
    emoji or a Hangul syllable into several tokens), which decode as U+FFFD: that torn tail is dropped.

    >>> whole_characters("잘 자요 \ufffd\ufffd"), whole_characters("ok")
    ('잘 자요 ', 'ok')
    """
    return text.rstrip("\ufffd")


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
                   per_row_nll(model, list(rendered.examples), batch_size=batch_size)))
    return [nll.get(c.source, (0.0, 0)) for c in rendered.convs]


# Tokens per forward batch (rows x the longest row) in eval: padded long rows made attention-score tensors of
# rows x heads x length^2 floats. The eval generation of 20 Korean paragraphs (3,300 tokens on average, up to
# 6,400) at 8 rows per batch peaked at 22 GiB RSS and took 665 s per model; one 3,000-token row at a time
# generated faster than four at once (29.6 s vs 38.9 s for 4 rows) at 1.2 instead of 1.9 GiB. The demo's
# batches (16 x ~250 tokens) stay whole.
BATCH_TOKENS = 4096


def token_batches(lengths: Sequence[int], max_rows: int, max_tokens: int = BATCH_TOKENS,
                  max_padding: float = 1.0) -> list[list[int]]:
    """Indices of `lengths` (in that order, best sorted by length) in batches of at most `max_rows` rows and
    `max_tokens` padded tokens; a row longer than `max_tokens` is a batch of its own. With `max_padding` < 1 a
    batch also closes before padding would exceed that share of its padded tokens (forward passes pay for every
    padded position; generation mostly pays per decoding step, so it keeps the default).

    >>> token_batches([100, 200, 1000, 3000, 5000], max_rows=8, max_tokens=4096)
    [[0, 1, 2], [3], [4]]
    >>> token_batches([90, 91, 370, 400], max_rows=8, max_padding=0.25)
    [[0, 1], [2, 3]]
    """
    batches: list[list[int]] = []
    for i, n in enumerate(lengths):
        if batches:
            rows = [*batches[-1], i]
            padded = len(rows) * max(lengths[j] for j in rows)
            if len(rows) <= max_rows and padded <= max_tokens and \
                    padded - sum(lengths[j] for j in rows) <= max_padding * padded:
                batches[-1].append(i)
                continue
        batches.append([i])
    return batches


# per_row_nll's batches close before padding passes this share: the retention passages (8 English of ~90 tokens,
# 8 Korean of ~370) took 12.0 s in batches of up to 16 rows and 8.1 s in batches of 4 (SmolLM2, fp32, 2 cores).
NLL_MAX_PADDING = 0.25


def per_row_nll(model: Any, examples: Sequence[Example], batch_size: int = 8) -> list[tuple[float, int]]:
    """(sum of negative log-likelihood, token count) over each Example's supervised tokens, in input order.

    Token t is predicted from tokens < t, so logits at t-1 score labels at t. Rows are batched by length with
    right padding, at most `batch_size` rows and BATCH_TOKENS tokens a batch. Logits are made only at positions where a row of the batch is supervised (the model's
    `logits_to_keep`), and only those are cast to fp32.

    >>> per_row_nll(model, examples)  # doctest: +SKIP
    [(31.2, 12), (18.9, 7)]
    """
    import torch
    import torch.nn.functional as F

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    out: dict[int, tuple[float, int]] = {}
    was_training = model.training
    model.eval()  # dropout would make the likelihood random
    try:
        for batch in token_batches([len(examples[i].input_ids) for i in order], batch_size,
                                   max_padding=NLL_MAX_PADDING):
            idx = [order[j] for j in batch]
            width = max(len(examples[i].input_ids) for i in idx)
            ids = torch.zeros(len(idx), width, dtype=torch.long)
            labels = torch.full((len(idx), width), IGNORE, dtype=torch.long)
            mask = torch.zeros(len(idx), width, dtype=torch.long)
            for r, i in enumerate(idx):
                n = len(examples[i].input_ids)
                ids[r, :n] = torch.tensor(examples[i].input_ids)
                labels[r, :n] = torch.tensor(examples[i].labels)
                mask[r, :n] = 1
            targets = labels[:, 1:]
            keep = targets != IGNORE
            # Logits only where some row of the batch has a label (transformers' logits_to_keep): a 1,000-token
            # prompt with a 20-token answer projected 1,000 x 49k logits per row before.
            where = keep.any(0).nonzero()[:, 0]
            with torch.inference_mode():
                logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                               logits_to_keep=where.to(model.device)).logits
                keep = keep[:, where].to(logits.device)
                loss = F.cross_entropy(logits[keep].float(), targets[:, where].to(logits.device)[keep],
                                       reduction="none")
                sums = torch.zeros(len(idx), dtype=torch.float64, device=loss.device)
                sums.index_add_(0, keep.nonzero()[:, 0], loss.double())  # back to the row each token came from
            for r, i in enumerate(idx):
                out[i] = (sums[r].item(), int(keep[r].sum()))
    finally:
        model.train(was_training)
    return [out[i] for i in range(len(examples))]


def likeliest(model: Any, tokenizer: Any, prompt: str, endings: Sequence[str]) -> int:
    """The index of the ending the model finds likeliest after `prompt`: the largest sum of its tokens'
    log-likelihoods (per_row_nll), each ending tokenised on its own after the prompt's tokens, as generation adds
    its tokens. serve's tool_choice required picks the function to call with it, among the ones offered only."""
    head = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    examples = []
    for ending in endings:
        tail = list(tokenizer(ending, add_special_tokens=False)["input_ids"])
        examples.append(Example(tuple(head + tail), (IGNORE,) * len(head) + tuple(tail), "ending"))
    scores = per_row_nll(model, examples)
    return min(range(len(endings)), key=lambda i: scores[i][0])
