"""Train on preferences with TRL's trainers, on pairs tunesmith has already rendered and masked (pairs.py).

    dpo    trl.DPOTrainer (sigmoid loss); the reference is the frozen base under the adapter (PEFT's disabled
           adapter: no second copy), or, continuing a LoRA run, a copy of that run's adapter; its log-probs are
           computed once before training (TRL's precompute_ref_log_probs), not again in every step of every epoch
    orpo   trl.experimental.orpo.ORPOTrainer: SFT loss on the chosen answer + beta x odds-ratio term; no reference
    simpo  trl.experimental.cpo.CPOTrainer with loss_type simpo (cpo_alpha 0): length-normalised, no reference
    kto    trl.KTOTrainer on answers rated good or bad; the reference as for dpo

Each trainer is TRL's own with its tokenising step replaced by a pass-through of tunesmith's ids, as SFT's
`skip_prepare_dataset` does; the loop, callbacks, checkpoints, early stopping and weights are train.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith import fastpath, train
from tunesmith.config import REFERENCE_OBJECTIVES, RunConfig
from tunesmith.pairs import RenderedPairs
from tunesmith.records import IGNORE
from tunesmith.rundir import RunDir
from tunesmith.runtime import scoped_env


def dataset(rendered: RenderedPairs) -> Any:
    """The columns TRL's preference collators take: prompt/chosen/rejected ids, or prompt/completion ids + label."""
    from datasets import Dataset

    if rendered.rated:
        return Dataset.from_dict({"prompt_ids": [list(r.prompt_ids) for r in rendered.rated],
                                  "completion_ids": [list(r.completion_ids) for r in rendered.rated],
                                  "label": [r.good for r in rendered.rated]})
    return Dataset.from_dict({"prompt_ids": [list(p.prompt_ids) for p in rendered.pairs],
                              "chosen_ids": [list(p.chosen_ids) for p in rendered.pairs],
                              "rejected_ids": [list(p.rejected_ids) for p in rendered.pairs]})


def _legacy_row(feature: dict[str, Any], model: Any = None) -> dict[str, Any]:
    """ORPO's and CPO's tokenize_row, on ids already made: the prompt, then prompt + answer with the prompt
    masked, for each side (the keys their DPODataCollatorWithPadding pads)."""
    prompt = list(feature["prompt_ids"])
    out = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        answer = list(feature[f"{side}_ids"])
        out |= {f"{side}_input_ids": prompt + answer, f"{side}_attention_mask": [1] * (len(prompt) + len(answer)),
                f"{side}_labels": [IGNORE] * len(prompt) + answer}
    return out


def _trainer(objective: str) -> tuple[type, type]:
    """(trainer class, config class) for an objective, each taking tunesmith's ids as they are."""
    if objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        class DPO(DPOTrainer):
            def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
                return dataset  # already prompt_ids / chosen_ids / rejected_ids (pairs.render_pairs)
        return DPO, DPOConfig
    if objective == "kto":
        from trl import KTOConfig, KTOTrainer

        class KTO(KTOTrainer):
            def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, name: str) -> Any:
                if not self.calculate_KL:
                    return dataset
                # TRL's own KL estimate: completions rotated by one within each batch (mismatched pairs).
                def rotate(batch: dict[str, list]) -> dict[str, list]:
                    batch["KL_completion_ids"] = [batch["completion_ids"][-1]] + batch["completion_ids"][:-1]
                    return batch
                return dataset.map(rotate, batched=True, batch_size=args.per_device_train_batch_size)
        return KTO, KTOConfig
    if objective == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return type("ORPO", (ORPOTrainer,), {"tokenize_row": lambda self, f, model=None: _legacy_row(f)}), ORPOConfig
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return type("SimPO", (CPOTrainer,), {"tokenize_row": lambda self, f, model=None: _legacy_row(f)}), CPOConfig


def _objective_args(cfg: RunConfig, max_length: int) -> dict[str, Any]:
    """The method's own settings (config.PreferenceConfig) in TRL's names."""
    objective, p = cfg.train.objective, cfg.preference
    beta = p.beta_for(objective)
    # The reference log-probs once up front (a no-grad pass over the train and eval rows): no reference forward in
    # the steps, and for full fine-tuning no second model kept in memory.
    if objective == "dpo":
        return {"beta": beta, "loss_type": ["sigmoid"], "max_length": None, "precompute_ref_log_probs": True,
                "train_sampling_strategy": "random"}
    if objective == "kto":
        return {"beta": beta, "desirable_weight": p.desirable_weight, "undesirable_weight": p.undesirable_weight,
                "max_length": None, "precompute_ref_log_probs": True,
                # KTO's KL term pairs each completion with the next one in its batch: the order must be kept
                "train_sampling_strategy": "sequential"}
    extra = {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": p.simpo_gamma} if objective == "simpo" else {}
    # Rows were rendered within max_length; TRL's own truncation then never cuts.
    return {"beta": beta, "max_length": max_length + 1, "train_sampling_strategy": "random", **extra}


def train_preferences(model: Any, tokenizer: Any, train_pairs: RenderedPairs, eval_pairs: RenderedPairs,
                      cfg: RunConfig, run: RunDir, say: Callable[[str], None] = print, *,
                      resume_from: Path | None = None, progress: Any = None) -> train.TrainResult:
    """Train `model` on rendered pairs (or rated answers) with cfg.train.objective; as train.train otherwise."""
    from peft import PeftModel

    objective = cfg.train.objective
    trainer_class, config_class = _trainer(objective)
    args = config_class(**train.training_args(cfg, run, resume_from is not None),
                        **_objective_args(cfg, max(train_pairs.max_length, eval_pairs.max_length)))
    lora = cfg.train.method == "lora" and not isinstance(model, PeftModel)
    fastpath.supervised_logits_only()
    if objective in REFERENCE_OBJECTIVES:
        say(f"reference log-probs: one no-grad pass over {train_pairs.rows} train and {eval_pairs.rows} eval rows ...")
    with scoped_env({"TQDM_DISABLE": "1"}):  # TRL's own bar for that pass; the line above says it instead
        trainer = trainer_class(model=model, args=args, train_dataset=dataset(train_pairs),
                                eval_dataset=dataset(eval_pairs), processing_class=tokenizer,
                                peft_config=train.peft_config(cfg) if lora else None,
                                callbacks=train.callbacks_for(cfg, run, say, progress))
    return train.run_trainer(trainer, tokenizer, cfg, run, resume_from)
