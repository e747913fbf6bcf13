"""The main job, top to bottom: data -> base eval -> LoRA train -> tuned eval -> report.

Each step calls one stage module; this file only orders them and writes their outputs into the run folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from tunesmith import evaluate as evaluation
from tunesmith import models, report, rundir, template, train
from tunesmith.config import RunConfig
from tunesmith.data.prepare import prepare
from tunesmith.errors import TunesmithError
from tunesmith.records import Example, PreparedData, RunSummary

PACKAGES = ("tunesmith", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "sacrebleu", "gguf")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # installed from a wheel: no checkout to name
    return out.stdout.strip() + ("-dirty" if dirty else "")


def manifest(cfg: RunConfig) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    files = [*cfg.data.train, *cfg.data.eval]
    return {"tunesmith_git_commit": _git_commit(), "seed": cfg.train.seed, "data_seed": cfg.data.seed,
            "model": cfg.model, "model_resolved": models.resolve(cfg.model),
            "data_files": {str(p): _sha256(p) for p in files if p.is_file()},
            "packages": versions, "python": platform.python_version(), "platform": platform.platform()}


def render(tokenizer: Any, data: PreparedData, cfg: RunConfig, say: Callable[[str], None]
           ) -> tuple[PreparedData, list[Example], list[Example]]:
    """Template set-up, encoding and the pre-training checks; returns the data as the model will see it."""
    for notice in template.setup_tokenizer(tokenizer, cfg.template):
        say(f"notice: {notice}")
    if not template.supports_system(tokenizer) and any(c.messages[0].role == "system" for c in data.train):
        say("notice: the chat template rejects a system turn; its text is merged into the first user turn")
        data = dataclasses.replace(data, train=tuple(map(template.merge_system, data.train)),
                                   eval=tuple(map(template.merge_system, data.eval)))
    train_ex, skipped = template.encode_all(tokenizer, data.train, cfg.template)
    eval_ex, eval_skipped = template.encode_all(tokenizer, data.eval, cfg.template)
    checks = template.check(tokenizer, data.train, train_ex, skipped)
    for line in template.describe(checks):
        say(f"check: {line}")
    for s in (*skipped, *eval_skipped):
        say(f"not trained {s.location}: {s.reason}")
    truncated = sum(e.truncated for e in (*train_ex, *eval_ex))
    if truncated:
        say(f"notice: {truncated} rows lost history or input text to fit template.max_length="
            f"{cfg.template.max_length} (answers are never cut)")
    if not train_ex or not eval_ex:
        raise TunesmithError("no trainable rows left after templating", fix="see the rows listed above")
    if checks.end_of_turn_missing or checks.parity_failures:
        raise TunesmithError("the template checks failed (see 'check:' above); training would teach the wrong thing",
                             fix="set template.chat_template, or report the model to tunesmith")
    return data, train_ex, eval_ex


def describe_plan(cfg: RunConfig, data: PreparedData, train_ex: list[Example], eval_ex: list[Example]) -> list[str]:
    """What training will do, before it does it: printed by `tunesmith plan` and at the start of `train`."""
    import math
    import os

    t = cfg.train
    per_epoch = math.ceil(len(train_ex) / (t.batch_size * t.grad_accum))
    steps = t.max_steps if t.max_steps > 0 else math.ceil(per_epoch * t.epochs)
    tokens = sum(len(e.input_ids) for e in train_ex)
    if "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        allocator = "tcmalloc"
    elif train.tcmalloc_library():
        allocator = "tcmalloc (train preloads it)"
    else:
        allocator = "glibc (apt-get install libgoogle-perftools4 for ~1.5x on CPU)"
    return [f"model: {cfg.model} -> {models.resolve(cfg.model)}",
            f"rows: {len(train_ex)} train, {len(eval_ex)} eval (read {data.rows_read}: {len(data.skipped)} skipped, "
            f"{len(data.duplicates)} duplicates)",
            f"tokens: {tokens} per epoch, supervised {sum(e.supervised_tokens for e in train_ex)}",
            f"steps: {steps} optimizer steps ({per_epoch} per epoch, batch {t.batch_size} x accumulation "
            f"{t.grad_accum}), eval loss every {t.eval_steps} steps and at step 0",
            f"LoRA: r={cfg.lora.r}, alpha={cfg.lora.alpha}, dropout={cfg.lora.dropout}, "
            f"targets={cfg.lora.target_modules}, lr={t.learning_rate} ({t.lr_scheduler})",
            f"precision: {models.precision_reason(t.precision)}; allocator: {allocator}",
            f"generation eval: {min(len(data.eval), cfg.eval.max_rows)} rows, up to {cfg.eval.max_new_tokens} "
            f"new tokens, greedy",
            f"output: {cfg.output_dir / cfg.name}"]


def plan(cfg: RunConfig, say: Callable[[str], None] = print) -> list[str]:
    """A dry run: data, template checks and the training plan, without training or writing anything."""
    data = prepare(cfg.data)
    _, tokenizer = models.load(cfg.model, tokenizer_only=True)
    data, train_ex, eval_ex = render(tokenizer, data, cfg, say)
    lines = describe_plan(cfg, data, train_ex, eval_ex)
    for line in lines:
        say(f"plan: {line}")
    return lines


def run(cfg: RunConfig, *, overwrite: bool = False, say: Callable[[str], None] = print) -> RunSummary:
    """Run the whole job described by `cfg` and return the before/after summary.

    >>> run(config.load(Path("configs/demo.yaml")))  # doctest: +SKIP
    """
    wall = time.perf_counter()
    data = prepare(cfg.data)  # before any model loads: bad data fails fast
    say(f"data: {len(data.train)} train / {len(data.eval)} eval conversations, "
        f"{len(data.skipped)} rows skipped, {len(data.duplicates)} duplicates")
    for w in data.warnings:
        say(f"warning: {w}")
    # Model and template problems surface before the run folder exists, so they leave nothing half-written.
    model, tokenizer = models.load(cfg.model)
    data, train_ex, eval_ex = render(tokenizer, data, cfg, say)
    for line in describe_plan(cfg, data, train_ex, eval_ex):
        say(f"plan: {line}")
    run_dir = rundir.create(cfg.output_dir, cfg.name, overwrite=overwrite)
    run_dir.config.write_text(cfg.to_yaml(), encoding="utf-8")
    rundir.write_jsonl(run_dir.train_data, [c.to_json() for c in data.train])
    rundir.write_jsonl(run_dir.eval_data, [c.to_json() for c in data.eval])
    run_dir.manifest.write_text(json.dumps(manifest(cfg), indent=2), encoding="utf-8")

    say(f"evaluating the base model on {min(len(data.eval), cfg.eval.max_rows)} held-out rows ...")
    before = evaluation.evaluate("before", model, tokenizer, data.eval, cfg.eval, None)
    say(f"training LoRA on {len(train_ex)} rows ({sum(len(e.input_ids) for e in train_ex)} tokens/epoch) ...")
    result = train.train(model, tokenizer, train_ex, eval_ex, cfg, run_dir, say)
    before = dataclasses.replace(before, eval_loss=result.eval_loss_before)
    say("evaluating the tuned model ...")
    after = evaluation.evaluate("after", result.model, tokenizer, data.eval, cfg.eval, result.eval_loss_after)
    for res in (before, after):
        rundir.write_jsonl(run_dir.eval_file(res.label), [dataclasses.asdict(g) for g in res.generations])
    difference = evaluation.paired_bootstrap(list(before.generations), list(after.generations))
    path = report.write(run_dir, title=cfg.name, model=cfg.model, data=data, before=before, after=after,
                        main_metric=evaluation.MAIN_METRIC, difference=difference)
    run_dir.finish()
    return RunSummary(run_dir.root, path, before, after, evaluation.MAIN_METRIC, difference, result.seconds,
                      time.perf_counter() - wall)
