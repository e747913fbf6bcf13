"""`tunesmith preview` and `tunesmith tokens`: make the render path and the vocabulary visible.

preview shows rows exactly as training sees them, supervised tokens highlighted, with the template checks;
tokens shows a tokenizer's special tokens, chat template and cost per character, and can add tokens.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import DataConfig, TemplateConfig
from tunesmith.errors import TunesmithError
from tunesmith.records import Example, Skip, TemplateCheck
from tunesmith.template import IGNORE, render_dataset

# Sample text for tokens-per-character: the bundled task, in both languages users write.
SAMPLES = {"en": "It sounds like you feel overwhelmed because the exams are close. What worries you most?",
           "ko": "시험이 다가와서 많이 부담스러우시군요. 지금 가장 걱정되는 것은 무엇인가요?"}


@dataclass(frozen=True)
class Preview:
    rows: tuple[tuple[Example, tuple[tuple[str, bool], ...]], ...]  # example, (text run, supervised?) runs
    checks: TemplateCheck
    notices: tuple[str, ...]
    skipped: tuple[Skip, ...] = ()  # rows the reader or the template could not use
    max_length: int = 0  # the max_length used (`auto` resolved)
    context: int | None = None  # the model's context length, where its config says


def runs(tokenizer: Any, ex: Example) -> tuple[tuple[str, bool], ...]:
    """Decode maximal runs of supervised / unsupervised tokens (whole runs, so Korean characters stay intact)."""
    out = []
    pairs = zip(ex.input_ids, ex.labels)
    for supervised, group in itertools.groupby(pairs, key=lambda p: p[1] != IGNORE):
        out.append((tokenizer.decode([t for t, _ in group]), supervised))
    return tuple(out)


def preview(paths: list[Path], data_cfg: DataConfig, template_cfg: TemplateConfig, model: str, n: int) -> Preview:
    """Render the first `n` usable rows of `paths` with `model`'s template, plus the checks over all rows.

    >>> preview([Path("corpus.json")], DataConfig(train=[Path("corpus.json")]), TemplateConfig(), "default", 3)  # doctest: +SKIP
    """
    from tunesmith import models
    from tunesmith.data.prepare import dedup, read_all

    files = read_all(paths, data_cfg)
    convs, _ = dedup([c for f in files for c in f.conversations])
    _, tok = models.load(model, tokenizer_only=True)
    context = models.context_length(model)
    r = render_dataset(tok, convs, template_cfg, context=context)
    return Preview(tuple((e, runs(tok, e)) for e in r.examples[:n]), r.checks, r.notices,
                   tuple(s for f in files for s in f.skipped) + r.skipped, r.max_length, context)


def preview_pairs(files: list[Path], template_cfg: TemplateConfig, model: str, n: int,
                  encoding: str = "auto") -> Preview:
    """preview for preference files: the first `n` pairs, each as its chosen and its rejected render (one prompt,
    the answer supervised with its end-of-turn token), with the template checks over every pair."""
    from tunesmith import models, pairs
    from tunesmith.data import preference

    reads = [preference.load(f, encoding=encoding) for f in files]
    _, tok = models.load(model, tokenizer_only=True)
    context = models.context_length(model)
    r = pairs.render_pairs(tok, [p for read in reads for p in read.pairs], template_cfg, context=context)
    shown = {p.source for p in r.pairs[:n]}
    return Preview(tuple((e, runs(tok, e)) for e in r.examples if e.source.rsplit("#", 1)[0] in shown), r.checks,
                   (), tuple(s for read in reads for s in read.skipped) + r.skipped, r.max_length, context)


def tokenizer_report(model: str) -> dict[str, Any]:
    """Special tokens with ids, chat template, vocabulary size and tokens per character on sample text."""
    from tunesmith import models

    _, tok = models.load(model, tokenizer_only=True)
    specials = {name: (tok.convert_tokens_to_ids(t), t) for name, t in tok.special_tokens_map.items()
                if isinstance(t, str)}
    added = {t: i for t, i in sorted(tok.get_added_vocab().items(), key=lambda kv: kv[1])}
    per_char = {lang: round(len(tok(text, add_special_tokens=False)["input_ids"]) / len(text), 3)
                for lang, text in SAMPLES.items()}
    return {"model": model, "vocab_size": len(tok), "special_tokens": specials, "added_tokens": added,
            "chat_template": tok.chat_template, "tokens_per_char": per_char}


def write_csv(report: dict[str, Any], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["token", "id", "role"])
        roles = {tok: name for name, (_, tok) in report["special_tokens"].items()}
        for tok, i in report["added_tokens"].items():
            w.writerow([tok, i, roles.get(tok, "added")])


def add_tokens(model: str, tokens: list[str], out: Path, *, overwrite: bool = False) -> Path:
    """Add special tokens, resize the embeddings, and save model + tokenizer (safetensors) to `out`.

    `out` must be missing or empty: saving into a folder that holds other files would replace some of them
    (config.json, model.safetensors, ...) and leave the rest beside the new model. `overwrite` writes into it
    anyway, replacing files of the same names and deleting nothing.
    """
    from tunesmith import models

    if out.exists() and not out.is_dir():
        raise TunesmithError("--out is a file, not a folder", where=f"--out {out}",
                             fix="pass a new folder, e.g. --out models/with-tokens")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        held = sorted(p.name for p in out.iterdir())
        raise TunesmithError("the folder is not empty; saving would replace files in it", where=f"--out {out}",
                             problems=[f"it holds: {', '.join(held[:10])}{' ...' if len(held) > 10 else ''}"],
                             fix="pass a new or empty folder, or --overwrite to write into it anyway")
    m, tok = models.load(model)
    new = tok.add_tokens(tokens, special_tokens=True)
    if new:
        # New rows start at the mean embedding, not random: the model's outputs stay sane before training.
        m.resize_token_embeddings(len(tok), mean_resizing=True)
    out.mkdir(parents=True, exist_ok=True)
    m.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
