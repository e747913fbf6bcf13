"""Train a LoRA adapter with TRL's SFTTrainer on examples tunesmith has already tokenised and masked.

TRL runs the loop; tunesmith owns masking: the dataset handed over already has `input_ids` and `labels`,
and `skip_prepare_dataset` stops TRL from re-tokenising, truncating or silently filtering rows.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.models import use_bf16
from tunesmith.records import Example
from tunesmith.rundir import RunDir


TCMALLOC = ("/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4", "/usr/lib/aarch64-linux-gnu/libtcmalloc.so.4",
            "/usr/lib64/libtcmalloc.so.4")


def tcmalloc_library() -> str | None:
    """tcmalloc's path where the system has it; the training verbs preload it (see cli._preload_tcmalloc)."""
    return next((p for p in TCMALLOC if os.path.exists(p)), None)


@dataclass(frozen=True)
class TrainResult:
    model: Any  # the PEFT-wrapped model, adapter active
    eval_loss_before: float | None
    eval_loss_after: float | None
    seconds: float
    train_tokens: int


def _dataset(examples: list[Example]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [list(e.input_ids) for e in examples],
                              "labels": [list(e.labels) for e in examples]})


def _metrics_callback(path: Any, say: Callable[[str], None]) -> Any:
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        """Writes one JSON line per log event; tokens/s counts real (non-pad) tokens over step time only."""

        def __init__(self) -> None:
            self.step_time = 0.0
            self.tokens_at_last_log = 0
            self._t0 = 0.0
            self.file = path.open("a", encoding="utf-8")

        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            self.step_time += time.perf_counter() - self._t0

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            logs = logs or {}
            row: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
            if "eval_loss" in logs:
                row["eval_loss"] = logs["eval_loss"]
            elif "loss" in logs:
                row["loss"] = logs["loss"]
                row["learning_rate"] = logs.get("learning_rate")
                tokens = int(logs.get("num_tokens", 0))
                if self.step_time > 0 and tokens:
                    row["tokens_per_s"] = round((tokens - self.tokens_at_last_log) / self.step_time, 1)
                self.tokens_at_last_log, self.step_time = tokens, 0.0
            else:
                return  # the end-of-training summary; its numbers are already in the rows above
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
            say("  " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                 for k, v in row.items() if v is not None)
                + (f"  (of {state.max_steps} steps)" if "loss" in row else ""))

        def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
            self.file.flush()

    return MetricsFile()


def _precision(choice: str) -> dict[str, bool]:
    import torch

    cuda = torch.cuda.is_available()
    return {"bf16": use_bf16(choice), "fp16": False, "use_cpu": not cuda}


def train(model: Any, tokenizer: Any, train_ex: list[Example], eval_ex: list[Example],
          cfg: RunConfig, run: RunDir, say: Callable[[str], None] = print) -> TrainResult:
    """LoRA-train `model` in place; logs go to metrics.jsonl (and TensorBoard), the adapter to run.adapter."""
    from peft import LoraConfig
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    t, lc = cfg.train, cfg.lora
    args = SFTConfig(
        output_dir=str(run.checkpoints), num_train_epochs=t.epochs, max_steps=t.max_steps,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, logging_steps=t.logging_steps,
        eval_strategy="steps", eval_steps=t.eval_steps, eval_on_start=True,  # step-0 eval = the base model
        save_strategy="no", seed=t.seed, data_seed=t.seed, report_to=[r for r in t.report_to if r != "tensorboard"],
        gradient_checkpointing=False,  # TRL defaults it on; for small models on CPU it only costs time
        max_length=None, dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        dataloader_num_workers=0, disable_tqdm=True, **_precision(t.precision))
    callbacks = [_metrics_callback(run.metrics, say)]
    if "tensorboard" in t.report_to:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(str(run.tensorboard))))
    peft_config = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                             target_modules=lc.target_modules, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=_dataset(train_ex),
                         eval_dataset=_dataset(sorted(eval_ex, key=lambda e: len(e.input_ids))),  # less padding processing_class=tokenizer,
                         peft_config=peft_config, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # our callback prints one readable line per log instead
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    evals = [(h["step"], h["eval_loss"]) for h in trainer.state.log_history if "eval_loss" in h]
    if not evals or evals[-1][0] != trainer.state.global_step:  # the tuned model must be evaluated at its end
        trainer.evaluate()
        evals = [(h["step"], h["eval_loss"]) for h in trainer.state.log_history if "eval_loss" in h]
    trainer.model.save_pretrained(run.adapter, safe_serialization=True)
    tokenizer.save_pretrained(run.adapter)
    for cb in callbacks:
        if hasattr(cb, "file"):
            cb.file.close()
    return TrainResult(trainer.model, evals[0][1], evals[-1][1], seconds,
                       int(trainer.state.num_input_tokens_seen or 0))
