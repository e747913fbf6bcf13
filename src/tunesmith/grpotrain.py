"""Train on rewards with TRL's GRPOTrainer (train.objective grpo), on the SFT rows.

Each step takes train.batch_size prompts, rendered as eval renders them (template.prompt_text: the same template,
text forms and all), writes grpo.generations answers to each (sampled at grpo.temperature, up to
grpo.max_new_tokens), scores every answer with the rewards (rewards.py: against the row's own answer) and moves the
model toward the answers that scored above the mean of their prompt's (GRPO's group-relative advantage). With
grpo.beta 0 (TRL's default) no reference model is kept. TRL's own eval writes answers to the held-out prompts and
logs their reward: the kept checkpoint is the one of highest held-out reward. The loop, callbacks, checkpoints,
early stopping and weights are train.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tunesmith import rewards, template, thinking, train
from tunesmith.config import RunConfig
from tunesmith.records import Conversation
from tunesmith.rundir import RunDir
from tunesmith.runfiles import WrittenAnswer


def dataset(tokenizer: Any, convs: Sequence[Conversation], cfg: RunConfig) -> Any:
    """The prompts and their rows' answers (the rewards' `reference`; `answer`: without its thinking), as eval's
    prompt_text renders them. TRL hands every column but the prompt to each reward function."""
    from datasets import Dataset

    fitted, _ = template.fit(tokenizer, convs, cfg.template)
    rows = [template.prompt_text(tokenizer, c) for c in fitted]
    return Dataset.from_dict({"prompt": [p for p, _ in rows], "reference": [r for _, r in rows],
                              "answer": [thinking.answer_only(r) for _, r in rows]})


def reward_functions(tokenizer: Any, convs: Sequence[Conversation], cfg: RunConfig, trusted: bool,
                     say: Callable[[str], None] = print) -> list[Callable[..., list[Any]]]:
    """The rewards the run trains with; each of yours (only where `trusted`) is first called, as TRL will call it,
    on the first rows with their own answers as the completions: a reward that fails, fails before any weights
    load, and the scores it gives answers known to be right are said."""
    names = rewards.chosen(cfg.grpo, convs)
    funcs = rewards.functions(names, trusted)
    yours = [(n, f) for n, f in zip(names, funcs, strict=True) if n not in rewards.FUNCTIONS]
    if not yours:
        return funcs
    rows = dataset(tokenizer, convs[:2], cfg)
    ids = [tokenizer(r, add_special_tokens=False)["input_ids"] for r in rows["reference"]]
    for name, func in yours:
        got = func(prompts=rows["prompt"], completions=rows["reference"], completion_ids=ids,
                   reference=rows["reference"], answer=rows["answer"], trainer_state=None,
                   log_extra=lambda *_, **__: None, log_metric=lambda *_, **__: None)
        shown = ", ".join("None" if g is None else f"{g:g}" for g in got)
        say(f"grpo: {rewards.label(name)} gives the first {len(got)} rows' own answers {shown}")
    return funcs


def _trainer_class() -> type:
    from trl import GRPOTrainer

    class GRPO(GRPOTrainer):
        def _tokenize_prompts(self, prompts: list) -> Any:
            """tunesmith's rendered prompts tokenised as its generation tokenises them: no special tokens added
            (TRL's default would add a second BOS to a Llama 3 prompt that already opens with one)."""
            if prompts and isinstance(prompts[0], str):
                return self.processing_class(text=prompts, add_special_tokens=False)["input_ids"], None, {}
            return super()._tokenize_prompts(prompts)

    return GRPO


def recorded(funcs: Sequence[Callable[..., list[Any]]], names: Sequence[str], model: Any, run: RunDir
             ) -> list[Callable[..., list[Any]]]:
    """`funcs` as TRL calls them, each batch of answers kept in answers.jsonl with every reward's score once the
    last reward has scored it (rank 0 writes; held out where the model is in eval mode: TRL's eval)."""
    scores: dict[str, list[Any]] = {}

    def wrap(func: Callable[..., list[Any]], name: str, last: bool) -> Callable[..., list[Any]]:
        def call(*, prompts: Sequence[Any], completions: Sequence[Any], trainer_state: Any = None,
                 **kwargs: Any) -> list[Any]:
            got = func(prompts=prompts, completions=completions, trainer_state=trainer_state, **kwargs)
            scores[name] = list(got)
            if last and (trainer_state is None or trainer_state.is_world_process_zero):
                # in training the answers are scored before the step they train counts itself
                step = (trainer_state.global_step if trainer_state is not None else 0) + int(model.training)
                run.append_answers(WrittenAnswer(step, str(p), str(c), {n: scores[n][i] for n in names},
                                                 held_out=not model.training)
                                   for i, (p, c) in enumerate(zip(prompts, completions, strict=True)))
            return got

        call.__name__ = rewards.label(name)  # TRL logs rewards/<name>/mean
        return call

    return [wrap(f, n, i == len(funcs) - 1) for i, (f, n) in enumerate(zip(funcs, names, strict=True))]


def args(cfg: RunConfig, run: RunDir, resuming: bool) -> Any:
    """TRL's GRPOConfig: train.py's shared arguments, a step's rows counted in answers (batch_size prompts x
    grpo.generations), the kept checkpoint chosen by held-out reward."""
    from trl import GRPOConfig

    g, t = cfg.grpo, cfg.train
    shared = train.training_args(cfg, run, resuming)
    answers = t.batch_size * g.generations
    guard = shared["metric_for_best_model"] is not None
    shared.update(per_device_train_batch_size=answers, per_device_eval_batch_size=answers,
                  metric_for_best_model="eval_reward" if guard else None, greater_is_better=True if guard else None)
    return GRPOConfig(**shared, num_generations=g.generations, max_completion_length=g.max_new_tokens,
                      temperature=g.temperature, beta=g.beta, reward_weights=g.reward_weights, log_completions=False)


def train_rewards(model: Any, tokenizer: Any, train_convs: Sequence[Conversation],
                  eval_convs: Sequence[Conversation], cfg: RunConfig, run: RunDir,
                  say: Callable[[str], None] = print, *, functions: Sequence[Callable[..., Any]] = (),
                  resume_from: Path | None = None, progress: Any = None) -> train.TrainResult:
    """Train `model` with GRPO on the rows' prompts, scored by `functions` (reward_functions; none given: the
    built-in ones grpo.rewards chooses); as train.train otherwise."""
    from peft import PeftModel

    names = rewards.chosen(cfg.grpo, train_convs)
    funcs = list(functions) or rewards.functions(names, trusted=False)
    say(f"grpo: {cfg.grpo.generations} answers a prompt, scored by {', '.join(map(rewards.label, names))}")
    lora = cfg.train.method == "lora" and not isinstance(model, PeftModel)
    trainer = _trainer_class()(model=model, reward_funcs=recorded(funcs, names, model, run),
                               args=args(cfg, run, resume_from is not None),
                               train_dataset=dataset(tokenizer, train_convs, cfg),
                               eval_dataset=dataset(tokenizer, eval_convs, cfg), processing_class=tokenizer,
                               peft_config=train.peft_config(cfg) if lora else None,
                               callbacks=train.callbacks_for(cfg, run, say, progress))
    # TRL writes the answers outside autocast: frozen weights cast to bf16 would meet fp32 activations there
    return train.run_trainer(trainer, tokenizer, cfg, run, resume_from, half_frozen=False)
