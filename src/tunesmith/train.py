"""Train with TRL's SFTTrainer on examples tunesmith has already tokenised and masked.

TRL runs the loop; tunesmith owns masking: the dataset handed over already has `input_ids` and `labels`,
and `skip_prepare_dataset` stops TRL from re-tokenising, truncating or silently filtering rows.
What this module adds to the Trainer: small-data guard rails on by default (evaluate every epoch, keep the
best checkpoint, stop early, end on the best weights), checkpoints that are only trusted once complete, and
one metrics file of record (metrics.jsonl) beside TensorBoard / W&B.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunesmith import fastpath, graphs, models, noise, rundir, varlen
from tunesmith.config import RunConfig
from tunesmith.errors import TunesmithError
from tunesmith.records import IGNORE, Example
from tunesmith.runfiles import LogRow
from tunesmith.rundir import RunDir
from tunesmith.runtime import (choose_group_by_length, choose_padding_free, choose_precision, rank, scoped_env,
                               world_size)


@dataclass(frozen=True)
class TrainResult:
    model: Any  # the trained model (PEFT-wrapped for LoRA), best weights loaded when train.load_best
    seconds: float
    train_tokens: int
    stopped: bool = False  # a stop was requested (run.stop_request): a checkpoint was saved, training did not end


@dataclass(frozen=True)
class TrainingSummary:
    """What the eval-loss curve says: where it was lowest, whether training stopped early, overfitting."""

    start_eval_loss: float  # the starting model (step 0)
    best_eval_loss: float
    best_step: int
    best_epoch: float
    last_eval_loss: float
    last_step: int
    stopped_early: bool  # fewer steps than planned: early stopping (patience) ended it
    overfitting: str | None  # a plain sentence with the numbers, when eval loss rose while train loss fell
    evals: tuple[tuple[int, float], ...] = ()  # (step, eval loss)
    # grpo: the held-out reward (answers written to the eval prompts), which picks the kept step instead
    start_eval_reward: float | None = None
    best_eval_reward: float | None = None


def _dataset(examples: list[Example]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [list(e.input_ids) for e in examples],
                              "labels": [list(e.labels) for e in examples]})


def _peak_memory_mb() -> float:
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _stop_requested(run: RunDir) -> bool:
    """Whether a stop was asked for (one stat a step); under torchrun every rank must agree on the same step, or
    DDP's next all-reduce waits forever, so the ranks take the maximum of what they saw."""
    asked = run.stop_request.is_file()
    if world_size() == 1:
        return asked
    import torch
    import torch.distributed as dist

    flag = torch.tensor([float(asked)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _shown(value: Any) -> str:
    """A metric as the console line shows it: 4 significant digits; grpo's rewards apart as name value, ...

    >>> _shown({"number": 0.0357142, "f.py:g": 0.5})
    '(number 0.03571, f.py:g 0.5)'
    """
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k} {_shown(v)}" for k, v in value.items()) + ")"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _callbacks(run: RunDir, say: Callable[[str], None]) -> list[Any]:
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        """One JSON line per log event in metrics.jsonl; adds tokens/s and peak memory to every tracker.

        tokens/s counts real (non-pad) tokens over step time only, so evaluation pauses do not dilute it.
        """

        def __init__(self) -> None:
            self.step_time = 0.0
            self.tokens_at_last_log = 0
            self._t0 = 0.0
            self.stopped = False
            self.diverged: tuple[str, float, int] | None = None  # (what, its value, step): run_trainer raises

        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            self.step_time += time.perf_counter() - self._t0
            # The final weights always get an eval loss and a checkpoint; with eval_strategy epoch the Trainer
            # evaluates at the end anyway (forcing it too would evaluate twice).
            if (state.global_step >= state.max_steps and args.eval_strategy == "steps"
                    and state.global_step % args.eval_steps):
                control.should_evaluate = control.should_save = True
            if _stop_requested(run) and state.global_step < state.max_steps:
                self.stopped = control.should_save = control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            if logs is None or not ("loss" in logs or "eval_loss" in logs):
                return  # the end-of-training summary; its numbers are already in the rows above
            if "loss" in logs:
                tokens = int(logs.get("num_tokens", 0))
                if self.step_time > 0 and tokens > self.tokens_at_last_log:
                    logs["tokens_per_s"] = round((tokens - self.tokens_at_last_log) / self.step_time, 1)
                self.tokens_at_last_log, self.step_time = tokens, 0.0
                logs["peak_memory_mb"] = round(_peak_memory_mb())
            bad = [(name, logs[name]) for name in ("loss", "eval_loss") if not math.isfinite(logs.get(name, 0.0))]
            if bad and self.diverged is None:  # every rank logs the same reduced numbers: all stop here
                self.diverged = (*bad[0], state.global_step)
                control.should_training_stop = True
            if not state.is_world_process_zero:
                return
            row = replace(LogRow.of(state.global_step, round(state.epoch or 0.0, 4), logs),
                          logged_at=round(time.time(), 1))
            run.append_metrics(row)
            say("  " + "  ".join(f"{k} {_shown(v)}" for k, v in row.to_json().items() if k != "logged_at")
                + (f"  (of {state.max_steps} steps)" if row.loss is not None else ""))

        def on_save(self, args, state, control, **kw):  # noqa: ANN001
            if state.is_world_process_zero:
                rundir.mark_complete(run.checkpoint(state.global_step))

    return [MetricsFile()]


def _trackers(cfg: RunConfig, run: RunDir, say: Callable[[str], None]) -> list[Any]:
    """Tracker callbacks, placed after MetricsFile so they also get tokens/s and peak memory.

    W&B goes offline (files under the run folder) without a key or a reachable server; a bad key stops here.
    """
    callbacks = []
    if "tensorboard" in cfg.train.report_to and rank() == 0:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(str(run.tensorboard))))
    if "wandb" in cfg.train.report_to:
        offline = wandb_offline_reason()
        env = {"WANDB_PROJECT": os.environ.get("WANDB_PROJECT", "tunesmith"),
               "WANDB_NAME": os.environ.get("WANDB_NAME", cfg.name), "WANDB_DIR": str(run.root),
               "WANDB_LOG_MODEL": os.environ.get("WANDB_LOG_MODEL", "false")}  # never upload weights as a side effect
        if offline:
            # WANDB_SILENT: its per-save "URL not available" warnings; the line below says where the files are.
            env |= {"WANDB_MODE": "offline", "WANDB_SILENT": os.environ.get("WANDB_SILENT", "true")}
            say(f"W&B: {offline}; logging offline to {run.root / 'wandb'} "
                f"(upload later: wandb sync {run.root / 'wandb'}/offline-run-*)")
        callbacks.append(_wandb_callback(env))
    return callbacks


def _wandb_callback(env: dict[str, str]) -> Any:
    """transformers' WandbCallback with `env` set only while it runs, so no WANDB_* is left in a library caller's
    process (its own wandb.init later would log into this run's folder under this run's name).

    It reads the environment when built (WANDB_LOG_MODEL) and at on_train_begin (WANDB_PROJECT, then
    wandb.init: name, dir, mode, silent); every one of its events runs inside the same scope to be safe.
    """
    from transformers import TrainerCallback
    from transformers.integrations import WandbCallback

    with scoped_env(env):
        inner = WandbCallback()

    def scoped(event: str) -> Callable[..., Any]:
        def handler(self: Any, *args: Any, **kwargs: Any) -> Any:
            with scoped_env(env):
                return getattr(inner, event)(*args, **kwargs)
        return handler

    events = {name: scoped(name) for name in vars(TrainerCallback) if name.startswith("on_")}
    return type("ScopedWandbCallback", (TrainerCallback,), events)()


def wandb_offline_reason(timeout: float = 5.0) -> str | None:
    """Why W&B must log offline (no key, server unreachable), or None to log online; a bad key is an error.

    wandb.init retries a rejected key for ~100 s and then raises, after the run folder exists; so the key is
    checked first: its format locally (wandb's own check_api_key), then, where the server answers a TCP connect
    within `timeout` seconds, with the server (wandb's AuthApiKey.verify). An unreachable server cannot tell a
    good key from a bad one: the run logs offline rather than fail for want of a network. The key is never printed.
    """
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return "WANDB_MODE is offline"
    from urllib.parse import urlparse

    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    url = urlparse(base)
    key, where = os.environ.get("WANDB_API_KEY"), "WANDB_API_KEY"
    if not key:
        import netrc

        try:
            auth = netrc.netrc().authenticators(url.hostname or "api.wandb.ai")
        except (OSError, netrc.NetrcParseError):
            auth = None
        key, where = (auth[2] if auth else None), f"~/.netrc (machine {url.hostname})"
    if not key:
        return "no API key configured"
    from wandb.errors import AuthenticationError
    from wandb.sdk.lib.wbauth import AuthApiKey
    from wandb.sdk.lib.wbauth.validation import check_api_key

    fix = "copy the key again from https://wandb.ai/authorize (wandb login --relogin), or unset it to log offline"
    if problem := check_api_key(key):
        raise TunesmithError(f"the W&B API key is malformed: {problem}", where=where, fix=fix)
    import socket

    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except (OSError, ValueError):
        return f"cannot reach {base} to check the API key"
    try:
        AuthApiKey(host=base, api_key=key).verify()
    except AuthenticationError as err:
        raise TunesmithError(f"W&B did not accept the API key: {str(err).replace(key, '***')}", where=where,
                             fix=fix) from None
    return None


def peft_config(cfg: RunConfig) -> Any:
    from peft import LoraConfig

    lc = cfg.lora
    targets = None if lc.target_modules == "attention" else lc.target_modules  # None = PEFT's per-model default
    return LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=targets,
                      use_dora=lc.dora, use_rslora=lc.rslora, task_type="CAUSAL_LM")


def training_args(cfg: RunConfig, run: RunDir, resuming: bool) -> dict[str, Any]:
    """The TrainingArguments every objective shares (SFT here, the preference trainers in preftrain)."""
    import torch

    t = cfg.train
    precision = choose_precision(t.precision)
    if precision == "fp16" and not torch.cuda.is_available():
        raise TunesmithError("train.precision: fp16 needs a CUDA GPU", fix="use precision: auto, bf16 or fp32")
    guard = t.early_stopping_patience > 0 or t.load_best
    check_settings(cfg)
    return dict(
        output_dir=str(run.checkpoints), num_train_epochs=t.epochs, max_steps=t.max_steps,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, lr_scheduler_kwargs=dict(t.lr_scheduler_kwargs),
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=t.weight_decay, optim=t.optimizer, max_grad_norm=t.max_grad_norm,  # 0: no clipping
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, logging_steps=t.logging_steps,
        eval_strategy=t.eval_strategy, eval_steps=t.eval_steps,
        eval_on_start=not resuming,  # step-0 eval = the starting model; a resumed run already logged it
        # A checkpoint at every evaluation: needed to keep the best one, and what a killed run resumes from.
        save_strategy=t.eval_strategy, save_steps=t.eval_steps, save_total_limit=2,
        load_best_model_at_end=t.load_best, metric_for_best_model="eval_loss" if guard else None,
        greater_is_better=False if guard else None, restore_callback_states_from_checkpoint=True,
        seed=t.seed, data_seed=t.seed, report_to="none",  # trackers are added as callbacks, see _trackers
        gradient_checkpointing=t.gradient_checkpointing,  # TRL defaults it on; for small models it only costs time
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True,  # train.compile: run_trainer
        # a step's nan or inf loss is logged as it is (MetricsFile stops the run on it): transformers' filter put
        # the average of the earlier steps in its place, a diverged run logged "loss 0" and read as memorising its
        # rows; and it read each step's loss back from the GPU (two waits a step)
        logging_nan_inf_filter=False,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=not torch.cuda.is_available())


def _args(cfg: RunConfig, run: RunDir, resuming: bool) -> Any:
    from trl import SFTConfig

    return SFTConfig(
        **training_args(cfg, run, resuming),
        max_length=None, dataset_kwargs={"skip_prepare_dataset": True},
        train_sampling_strategy="group_by_length" if grouped_batches(cfg) else "random",
        # TRL's collator: one row, position ids, labels kept
        padding_free=padding_free(cfg))


def train(model: Any, tokenizer: Any, train_ex: list[Example], eval_ex: list[Example], cfg: RunConfig,
          run: RunDir, say: Callable[[str], None] = print, *, resume_from: Path | None = None,
          progress: Any = None) -> TrainResult:
    """Train `model` (LoRA or full); logs go to metrics.jsonl (and trackers), weights to run.adapter / run.full.

    `model` may already be a trainable PeftModel (`--continue-from`); then no new adapter is added.
    """
    from peft import PeftModel

    callbacks = callbacks_for(cfg, run, say, progress)
    lora = cfg.train.method == "lora" and not isinstance(model, PeftModel)
    fastpath.supervised_logits_only()
    trainer = _trainer_class()(model=model, args=_args(cfg, run, resume_from is not None),
                         train_dataset=_dataset(train_ex),
                         eval_dataset=_dataset(sorted(eval_ex, key=lambda e: len(e.input_ids))),  # less padding
                         processing_class=tokenizer, peft_config=peft_config(cfg) if lora else None,
                         callbacks=callbacks)
    return run_trainer(trainer, tokenizer, cfg, run, resume_from)


def check_settings(cfg: RunConfig) -> None:
    """The train settings that only fail once training starts, checked before it does (plan.describe, before any
    model loads, and training_args, for every trainer): the attention, the scheduler, the optimizer."""
    check_attention(cfg)
    check_graphs(cfg)
    check_scheduler(cfg)
    check_optimizer(cfg)


# what each scheduler that cannot run on its defaults needs, as the flag that gives it
SCHEDULER_NEEDS = {"cosine_with_min_lr": "train.lr_scheduler_kwargs.min_lr_rate=0.1",
                   "cosine_warmup_with_min_lr": "train.lr_scheduler_kwargs.min_lr_rate=0.1",
                   "warmup_stable_decay": "train.lr_scheduler_kwargs.num_decay_steps=20"}


def check_scheduler(cfg: RunConfig) -> None:
    """train.lr_scheduler with its kwargs, built once by transformers on a stand-in optimizer (its own check of
    what the scheduler needs), so that a missing or unknown setting is an error naming it before a model loads:
    three of the names transformers offers raised at the first step on their defaults."""
    import torch
    from transformers import get_scheduler

    t = cfg.train
    stand_in = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=t.learning_rate)
    try:
        get_scheduler(t.lr_scheduler, stand_in, num_warmup_steps=1, num_training_steps=10,
                      scheduler_specific_kwargs=dict(t.lr_scheduler_kwargs))
    except (TypeError, ValueError) as err:
        example = SCHEDULER_NEEDS.get(t.lr_scheduler)
        raise TunesmithError(
            f"the {t.lr_scheduler} scheduler cannot run with lr_scheduler_kwargs {dict(t.lr_scheduler_kwargs)}: {err}",
            where="train.lr_scheduler_kwargs",
            fix=(f"--set {example}, " if example else "set what it takes in train.lr_scheduler_kwargs, ")
            + "or another train.lr_scheduler (cosine, linear, constant)") from None


def check_optimizer(cfg: RunConfig) -> None:
    """train.optimizer resolved by transformers as the Trainer will (its class and settings, on a stand-in module),
    so that one needing a package this machine lacks (bitsandbytes, torchao, galore_torch...) is an error naming
    it before a model loads, not an ImportError at the first step."""
    import torch
    from transformers import Trainer, TrainingArguments

    t = cfg.train
    args = TrainingArguments(optim=t.optimizer, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
                             report_to="none", use_cpu=not torch.cuda.is_available())
    try:
        Trainer.get_optimizer_cls_and_kwargs(args, torch.nn.Linear(1, 1))
    except (ImportError, ValueError) as err:
        raise TunesmithError(f"the {t.optimizer} optimizer cannot run here: {err}", where="train.optimizer",
                             fix="install what it names, or use train.optimizer: adamw_torch (the default; "
                                 "--set train.optimizer=adamw_torch)") from None


def check_attention(cfg: RunConfig) -> None:
    """train.attention: varlen where it can train (SFT's padding-free rows on a capable GPU), or an error saying why
    not and what to set instead; the plan asks it too, before any model loads."""
    if cfg.train.attention != "varlen":
        return
    why = varlen.unavailable(choose_precision(cfg.train.precision))
    if why is None and not padding_free(cfg):
        why = "it attends padding-free rows, and train.padding_free is off"
    if why is None:
        why = varlen.model_unsupported(models.model_config(cfg.model))
    _cannot_train("varlen", why, "train.attention", "use train.attention: auto (--set train.attention=auto)")


def check_graphs(cfg: RunConfig) -> None:
    """train.compile: graphs where it can train (padding-free rows on a CUDA GPU), or an error saying why not."""
    if cfg.train.compile != "graphs":
        return
    why = graphs.unavailable()
    if why is None and not padding_free(cfg):
        why = "it pads each step's packed row to one of a few lengths, and train.padding_free is off"
    _cannot_train("graphs", why, "train.compile", "use train.compile: layers or off (--set train.compile=off)")


def _cannot_train(name: str, why: str | None, where: str, fix: str) -> None:
    """The error of a train setting that cannot run here (`why`; nothing when None): where a padding-free-only one
    meets padding_free off, its fix says how to turn that on too."""
    if why is not None:
        raise TunesmithError(f"{name} cannot train here: {why}", where=where,
                             fix=fix + (" or train.padding_free: on" if "padding_free" in why else ""))


def callbacks_for(cfg: RunConfig, run: RunDir, say: Callable[[str], None], progress: Any = None) -> list[Any]:
    """metrics.jsonl first (run_trainer reads its stop flag), then trackers, the progress bar, early stopping."""
    from transformers import EarlyStoppingCallback

    callbacks = _callbacks(run, say) + _trackers(cfg, run, say) + ([progress] if progress is not None else [])
    if cfg.train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    return callbacks


def run_trainer(trainer: Any, tokenizer: Any, cfg: RunConfig, run: RunDir, resume_from: Path | None, *,
                half_frozen: bool = True) -> TrainResult:
    """Run a built TRL trainer (any objective) and save its weights; a requested stop leaves its checkpoint.
    `half_frozen` False keeps the frozen weights as loaded (grpo generates outside autocast, in their dtype)."""
    from transformers import PrinterCallback
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Writing model shards" bar per checkpoint drowns the metric lines
    trainer.remove_callback(PrinterCallback)  # our callback prints one readable line per log instead
    if half_frozen and (half := fastpath.frozen_dtype(cfg)):
        fastpath.frozen_to_half(trainer.model, half)
    if not next(trainer.model.parameters()).is_cuda:
        fastpath.cheap_dropout(trainer.model)
    graphed = cfg.train.compile == "graphs"  # CUDA graphs of a few packed lengths (graphs.py)
    if cfg.train.compile != "off":
        fastpath.compile_layers(trainer.model, mode="reduce-overhead" if graphed else None)
    start = time.perf_counter()
    alpha = cfg.train.neftune_alpha
    with (fastpath.cpu_step(trainer.model, cfg), fastpath.gpu_step(trainer.model, cfg),
          graphs.used_by(trainer.model) if graphed else contextlib.nullcontext(),
          noise.neftune(trainer.model, alpha) if alpha else contextlib.nullcontext()):
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - start
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    metrics_file = next(c for c in trainer.callback_handler.callbacks if hasattr(c, "stopped"))
    if metrics_file.diverged is not None:
        _leave_process_group()
        raise diverged(metrics_file.diverged, cfg)
    if metrics_file.stopped:  # the checkpoint just saved is what a resume starts from; no weights yet
        _leave_process_group()
        return TrainResult(trainer.model, seconds, tokens, stopped=True)
    save_weights(trainer, tokenizer, run, full=cfg.train.method == "full")
    _leave_process_group()
    return TrainResult(trainer.model, seconds, tokens)


def diverged(seen: tuple[str, float, int], cfg: RunConfig) -> TunesmithError:
    """The error of a run whose loss stopped being a number: the weights are not saved as the run's."""
    name, value, step = seen
    t = cfg.train
    fp16 = choose_precision(t.precision) == "fp16"
    return TunesmithError(
        f"training diverged: the {'eval loss' if name == 'eval_loss' else 'train loss'} was {value} at step {step}, "
        "so training stopped there and no weights were saved as the run's (its checkpoints stay)",
        fix=f"lower train.learning_rate (now {t.learning_rate:g}; LoRA usually trains at 1e-4 to "
        "2e-4)" + (", or use train.precision: bf16 or fp32 (fp16 overflows where bf16 does not)" if fp16 else "")
        + ", and run again with --overwrite")


def _leave_process_group() -> None:
    """After the last collective (saving): wait for every rank, then tear the group down.

    Without it a rank can exit while gloo's threads still run and die with SIGABRT ("terminate called without
    an active exception"), which torchrun reports as a failed run. Rank 0 then evaluates on its own.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def row_order(size: int, seed: int, epoch: int, lengths: list[int] | None = None, batch_size: int = 0) -> list[int]:
    """The order an epoch's `size` rows are drawn in, a function of (data seed, epoch) alone: a random permutation
    (what accelerate's seedable sampler draws for the same seed), or, given the rows' lengths, transformers'
    length-grouped order (megabatches of 50 batches of `batch_size` rows sorted by length, the longest batch first)
    from a generator seeded the same way."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    generator = torch.Generator().manual_seed(seed + epoch)
    if lengths is not None:
        return list(get_length_grouped_indices(lengths, batch_size, generator=generator))
    return torch.randperm(size, generator=generator).tolist()


def grouped_batches(cfg: RunConfig) -> bool:
    """Whether the run's batches are length-grouped (train.group_by_length resolved), not drawn at random."""
    t = cfg.train
    return choose_group_by_length(t.group_by_length, t.padding_free)


def padding_free(cfg: RunConfig) -> bool:
    """Whether a step's rows are joined into one sequence (train.padding_free resolved): what TRL's collator is
    told, and what the plan's step line and memory estimate read."""
    return choose_padding_free(cfg.train.padding_free)


def drawn_batches(lengths: list[int], cfg: RunConfig) -> Iterator[list[int]]:
    """The row lengths of each batch the run will draw, in order, epoch after epoch (all processes' batches, each
    micro-batch of an accumulated step): what the training sampler below yields, for the plan's memory estimate."""
    t = cfg.train
    grouped = grouped_batches(cfg)
    left = steps(len(lengths), cfg)[1] * t.grad_accum * world_size()
    epoch = 0
    while left > 0:
        order = row_order(len(lengths), t.seed, epoch, lengths if grouped else None, t.batch_size * t.grad_accum)
        for start in range(0, len(order), t.batch_size):
            if left == 0:
                return
            yield [lengths[i] for i in order[start:start + t.batch_size]]
            left -= 1
        epoch += 1


def _trainer_class() -> type:
    """SFTTrainer whose batches depend only on (data seed, epoch), drawn by `row_order`.

    transformers' LengthGroupedSampler draws each epoch's order from the global RNG at the start of the
    epoch; a run resumed mid-epoch restores the RNG of its checkpoint, not of that moment, so it saw other
    batches and its losses drifted (~1e-3). Seeding per epoch makes a resumed run take the same batches, and lets
    the plan know every batch before training (drawn_batches). Random batches are accelerate's seedable sampler's.
    """
    from torch.utils.data import RandomSampler, Sampler
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from trl import SFTTrainer

    class EpochSeededSampler(Sampler):
        def __init__(self, size: int, seed: int, lengths: list[int] | None = None, batch_size: int = 0) -> None:
            """Random rows, or given their lengths transformers' length-grouped order for `batch_size` rows."""
            self.size, self.batch_size, self.seed, self.lengths, self.epoch = size, batch_size, seed, lengths, 0

        def set_epoch(self, epoch: int) -> None:  # the Trainer calls it at every epoch start
            self.epoch = epoch

        def __len__(self) -> int:
            return self.size

        def __iter__(self):  # noqa: ANN204
            return iter(row_order(self.size, self.seed, self.epoch, self.lengths, self.batch_size))

    class Trainer(TokenMeanEval, SFTTrainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler):
                return EpochSeededSampler(len(sampler.lengths), self.args.data_seed, sampler.lengths,
                                          sampler.batch_size)
            if isinstance(sampler, RandomSampler):
                return EpochSeededSampler(len(sampler.data_source), self.args.data_seed)
            return sampler

    return Trainer


class TokenMeanEval:
    """A Trainer mixin: eval loss, token accuracy and entropy = means per supervised token of the whole eval set.

    transformers averages each eval batch's mean loss with the same weight (and TRL its accuracy and entropy), so
    the numbers depended on how the eval rows fell into batches: sorted by length (less padding), the demo's 32 short
    English rows filled 4 of 6 batches and the base model's eval loss read 3.087; in the mixed batches of a
    length-grouped sampler, 2.594. Weighted by each batch's supervised tokens, they no longer depend on the batching
    (and the loss is what perplexity is taken from)."""

    TOKEN_METRICS = ("mean_token_accuracy", "entropy")  # TRL's per-batch means, one value appended per eval batch

    def evaluation_loop(self, dataloader: Any, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> Any:
        import torch

        # (loss x supervised tokens, supervised tokens) summed on the device: no wait for it per eval batch
        self._token_loss = torch.zeros(2, dtype=torch.float64, device=self.args.device)  # type: ignore[attr-defined]
        self._batch_tokens: list[Any] = []  # each eval batch's supervised tokens, on the device
        out = super().evaluation_loop(dataloader, description, prediction_loss_only,  # type: ignore[misc]
                                      ignore_keys, metric_key_prefix)
        sums = self.accelerator.reduce(self._token_loss, reduction="sum")  # type: ignore[attr-defined]
        loss, supervised = sums.tolist()
        if supervised > 0 and f"{metric_key_prefix}_loss" in out.metrics:
            out.metrics[f"{metric_key_prefix}_loss"] = loss / supervised
        self._weigh_token_metrics()
        return out

    def _weigh_token_metrics(self) -> None:
        """TRL's eval accuracy and entropy, one value a batch (already gathered across processes), weighted by each
        batch's supervised tokens (summed across processes) in place of their plain mean; TRL logs them next."""
        import torch

        if not self._batch_tokens:
            return
        kept = getattr(self, "_metrics", {}).get("eval", {})
        reduce = self.accelerator.reduce  # type: ignore[attr-defined]
        tokens = reduce(torch.stack(self._batch_tokens), reduction="sum").tolist()
        for name in self.TOKEN_METRICS:
            values = kept.get(name, [])
            if len(values) == len(tokens) and sum(tokens) > 0:
                kept[name] = [sum(v * n for v, n in zip(values, tokens)) / sum(tokens)]

    def prediction_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        import torch

        loss, logits, labels = super().prediction_step(model, inputs, *args, **kwargs)  # type: ignore[misc]
        if loss is not None and "labels" in inputs and hasattr(self, "_token_loss"):
            # the positions a causal LM's loss averages: labels shifted by one
            supervised = (inputs["labels"][..., 1:] != IGNORE).sum().to(self._token_loss)
            self._token_loss += torch.stack([loss.to(self._token_loss) * supervised, supervised])
            self._batch_tokens.append(supervised)
        return loss, logits, labels


def save_weights(trainer: Any, tokenizer: Any, run: RunDir, *, full: bool) -> None:
    """The finished weights: an adapter (LoRA) or a whole model (full), written to a partial folder then renamed,
    so their presence means training finished.

    Every rank calls `trainer.save_model`: under FSDP / ZeRO-3 the weights are sharded and must be gathered
    by all processes; the Trainer then writes on rank 0 only.
    """
    dest = run.full if full else run.adapter
    partial = dest.with_name(f".{dest.name}.partial")
    if rank() == 0:
        run.remove(partial)
    trainer.save_model(str(partial))
    if rank() == 0:
        tokenizer.save_pretrained(partial)
        (partial / "training_args.bin").unlink(missing_ok=True)  # a pickle; the run folder keeps config.yaml
        run.remove(dest)
        partial.rename(dest)


def summarize(rows: list[LogRow], steps_per_epoch: int, planned_steps: int) -> TrainingSummary:
    """Best evaluation, early stop and overfitting, read from metrics.jsonl rows.

    >>> rows = [LogRow(0, 0, eval_loss=2.0), LogRow(5, 1, loss=1.5), LogRow(5, 1, eval_loss=1.2),
    ...         LogRow(10, 2, loss=0.5), LogRow(10, 2, eval_loss=1.6)]
    >>> s = summarize(rows, steps_per_epoch=5, planned_steps=10)
    >>> s.best_step, s.best_epoch, s.overfitting is not None
    (5, 1.0, True)
    """
    evals = [r for r in rows if r.eval_loss is not None]
    losses = [r for r in rows if r.loss is not None]
    if not evals:
        raise TunesmithError("metrics.jsonl has no eval loss", fix="re-run training with --overwrite")
    rewarded = all(r.eval_reward is not None for r in evals)  # grpo: the highest held-out reward is kept
    best = min(evals[1:] or evals, key=lambda r: -r.eval_reward if rewarded else r.eval_loss)  # type: ignore
    last = evals[-1]
    note = None
    # grpo's loss is no measure of the answers: no overfitting is read from it
    worst = None if rewarded else max((r for r in evals if r.step > best.step), key=lambda r: r.eval_loss,
                                      default=None)
    at_best = [r.loss for r in losses if r.step <= best.step]
    later = [r for r in losses if r.step > best.step]
    if worst is not None and at_best and later:
        low = min(later, key=lambda r: r.loss)
        if low.loss < at_best[-1]:
            note = (f"eval loss rose from {best.eval_loss:.4f} (step {best.step}) to {worst.eval_loss:.4f} "
                    f"(step {worst.step}) while train loss fell from {at_best[-1]:.4f} to {low.loss:.4f} "
                    f"(step {low.step}): the model started memorising its training rows")
    return TrainingSummary(
        start_eval_loss=evals[0].eval_loss, best_eval_loss=best.eval_loss, best_step=best.step,
        best_epoch=round(best.step / max(steps_per_epoch, 1), 2), last_eval_loss=last.eval_loss,
        last_step=last.step, stopped_early=last.step < planned_steps, overfitting=note,
        evals=tuple((r.step, r.eval_loss) for r in evals), start_eval_reward=evals[0].eval_reward,
        best_eval_reward=best.eval_reward)


def read_summary(run: RunDir, say: Callable[[str], None] | None = None) -> TrainingSummary | None:
    """The TrainingSummary of a run folder (metrics.jsonl with plan.json's step counts); None before training."""
    plan, rows = run.read_plan(), run.read_metrics(say)
    if plan is None or not rows:
        return None
    return summarize(rows, plan.steps_per_epoch, plan.total_steps)


def steps(n_rows: int, cfg: RunConfig) -> tuple[int, int]:
    """(optimizer steps per epoch, planned total) for `n_rows` training rows on `world_size()` processes."""
    t = cfg.train
    per_epoch = math.ceil(n_rows / (t.batch_size * world_size()) / t.grad_accum)
    return per_epoch, t.max_steps if t.max_steps > 0 else math.ceil(per_epoch * t.epochs)
