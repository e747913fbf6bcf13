"""Before/after evaluation: each model generates for the same held-out rows through the same render path as
training, then every metric is computed per row and each model is compared with the base by paired bootstrap.
The generating and scoring themselves are generation.py's; this module puts them in order.

Generations are appended to eval/<model>.jsonl as they are made, so a crash loses nothing and a re-run continues.
The main metric is chrF: character n-grams work for Korean, where word-level BLEU punishes every particle.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable, Sequence
from typing import Any

from tunesmith import embedders, evalcache, metrics, models, progress, retention, rundir, runtime, template
from tunesmith.config import RunConfig, TemplateConfig
from tunesmith.errors import TunesmithError
from tunesmith.generation import generate, load_model, reference_nll
from tunesmith.records import (Conversation, EvalReport, EvalSettings, Generation, ModelEval, Rendered, Retention,
                               RetentionModel)
from tunesmith.template import prompt_text

MAIN_METRIC = "chrf"  # the report's headline metric


def evaluate(run: rundir.RunDir, cfg: RunConfig, convs: Sequence[Conversation], *,
             labels: Sequence[str] = ("base", "tuned"), out_dir: rundir.EvalDir | None = None,
             eval_losses: dict[str, float] | None = None, judge: dict[str, str] | None = None,
             fresh: bool = False, say: Callable[[str], None] = print) -> EvalReport:
    """Generate with every model (incrementally into out_dir's <label>.jsonl), score, compare with the first.

    >>> evaluate(run, cfg, convs)  # doctest: +SKIP
    EvalReport(models=(ModelEval(label='base', ...), ModelEval(label='tuned', ...)), ...)
    """
    out_dir = out_dir or run.evaluation()
    ecfg = cfg.eval
    settings = EvalSettings.of(ecfg, runtime.choose_precision(ecfg.precision))
    _check_settings(out_dir, labels, settings, fresh)
    convs = tuple(convs[: ecfg.max_rows])
    embedder = embedders.embedder_for(ecfg.embedder)
    results, nlls, kept = [], [], []  # kept: each model's retention numbers, while the check is on
    for label in labels:
        done = _model_eval(label, run, cfg, convs, out_dir, (settings, fresh, not results),
                           retain=len(kept) == len(results), say=say)
        nlls.append(done.nll)
        if done.retention is not None:
            kept.append(done.retention)
        scores = metrics.score_rows(done.gens, embedder=embedder, nll=done.nll)
        results.append(ModelEval(label, done.spec, scores.corpus, tuple(scores.rows), tuple(done.gens),
                                 (eval_losses or {}).get(label)))
    base = results[0]
    differences = {m.label: _differences(base, m, nlls[0], nll, scores.bleu_tokenize, ecfg.seed)
                   for m, nll in zip(results[1:], nlls[1:])}
    report = EvalReport(tuple(results), differences, scores.lang, scores.bleu_tokenize,
                        embedder.name if embedder else None, settings,
                        retention=_retention(kept, len(results), ecfg.seed))
    # Saved before the judge is asked: if the judge fails, the folder still holds these models' own numbers.
    out_dir.write_summary(report)
    if judge and len(results) > 1:
        from tunesmith import judge as judging
        from tunesmith.endpoint import redact_url

        say(f"asking the judge {judge['model']} at {redact_url(judge['url'])} "
            f"({2 * len(base.generations)} requests) ...")
        judged = judging.judge_pairs(list(base.generations), list(results[1].generations), url=judge["url"],
                                     model=judge["model"], seed=ecfg.seed).summary()
        report = dataclasses.replace(report, judge=judged)
        out_dir.write_summary(report)
    return report


@dataclasses.dataclass(frozen=True)
class _Done:
    """One model's generations, reference NLLs and retention numbers (None: not measured)."""

    spec: str
    gens: list[Generation]
    nll: list[tuple[float, int]]
    retention: RetentionModel | None


def _model_eval(label: str, run: rundir.RunDir, cfg: RunConfig, convs: Sequence[Conversation],
                out_dir: rundir.EvalDir, state: tuple[EvalSettings, bool, bool], *, retain: bool,
                say: Callable[[str], None]) -> _Done:
    """One model on the rows: generated (incrementally into out_dir), or for the base model taken from the
    evaluation cache when an earlier run had exactly this model, these rows and these settings. `state` is
    (settings, fresh, first model); `retain`: measure retention if it is wanted for this model."""
    settings, fresh, first = state
    ecfg = cfg.eval
    own = _eval_template(label, cfg)
    key, rendered, tok = _cache_name(label, cfg, convs, own, settings, retain) or (None, None, None)
    hit = evalcache.read(key) if key and ecfg.cache and not fresh else None
    if hit is not None:  # the key holds the settings and `retain`: what was measured then is what is asked now
        if first:
            _clear_stale(run, out_dir, settings, fresh)
        gens = hit.generations([(c.source, *prompt_text(tok, c)) for c in rendered.convs])
        out_dir.write_generations(label, gens)
        say(f"{label} ({hit.spec}): generations, reference nll and retention reused from the evaluation cache "
            f"(the same model, rows and settings as an earlier run: {evalcache.folder() / key}.json)")
        return _Done(hit.spec, gens, list(hit.nll), hit.retention)
    model, tokenizer, spec = load_model(label, run, cfg)
    if first:  # every option and the first model are fine: from here on the old summary is stale
        _clear_stale(run, out_dir, settings, fresh)
    if rendered is None:  # the cache key's rendering is this model's too (its tokenizer files): not done twice
        rendered = template.render_dataset(tokenizer, convs, own)
    else:  # ... made with another tokenizer object: this one gets the same template (a configured one, say)
        template.setup_tokenizer(tokenizer, own)
    say(f"generating with {label} ({spec}) on {len(rendered.convs)} rows ...")
    with progress.bar(f"generating ({label})", len(rendered.convs)) as tick:
        gens = generate(model, tokenizer, rendered.convs, ecfg, (out_dir, label), tick)
    nll = reference_nll(model, rendered, ecfg.batch_size)
    kept = None
    if retain and retention.wanted(ecfg.retention, model):
        say(f"retention check with {label}: general text and prompts outside the task ...")
        kept = retention.measure(label, model, tokenizer, own, ecfg)
    del model
    gc.collect()
    if key:
        evalcache.write(key, evalcache.CachedEval(spec, tuple((g.generation, g.stopped) for g in gens),
                                                      tuple(nll), kept))
    return _Done(spec, gens, nll, kept)


def _eval_template(label: str, cfg: RunConfig) -> TemplateConfig:
    """base and tuned render exactly as training did; another model through its own template (or the fallback);
    the reference answer (last assistant turn) is what the nll is measured on."""
    own = cfg.template if label in ("base", "tuned") else TemplateConfig(max_length=cfg.template.max_length)
    return own.model_copy(update={"supervise": "last", "overflow": "truncate"})


def base_cached(cfg: RunConfig, convs: Sequence[Conversation]) -> bool:
    """Whether evaluating these rows takes the base model's half from the evaluation cache, as _model_eval will:
    the plan's time estimate then counts one model. A GGUF not converted yet has no entry (the key is made of the
    converted folder's files), and the plan does not convert it to find out."""
    from pathlib import Path

    if not cfg.eval.cache or cfg.continue_from is not None or not Path(models.location(cfg.model)).is_dir():
        return False
    settings = EvalSettings.of(cfg.eval, runtime.choose_precision(cfg.eval.precision))
    named = _cache_name("base", cfg, tuple(convs[: cfg.eval.max_rows]), _eval_template("base", cfg), settings,
                        retain=True)  # the first model evaluated measures retention when it is wanted
    return named is not None and evalcache.read(named[0]) is not None


def _cache_name(label: str, cfg: RunConfig, convs: Sequence[Conversation], own: TemplateConfig,
                settings: EvalSettings, retain: bool) -> tuple[str, Rendered, Any] | None:
    """(the evaluation cache's key, the rendering, the tokenizer) for the base model of a run that starts from a
    model folder; None for anything else (a tuned model differs with every run)."""
    if label != "base" or cfg.continue_from is not None:
        return None
    files = evalcache.fingerprint(cfg.model)
    if files is None:
        return None
    _, tok = models.load(cfg.model, tokenizer_only=True)
    rendered = template.render_dataset(tok, convs, own)
    wanted = {**settings.to_json(), "batch_size": cfg.eval.batch_size, "retention": cfg.eval.retention,
              "retain": retain}
    name = evalcache.key(files, {"load_in": cfg.train.load_in}, wanted,
                         [prompt_text(tok, c)[0] for c in rendered.convs], rendered.examples)
    return name, rendered, tok


def _differences(base: ModelEval, other: ModelEval, base_nll: Sequence[tuple[float, int]],
                 other_nll: Sequence[tuple[float, int]], tokenize: str, seed: int) -> dict[str, Any]:
    """other - base for every metric, each the difference of the two numbers the report shows: per-row metrics
    on the mean of rows; chrF and BLEU on the corpus statistic and nll token-weighted (the log of the perplexity
    shown), their intervals from resampling rows and recomputing that statistic."""
    out = metrics.compare(base.rows, other.rows, seed=seed, skip=(*metrics.CORPUS_METRICS, "nll"))
    for name in metrics.CORPUS_METRICS:
        out[name] = metrics.corpus_difference(name, base.generations, other.generations, tokenize, seed=seed)
    if base.rows and "nll" in base.rows[0]:
        out["nll"] = metrics.nll_difference(base_nll, other_nll, seed=seed)
    return out


def _retention(kept: list[RetentionModel], models: int, seed: int) -> Retention | None:
    """The retention comparison when every model was measured (with `auto`, all of them or none) and there is a
    model to compare with the base."""
    return retention.compare(kept, seed=seed) if models > 1 and len(kept) == models else None


def _check_settings(out_dir: rundir.EvalDir, labels: Sequence[str], settings: EvalSettings, fresh: bool) -> None:
    """Generations are only continued when they were made with the same settings; --fresh starts over."""
    saved = out_dir.read_settings()
    if saved is not None and not fresh and saved != settings \
            and any(out_dir.generations(label).is_file() for label in labels):
        raise TunesmithError(f"the generations in {out_dir.root} were made with other settings "
                             f"({', '.join(saved.changes(settings))})",
                             fix="pass --fresh to generate again with the new settings")


def _clear_stale(run: rundir.RunDir, out_dir: rundir.EvalDir, settings: EvalSettings, fresh: bool) -> None:
    """Just before generating: the old summary (and the report built from it) no longer describes the
    generations on disk, so they go first; a run killed mid-eval leaves no numbers from other rows or settings.
    --fresh also removes every earlier generation file.
    """
    stale = out_dir.files() if fresh else [out_dir.summary]
    if out_dir == run.evaluation():  # the report is built from this summary
        stale += [run.report, run.report_md]
    for p in stale:
        run.remove(p)
    out_dir.write_settings(settings)
