"""The main job, top to bottom: data -> base eval -> LoRA train -> tuned eval -> report.

Each step calls one stage module; this file only orders them and writes their outputs into the run folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from tunesmith import evaluate as evaluation
from tunesmith import models, progress, report, rundir, template, train
from tunesmith import plan as planning
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


def plan(cfg: RunConfig, say: Callable[[str], None] = print) -> list[str]:
    """A dry run: data, template checks and the training plan, without training or writing anything."""
    data = prepare(cfg.data)
    _, tokenizer = models.load(cfg.model, tokenizer_only=True)
    data, train_ex, eval_ex = render(tokenizer, data, cfg, say)
    lines = planning.describe(cfg, data, train_ex, eval_ex)
    for line in lines:
        say(f"plan: {line}")
    return lines


def _starting_model(cfg: RunConfig) -> tuple[Any, Any]:
    """The model training starts from: the base model, or a finished run's weights (`continue_from`)."""
    if cfg.continue_from is None:
        return models.load(cfg.model, load_in=cfg.train.load_in)
    prev = rundir.RunDir(cfg.continue_from)
    if prev.weights is None:
        raise TunesmithError(f"{prev.root} has no finished weights (adapter/ or model/)",
                             fix="point --continue-from at a run folder whose training finished")
    if prev.weights == prev.full:
        if cfg.train.method != "full":
            raise TunesmithError(f"{prev.root} was fully fine-tuned; LoRA on top of it is a new base model",
                                 fix=f"use --model {prev.full} instead of --continue-from")
        return models.load(str(prev.full))
    if cfg.train.method == "full":
        raise TunesmithError("--continue-from a LoRA run needs method lora", fix="drop --set train.method=full")
    from peft import PeftModel

    model, tokenizer = models.load(cfg.model, load_in=cfg.train.load_in)
    return PeftModel.from_pretrained(model, prev.adapter, is_trainable=True), tokenizer


def _tuned_model(model: Any, run_dir: rundir.RunDir) -> Any:
    """A run whose training finished before a crash: its weights, instead of training again."""
    if run_dir.weights == run_dir.full:
        return models.load(str(run_dir.full))[0]
    from peft import PeftModel

    return PeftModel.from_pretrained(model, run_dir.adapter)


def _metrics_up_to(path: Path, step: int) -> None:
    """Drop the metric rows a killed run logged after its last complete checkpoint; the resumed run relogs them."""
    rows = [r for r in rundir.read_jsonl(path) if r["step"] <= step] if path.is_file() else []
    rundir.write_jsonl(path, rows)


def run(cfg: RunConfig, *, overwrite: bool = False, say: Callable[[str], None] = print) -> RunSummary | None:
    """Run the whole job described by `cfg` and return the before/after summary.

    Re-running an unfinished run folder (same config) continues it: generations already written are kept,
    training resumes from the newest complete checkpoint. Under torchrun only rank 0 writes and evaluates;
    the other ranks train and return None.

    >>> run(config.load(Path("configs/demo.yaml")))  # doctest: +SKIP
    """
    wall = time.perf_counter()
    data = prepare(cfg.data)  # before any model loads: bad data fails fast
    say(f"data: {len(data.train)} train / {len(data.eval)} eval conversations, "
        f"{len(data.skipped)} rows skipped, {len(data.duplicates)} duplicates")
    for w in data.warnings:
        say(f"warning: {w}")
    # Model and template problems surface before the run folder exists, so they leave nothing half-written.
    model, tokenizer = _starting_model(cfg)
    data, train_ex, eval_ex = render(tokenizer, data, cfg, say)
    for line in planning.describe(cfg, data, train_ex, eval_ex):
        say(f"plan: {line}")
    if train.rank() != 0:
        checkpoint = None if overwrite else rundir.RunDir(cfg.output_dir / cfg.name).last_checkpoint()
        train.train(model, tokenizer, train_ex, eval_ex, cfg, rundir.RunDir(cfg.output_dir / cfg.name), say,
                    resume_from=checkpoint)
        return None
    run_dir, resumed = rundir.create(cfg.output_dir, cfg.name, overwrite=overwrite, config_yaml=cfg.to_yaml())
    if resumed:
        say(f"resuming the unfinished run in {run_dir.root}")
    else:
        rundir.write_jsonl(run_dir.train_data, [c.to_json() for c in data.train])
        rundir.write_jsonl(run_dir.eval_data, [c.to_json() for c in data.eval])
        run_dir.manifest.write_text(json.dumps(manifest(cfg), indent=2), encoding="utf-8")

    rows = min(len(data.eval), cfg.eval.max_rows)
    say(f"generating with the starting model on {rows} held-out rows ...")
    with progress.bar("generating (before)", rows) as tick:
        before = evaluation.evaluate("before", model, tokenizer, data.eval, cfg.eval, None,
                                     run_dir.eval_file("before"), tick)
    seconds = 0.0
    if run_dir.weights is not None:
        say(f"training finished earlier; loading {run_dir.weights}")
        tuned = _tuned_model(model, run_dir)
    else:
        checkpoint = run_dir.last_checkpoint() if resumed else None
        if checkpoint is not None:
            say(f"resuming training from {checkpoint.name} (model, optimizer, scheduler, RNG and data order)")
            _metrics_up_to(run_dir.metrics, int(checkpoint.name.split("-")[1]))
        else:
            run_dir.metrics.unlink(missing_ok=True)
            shutil.rmtree(run_dir.checkpoints, ignore_errors=True)
        say(f"training ({cfg.train.method}) on {len(train_ex)} rows ({sum(len(e.input_ids) for e in train_ex)} "
            "tokens/epoch) ...")
        result = train.train(model, tokenizer, train_ex, eval_ex, cfg, run_dir, say, resume_from=checkpoint,
                             progress=progress.training_bar())
        tuned, seconds = result.model, result.seconds
    training = train.summarize(rundir.read_jsonl(run_dir.metrics), *train.steps(len(train_ex), cfg))
    before = dataclasses.replace(before, eval_loss=training.start_eval_loss)
    say("generating with the tuned model ...")
    with progress.bar("generating (after)", rows) as tick:
        after = evaluation.evaluate(
            "after", tuned, tokenizer, data.eval, cfg.eval,
            training.best_eval_loss if cfg.train.load_best else training.last_eval_loss,
            run_dir.eval_file("after"), tick)
    difference = evaluation.paired_bootstrap(list(before.generations), list(after.generations))
    path = report.write(run_dir, title=cfg.name, model=cfg.model, data=data, before=before, after=after,
                        main_metric=evaluation.MAIN_METRIC, difference=difference, training=training)
    run_dir.finish()
    return RunSummary(run_dir.root, path, before, after, evaluation.MAIN_METRIC, difference, training, seconds,
                      time.perf_counter() - wall)
