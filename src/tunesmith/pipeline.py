"""The main job, top to bottom: data -> base eval -> LoRA train -> tuned eval -> report.

Each step calls one stage module; this file only orders them and writes their outputs into the run folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tunesmith import evaluate, models, prefeval, prefplan, preftrain, progress, report, rundir, runtime, skips
from tunesmith import memory
from tunesmith import plan as planning
from tunesmith import grpotrain, rewards, template, train
from tunesmith.config import RunConfig
from tunesmith.data.prefdata import prepare_preferences
from tunesmith.data.prepare import prepare
from tunesmith.diskio import write_jsonl
from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, EvalReport, Example, PreparedData
from tunesmith.runfiles import DataReport, Manifest, Plan
from tunesmith.train import TrainingSummary

PACKAGES = ("tunesmith", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "sacrebleu", "gguf",
            "sentence-transformers", "wandb")


@dataclass(frozen=True)
class RunSummary:
    """What `tunesmith train` prints at the end."""

    run_dir: Path
    report: Path
    evaluation: EvalReport
    training: TrainingSummary
    train_seconds: float
    wall_seconds: float
    preference: prefeval.PreferenceEval | None = None  # a preference run: accuracy on held-out pairs


def _sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, sorted: a saved `datasets` folder)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def data_fingerprints(data: PreparedData) -> dict[str, str]:
    """path -> sha256 of every data file actually read (globs and folders expanded; hub datasets have none)."""
    return {str(f.path): _sha256(f.path) for f in data.files if f.path.exists()}


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


def manifest(cfg: RunConfig, data: PreparedData) -> Manifest:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return Manifest(_git_commit(), cfg.train.seed, cfg.data.seed, cfg.model, models.resolve(cfg.model),
                    data_fingerprints(data), versions, platform.python_version(), platform.platform(),
                    runtime.hardware())


def render(tokenizer: Any, data: PreparedData, cfg: RunConfig, say: Callable[[str], None]
           ) -> tuple[PreparedData, list[Example], list[Example]]:
    """The template stage and the pre-training checks; returns the data as the model will see it."""
    rows = len(data.train) + len(data.eval)
    context, context_is = _length_cap(cfg)
    with progress.bar("preparing: templating and masking", rows) as tick:
        r = template.render_dataset(tokenizer, data.train + data.eval, cfg.template, context=context,
                                    progress=tick)
    for notice in r.notices:
        say(f"notice: {notice}")
    if cfg.template.max_length == "auto":
        longest = max((len(e.input_ids) for e in r.examples), default=0)
        say(f"template: max_length auto -> {r.max_length} (longest row {longest} tokens, rounded up to "
            f"{skips.AUTO_STEP}; at most {context_is}: {context or 'unknown'})")
    for line in template.describe(r.checks):
        say(f"check: {line}")
    for line in skips.block(f"not trained or evaluated: {skips.rows_text(len(r.skipped))} (all of them: "
                            "data/summary.json in the run folder)", r.skipped, r.max_length, context, context_is):
        say(line)
    # Rows the template could not use leave train/eval here, once, so plan, summary and report count alike.
    gone = {s.location for s in r.skipped}
    fitted = {c.source: c for c in r.convs}
    data = dataclasses.replace(data, train=tuple(fitted[c.source] for c in data.train if c.source not in gone),
                               eval=tuple(fitted[c.source] for c in data.eval if c.source not in gone),
                               dropped=(*data.dropped, *r.skipped))
    in_eval = {c.source for c in data.eval}
    train_ex = [e for e in r.examples if e.source not in in_eval]
    eval_ex = [e for e in r.examples if e.source in in_eval]
    truncated = sum(e.truncated for e in r.examples)
    if truncated:
        say(f"notice: {truncated} rows lost history or input text to fit template.max_length="
            f"{r.max_length} (answers are never cut)")
    if not train_ex or not eval_ex:
        fixes = skips.skip_lines(r.skipped, r.max_length, context, context_is=context_is)
        raise TunesmithError(f"no {'trainable' if not train_ex else 'eval'} rows left after templating",
                             fix=next((f.removeprefix("  fix: ") for f in fixes if f.startswith("  fix: ")),
                                      "see the lines above"))
    if r.checks.end_of_turn_missing or r.checks.parity_failures:
        raise TunesmithError("the template checks failed (see 'check:' above); training would teach the wrong thing",
                             fix="set template.chat_template, or report the model to tunesmith")
    return data, train_ex, eval_ex


def _length_cap(cfg: RunConfig) -> tuple[int | None, str]:
    """The longest row the run can keep, and why: the model's context, or (max_length auto) the memory budget
    at one row per step, where that is less."""
    context = models.context_length(cfg.model)
    if cfg.template.max_length != "auto":
        return context, "the model's context"
    fits = memory.max_tokens_per_row(cfg)
    if context is None or fits < context:
        return fits, "what fits in memory at one row per step"
    return context, "the model's context"


def plan(cfg: RunConfig, say: Callable[[str], None] = print) -> list[str]:
    """A dry run: data, template checks and the training plan, without training or writing anything."""
    return _planned(cfg, say).lines


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The plan's cost figures for a config (`tunesmith models --data`): peak memory against the budget, time."""

    memory_gib: float
    budget_gib: float
    seconds: float | None
    rows: int
    steps: int

    @property
    def duration(self) -> str:
        return "?" if self.seconds is None else planning.duration(self.seconds)


def estimate(cfg: RunConfig) -> Estimate:
    """What `plan` would estimate for `cfg`, without printing it (raises what `plan` would refuse)."""
    p = _planned(cfg, _quiet)
    trainable, total, arch = memory.parameter_counts(p.cfg)
    peak = memory.drawn_memory_gib(p.cfg, trainable, total, arch, [len(e.input_ids) for e in p.train])[0]
    seconds = planning.run_seconds(p.cfg, p.train, p.eval, total, arch, 1 if p.base_cached else 2)
    return Estimate(peak, memory.memory_budget(p.cfg)[0], seconds, len(p.train), train.steps(len(p.train), p.cfg)[1])


@dataclasses.dataclass(frozen=True)
class Planned:
    """What the plan hands to training, all decided before any weights load."""

    cfg: RunConfig  # the config to train with: the memory fit (or a resumed run's plan) may set batch settings
    data: PreparedData  # rows the template could not use already moved to `dropped`
    tokenizer: Any  # the starting model's, as the template stage set it up: the one that trains
    train: list[Example]  # a preference run: one per pair, both sequences (prefplan.units)
    eval: list[Example]
    lines: list[str]  # the plan as printed (plan.json keeps it)
    prefs: prefplan.PrefRendered | None = None  # train.objective dpo / orpo / simpo / kto: what trains
    eval_room: int | None = None  # eval.max_new_tokens where the plan raised it (plan.thinking_room)
    rewards: tuple[Callable[..., Any], ...] = ()  # train.objective grpo: what scores the answers, yours tried
    base_cached: bool = False  # the base model's evaluation comes from the evaluation cache (the plan's time)


def _planned(cfg: RunConfig, say: Callable[[str], None], saved: Plan | None = None) -> Planned:
    """Data, template stage, memory fit and plan, on the tokenizer alone: everything that can stop a run stops
    before any weights load.

    `saved` is the plan of the unfinished run being resumed: its batch settings are kept (free memory changes
    between runs; a resumed run must take the same steps).
    """
    prefs = None
    if cfg.train.objective in ("sft", "grpo"):  # grpo: the SFT rows' prompts, their answers what rewards compare
        data = prepare(cfg.data)  # bad data fails fast
        _say_data(data, "conversations", say)
        tokenizer = _starting_tokenizer(cfg)
        data, train_ex, eval_ex = render(tokenizer, data, cfg, say)
    else:
        pd = prepare_preferences(cfg.data, cfg.train.objective)
        _say_data(pd.data, "rated answers" if pd.held_rated and not pd.eval else "pairs", say)
        tokenizer = _starting_tokenizer(cfg)
        data, prefs, train_ex, eval_ex = prefplan.render(tokenizer, pd, cfg, say, *_length_cap(cfg))
    if saved is not None and saved.batch_size is not None:
        cfg = saved.apply(cfg)
        fit_lines = [f"memory: resuming with the unfinished run's settings ({saved.batch_size} rows per step x "
                     f"{saved.grad_accum} accumulation{', gradient checkpointing' * bool(saved.gradient_checkpointing)})"]
    elif cfg.train.objective == "grpo":  # its rows are answers written in the step: the SFT fit does not hold
        fit_lines = []
        for name in rewards.chosen(cfg.grpo, data.train):
            rewards.defined(name)  # read, not run: the plan runs no code of the user's
    else:
        cfg, fit_lines = memory.fit_memory(cfg, train_ex, eval_ex)
    before = cfg.eval.max_new_tokens
    cfg, room_lines = planning.thinking_room(cfg, data, eval_ex)
    cached = evaluate.base_cached(cfg, data.eval)  # the plan's time then counts the tuned model's evaluation only
    lines = fit_lines + room_lines + planning.describe(cfg, data, train_ex, eval_ex, cached)
    lines += [prefplan.objective_line(cfg)] if prefs else []
    for line in lines:
        say(f"plan: {line}")
    raised = cfg.eval.max_new_tokens if cfg.eval.max_new_tokens != before else None
    return Planned(cfg, data, tokenizer, train_ex, eval_ex, lines, prefs, raised, base_cached=cached)


def _say_data(data: PreparedData, what: str, say: Callable[[str], None]) -> None:
    say(f"data: {len(data.train)} train / {len(data.eval)} eval {what}, "
        f"{len(data.skipped)} rows skipped, {len(data.duplicates)} duplicates")
    for line in skips.skip_lines((*data.skipped, *data.duplicates)):
        say(f"  {line}")
    for w in data.warnings:
        say(f"warning: {w}")


def _starting_tokenizer(cfg: RunConfig) -> Any:
    """The tokenizer of the model training starts from (a --continue-from run saved its own with its weights)."""
    prev = rundir.RunDir(cfg.continue_from) if cfg.continue_from is not None else None
    if prev is None or prev.weights is None:  # a missing continue_from is reported by _starting_model
        return models.load(cfg.model, tokenizer_only=True)[1]
    from transformers import AutoTokenizer

    return models.with_pad_token(AutoTokenizer.from_pretrained(prev.weights))


def _unfinished_plan(cfg: RunConfig, overwrite: bool) -> Plan | None:
    """The saved plan of the unfinished run a re-run will resume (same config; create checks that), if any."""
    run = rundir.RunDir(cfg.output_dir / cfg.name)
    if overwrite or run.finished or not run.config.is_file() or run.config.read_text(encoding="utf-8") != cfg.to_yaml():
        return None
    return run.read_plan()


def _starting_model(cfg: RunConfig) -> tuple[Any, Any]:
    """The model training starts from: the base model, or a finished run's weights (`continue_from`)."""
    if cfg.continue_from is None:
        return models.load(cfg.model, load_in=cfg.train.load_in)
    prev = rundir.RunDir(cfg.continue_from)
    if prev.weights is None:
        raise TunesmithError(f"{prev.root} has no finished weights (adapter/ or model/)",
                             fix="point --continue-from at a run folder whose training finished")
    if prev.weights == prev.full and cfg.train.method != "full":
        raise TunesmithError(f"{prev.root} was fully fine-tuned; LoRA on top of it is a new base model",
                             fix=f"use --model {prev.full} instead of --continue-from")
    if prev.weights == prev.adapter and cfg.train.method == "full":
        raise TunesmithError("--continue-from a LoRA run needs method lora", fix="drop --set train.method=full")
    model, tokenizer, _ = models.load_run_weights(prev, trainable=True, load_in=cfg.train.load_in)
    return model, tokenizer


def _check_continue_from(cfg: RunConfig) -> None:
    """--continue-from must not name the run being written: --overwrite would delete the weights it starts from."""
    if cfg.continue_from is None:
        return
    source, target = cfg.continue_from.resolve(), (cfg.output_dir / cfg.name).resolve()
    if source == target or target in source.parents:
        raise TunesmithError(f"--continue-from {cfg.continue_from} is the run being written ({target})",
                             fix="give the new run its own --name; it starts from that run's weights and "
                                 "leaves them in place")


def _check_same_data(run_dir: rundir.RunDir, data: PreparedData) -> None:
    """A resumed run must train on the data it started with; otherwise its folder would describe other rows."""
    saved_manifest = run_dir.read_manifest()
    if saved_manifest is not None:
        saved = saved_manifest.data_files
        now = data_fingerprints(data)
        problems = [f"{p}: {'changed since' if p in now else 'no longer read, but was read by'} the unfinished run"
                    for p in saved if now.get(p) != saved[p]]
        problems += [f"{p}: new, not read by the unfinished run" for p in now if p not in saved]
    else:  # the manifest was lost: compare the rows themselves
        problems = [f"data/{which}.jsonl in the run folder differs from the rows read now"
                    for which, rows in (("train", data.train), ("eval", data.eval))
                    if run_dir.read_conversations(which) != list(rows)]
    if problems:
        raise TunesmithError(f"the data changed since the unfinished run in {run_dir.root} started, so it cannot "
                             "be resumed", problems=problems,
                             fix="pass --overwrite to start it again on the new data, or --name for a new run "
                                 "(or restore the old files to resume)")


def _write_inputs(run_dir: rundir.RunDir, cfg: RunConfig, data: PreparedData, plan_lines: list[str],
                  steps: tuple[int, int], prefs: prefplan.PrefRendered | None = None,
                  eval_room: int | None = None) -> None:
    """The run's inputs: written at the start, and any lost from an unfinished run written again on resume."""
    held = [{**p.to_json(), "source": p.source} for p in prefs.eval_pairs] if prefs else None
    writers = {**({run_dir.pairs("eval"): lambda: write_jsonl(run_dir.pairs("eval"), held)} if prefs else {}),
               run_dir.train_data: lambda: run_dir.write_conversations("train", data.train),
               run_dir.eval_data: lambda: run_dir.write_conversations("eval", data.eval),
               run_dir.data_summary: lambda: run_dir.write_data_report(DataReport.of(data)),
               run_dir.manifest: lambda: run_dir.write_manifest(manifest(cfg, data)),
               run_dir.plan: lambda: run_dir.write_plan(Plan.of(plan_lines, steps, cfg, eval_room))}
    for path, write in writers.items():
        if not path.is_file():
            write()


def run(cfg: RunConfig, *, overwrite: bool = False, say: Callable[[str], None] = print,
        trust_code: bool = False) -> RunSummary | None:
    """Run the whole job described by `cfg`: data -> train -> eval (base and tuned) -> report. `trust_code`: the
    user asked for their own code to run (grpo.rewards FILE.py:FUNCTION).

    Re-running an unfinished run folder (same config) continues it: training resumes from the newest complete
    checkpoint, generations already written are kept. Under torchrun only rank 0 writes and evaluates;
    the other ranks train and return None.

    >>> run(config.load(Path("configs/demo.yaml")))  # doctest: +SKIP
    """
    wall = time.perf_counter()
    if runtime.rank() != 0:
        say = _quiet  # one process speaks for all; the others' lines would repeat it
    _check_continue_from(cfg)
    root = rundir.check_target(cfg.output_dir, cfg.name)  # a bad --name or --output-dir: before any model loads
    if not overwrite and root.is_dir() and any(p.name != rundir.LOCK for p in root.iterdir()):
        rundir.check_resumable(root, cfg.to_yaml())  # a finished run is refused before the weights load, too
    # Data, template, memory and model problems surface before the run folder exists: nothing half-written.
    asked = cfg  # what the user asked for: the run folder keeps it, and a re-run is compared with it
    planned = _planned(cfg, say, _unfinished_plan(cfg, overwrite))
    cfg = planned.cfg
    if cfg.train.objective == "grpo":  # a reward of yours that fails, fails before the weights load
        planned = dataclasses.replace(planned, rewards=tuple(grpotrain.reward_functions(
            planned.tokenizer, planned.data.train, cfg, trust_code, say)))
    model, _ = _starting_model(cfg)  # the tokenizer set up by the template stage is the one that trains
    steps = train.steps(len(planned.train), cfg)
    if "wandb" in cfg.train.report_to:
        train.wandb_offline_reason()  # a bad W&B key exits 2 before the run folder exists
    if runtime.rank() != 0:
        checkpoint = None if overwrite else rundir.RunDir(cfg.output_dir / cfg.name).last_checkpoint()
        _train(model, planned, rundir.RunDir(cfg.output_dir / cfg.name), say, checkpoint, progress=None)
        return None
    run_dir, resumed = rundir.create(cfg.output_dir, cfg.name, overwrite=overwrite, config_yaml=asked.to_yaml(),
                                     say=say)
    with run_dir.held():  # the lock goes with the run, also when a library caller goes on to other work
        run_dir.clear_outcome()
        try:
            return _train_and_report(run_dir, resumed, planned, model, steps, say, wall)
        except Exception as err:  # the UI's Runs tab shows it as failed, with this text; Ctrl-C is not a failure
            run_dir.record_failure(err.render() if isinstance(err, TunesmithError) else f"{type(err).__name__}: {err}")
            raise


def _train_and_report(run_dir: rundir.RunDir, resumed: bool, planned: Planned, model: Any, steps: tuple[int, int],
                      say: Callable[[str], None], wall: float) -> RunSummary | None:
    """Inside the locked run folder: train (or resume), evaluate base and tuned, write the report.
    None when a stop was requested: the checkpoint it saved is where the same command resumes."""
    cfg, data, train_ex = planned.cfg, planned.data, planned.train
    if resumed:
        say(f"resuming the unfinished run in {run_dir.root}")
        _check_same_data(run_dir, data)
    _write_inputs(run_dir, cfg, data, planned.lines, steps, planned.prefs, planned.eval_room)
    seconds = 0.0
    if run_dir.weights is not None:
        say(f"training finished earlier: {run_dir.weights}")
    else:
        checkpoint = run_dir.last_checkpoint() if resumed else None
        if checkpoint is not None:
            say(f"resuming training from {checkpoint.name} (model, optimizer, scheduler, RNG and data order)")
            run_dir.keep_metrics_up_to(rundir.checkpoint_step(checkpoint), say)
        else:
            run_dir.remove(run_dir.metrics)
            run_dir.remove(run_dir.checkpoints)
        what = cfg.train.method + (f", {cfg.train.objective}" if cfg.train.objective != "sft" else "")
        say(f"training ({what}) on {len(train_ex)} rows ({sum(len(e.input_ids) for e in train_ex)} tokens/epoch) ...")
        result = _train(model, planned, run_dir, say, checkpoint, progress.training_bar())
        if result.stopped:
            kept = run_dir.last_checkpoint()
            say(f"stopped on request at step {rundir.checkpoint_step(kept) if kept else '?'} of {steps[1]}; "
                f"{kept.name if kept else 'no checkpoint'} kept: run the same command to resume")
            return None
        seconds = result.seconds
    del model  # evaluation loads every model from disk: what is evaluated is what was saved
    training = train.summarize(run_dir.read_metrics(say), *steps)
    evaluation = evaluate.evaluate(run_dir, cfg, data.eval, eval_losses=eval_losses(cfg, training), say=say)
    prefs = prefeval.evaluate_preferences(run_dir, cfg, say=say)  # None without held-out pairs (an SFT run)
    path = report.write(run_dir, say)
    run_dir.finish()
    return RunSummary(run_dir.root, path, evaluation, training, seconds, time.perf_counter() - wall, prefs)


def _train(model: Any, planned: Planned, run_dir: rundir.RunDir, say: Callable[[str], None],
           checkpoint: Path | None, progress: Any) -> train.TrainResult:
    """SFT (train.py) or a preference objective (preftrain.py) on what the plan rendered."""
    if planned.cfg.train.objective == "grpo":
        return grpotrain.train_rewards(model, planned.tokenizer, planned.data.train, planned.data.eval, planned.cfg,
                                       run_dir, say, functions=planned.rewards, resume_from=checkpoint,
                                       progress=progress)
    if planned.prefs is not None:
        return preftrain.train_preferences(model, planned.tokenizer, planned.prefs.train, planned.prefs.eval,
                                           planned.cfg, run_dir, say, resume_from=checkpoint, progress=progress)
    return train.train(model, planned.tokenizer, planned.train, planned.eval, planned.cfg, run_dir, say,
                       resume_from=checkpoint, progress=progress)


def _quiet(_: str) -> None:
    pass


def eval_losses(cfg: RunConfig, training: TrainingSummary) -> dict[str, float]:
    """The trainer's eval loss of the starting model (step 0) and of the kept weights (SFT's loss on the answers;
    a preference objective's loss is another quantity: its curve is in metrics.jsonl, not beside SFT's)."""
    if cfg.train.objective != "sft":
        return {}
    kept = training.best_eval_loss if cfg.train.load_best else training.last_eval_loss
    return {"base": training.start_eval_loss, "tuned": kept}


def evaluate_run(path: Path, *, data: Path | None = None, labels: list[str], options: dict[str, Any],
                 judge: dict[str, str] | None = None, fresh: bool = False,
                 say: Callable[[str], None] = print) -> tuple[EvalReport, Path | None]:
    """`tunesmith eval`: evaluate a run folder's models on its held-out rows (or on `data`); on the held-out
    rows the report is rewritten too. Returns (evaluation, report path or None)."""
    from tunesmith import config as config_mod

    run_dir = rundir.open_run(path, say)
    with run_dir.held():
        # Through `--set`-style overrides, so a bad --limit or --temperature gets the config's own clear error.
        plan = run_dir.read_plan()
        if plan is not None and plan.eval_max_new_tokens and "max_new_tokens" not in options:
            options = {**options, "max_new_tokens": plan.eval_max_new_tokens}  # as the run's own eval (thinking)
        cfg = config_mod.load(run_dir.config, [config_mod.override(f"eval.{k}", v) for k, v in options.items()])
        convs, out_dir = _eval_rows(run_dir, cfg, data, say)
        training = train.read_summary(run_dir, say) if data is None else None
        losses = eval_losses(cfg, training) if training else {}
        ev = evaluate.evaluate(run_dir, cfg, convs, labels=labels, out_dir=out_dir, eval_losses=losses,
                               judge=judge, fresh=fresh, say=say)
        if data is None:
            prefeval.evaluate_preferences(run_dir, cfg, labels, say=say)
        # On the held-out rows the report describes eval/summary.json, which was just replaced.
        return ev, report.write(run_dir, say) if data is None else None


def _eval_rows(run_dir: rundir.RunDir, cfg: RunConfig, data: Path | None, say: Callable[[str], None]
               ) -> tuple[list[Conversation], rundir.EvalDir]:
    """The rows `tunesmith eval` generates for, and the folder its files go to."""
    if data is None:
        return run_dir.read_conversations("eval"), run_dir.evaluation()
    from tunesmith.data.prepare import read_all

    files = read_all([data], cfg.data)  # the run's format, roles and columns settings apply
    skipped = [s for f in files for s in f.skipped]
    for line in skips.block(f"not evaluated: {skips.rows_text(len(skipped))}", skipped):
        say(line)
    # every usable row of the file is an eval row here
    return [c for f in files for c in f.conversations], run_dir.evaluation(data.stem)
