"""Typed, strict run configuration: validated once from YAML, kept typed everywhere after.

An unknown key fails with a did-you-mean; a bad value names the key as typed and what was expected.
Relative data paths are resolved against the config file's folder, so a config runs from any cwd.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunesmith import foreign
from tunesmith.errors import TunesmithError, did_you_mean
from tunesmith.yamltext import read_text, yaml_load
from tunesmith.format_names import ALL_FORMATS
from tunesmith.diskio import safe_name

# The names transformers accepts (SchedulerType and OptimizerNames in transformers 5.x), kept here so that
# loading a config needs no torch import; tests/test_config.py checks them against the installed transformers.
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
              "warmup_stable_decay", "greedy")
OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor",
    "adamw_anyprecision", "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit",
    "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit", "paged_adamw_8bit",
    "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb",
    "rmsprop_bnb_8bit", "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor",
    "galore_adamw_layerwise", "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo",
    "grokadamw", "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw",
    "apollo_adamw_layerwise", "stable_adamw")


class _Strict(BaseModel):
    # allow_inf_nan=False: `epochs: .inf` or `learning_rate: .nan` would pass every gt/ge bound check otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(_Strict):
    train: list[Path] = Field(min_length=1, description="data files, folders or globs to train on")
    eval: list[Path] = Field(default_factory=list, description="explicit eval files; empty = split from train")
    format: str = Field("auto", description="auto = detected over all rows; or messages, sharegpt, function_calls, "
                        "alpaca, "
                        "prompt_completion, numbered_turns, turns, pairs, text, segments, "
                        "chatgpt_export, claude_export, flat_turns, chat_log")
    roles: dict[str, str] = Field(default_factory=dict, description="role names in the file -> system, user "
                                  "or assistant (or tool: a tool's output; tool_call: a turn holding a call's JSON), "
                                  "e.g. {therapist: assistant, client: user}")
    columns: dict[str, str] = Field(default_factory=dict, description="canonical field -> your field (role and "
                                    "content name a turn list's keys), e.g. "
                                    "{prompt: question_text, completion: answer_text}")
    encoding: str = Field("auto", description="auto = BOM, UTF-8, then cp949; or any Python codec name")
    strict: bool = Field(False, description="fail on any unusable row instead of skipping and counting it")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="share held out for eval (users split 80/20)")
    min_eval: int = Field(8, ge=1, description="never hold out fewer rows than this")
    max_rows: int | None = Field(None, ge=1, description="train on at most this many rows (a seeded sample of "
                                 "the train split; the rest are counted as left out); none = all")
    system: str | None = Field(None, description="add or replace the system turn of every conversation")
    group_by: str | None = Field(None, description="a field of each row (a category or label column) that the "
                                 "report breaks its metrics down by, with intervals")
    seed: int = Field(42, description="seed of the train/eval split and of --max-rows sampling")

    @field_validator("format")
    @classmethod
    def _known_format(cls, name: str) -> str:

        return name if name == "auto" else _one_of(name, ALL_FORMATS, "format")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, name: str) -> str:
        import codecs

        try:
            return name if name == "auto" else codecs.lookup(name).name
        except LookupError:
            raise ValueError(f'unknown encoding "{name}": use auto, or a Python codec name such as utf-8, '
                             "cp949, euc-kr, latin-1") from None


class TemplateConfig(_Strict):
    max_length: int | Literal["auto"] = Field(
        "auto", description="tokens per training row; auto = the longest row rounded up to 64, up to the "
        "model's context (so no row is dropped for length)")
    overflow: Literal["drop", "truncate"] = Field(
        "drop", description="a longer row is dropped (and counted), or loses its oldest turns / input text; "
        "the supervised answer is never cut")
    supervise: Literal["assistant", "last", "all"] = Field(
        "assistant", description="train on every assistant turn, the last one only, or everything "
        "(train_on_inputs)")
    chat_template: str = Field("auto", description="auto = the model's own (plain fallback when it has none); "
                               "plain, chatml, or a Jinja template string")

    @field_validator("max_length", mode="before")
    @classmethod
    def _length(cls, value: Any) -> Any:
        # One message for both shapes (pydantic would report the int and the literal branch separately).
        if isinstance(value, str) and value.strip().isdigit():  # from a flag: --max-length 512
            value = int(value)
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 16):
            return value
        raise ValueError("expected auto or a whole number of tokens >= 16")


class LoraConfig(_Strict):
    r: int = Field(16, ge=1, description="adapter rank (the seeds use 4-8; 16 is a common default)")
    alpha: int = Field(32, ge=1, description="scaling numerator: the update is scaled by alpha/r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input while training")
    target_modules: str | list[str] = Field(
        "all-linear", description="all-linear = every linear layer but the output head (PEFT finds them per "
        "architecture); attention = PEFT's per-architecture default (q_proj/v_proj for Llama); or a list")
    dora: bool = Field(False, description="weight-decomposed LoRA (DoRA): often better at low rank, slower")
    rslora: bool = Field(False, description="rank-stabilised scaling alpha/sqrt(r), for high ranks")


class TrainConfig(_Strict):
    method: Literal["lora", "full"] = Field("lora", description="lora = train an adapter; full = every weight")
    objective: Literal["sft", "dpo", "orpo", "simpo", "kto", "grpo"] = Field(
        "sft", description="sft = learn the answers; dpo / orpo / simpo = prefer the chosen answer of each pair "
        "over the rejected one (a preference file); kto = answers marked good or bad (docs/preference.md); grpo = "
        "write several answers to each prompt, score them against the row's answer (grpo.rewards) and move toward "
        "the better ones (docs/grpo.md)")
    load_in: Literal["none", "8bit", "4bit"] = Field(
        "none", description="load the base model quantised by bitsandbytes (4bit + lora = QLoRA); CUDA only")
    epochs: float = Field(3, gt=0, description="passes over the training rows (fractions allowed)")
    max_steps: int = Field(-1, description="stop after this many optimizer steps; -1 = use epochs")
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate (LoRA usually 1e-4 to 5e-4; full "
                                 "fine-tuning ~10x lower)")
    lr_scheduler: str = Field("cosine", description="any transformers scheduler name: cosine, linear, constant...")
    lr_scheduler_kwargs: dict[str, float | int | str] = Field(
        default_factory=dict, description="the scheduler's own settings, as transformers' lr_scheduler_kwargs: "
        "cosine_with_min_lr and cosine_warmup_with_min_lr need min_lr_rate (or min_lr), warmup_stable_decay "
        "num_decay_steps; --set train.lr_scheduler_kwargs.min_lr_rate=0.1")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of the steps spent ramping the learning rate up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    # Not transformers' default (adamw_torch_fused since torch 2.8): on the 2-vCPU Zen 4 the fused kernel took
    # 7 ms an optimizer step instead of 20, yet whole demo steps ran 6% slower (4 runs each: 298 vs 318 tokens/s,
    # docs/benchmarks.md); on a GPU it is a candidate (bench: tunesmith-fused) until a lent GPU measures it
    optimizer: str = Field("adamw_torch", description="any transformers optimizer name (adamw_torch, "
                           "adamw_torch_fused, adafactor, sgd; paged_adamw_8bit needs bitsandbytes on CUDA)")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping; 0 = off")
    neftune_alpha: float | None = Field(
        None, gt=0, description="NEFTune: uniform noise on the input embeddings while training, alpha / sqrt(row "
        "length x width), each row's own length also where rows are packed (TRL's and LLaMA-Factory's "
        "neftune_noise_alpha; the paper used 5); null = off; not with grpo, whose steps write answers")
    batch_size: int = Field(8, ge=1, description="rows per step per process")
    grad_accum: int = Field(1, ge=1, description="steps accumulated per optimizer step")
    gradient_checkpointing: bool = Field(False, description="recompute activations: less memory, ~30% slower")
    compile: Literal["off", "layers", "graphs"] = Field(
        "off", description="layers = torch.compile each decoder layer (inductor, dynamic lengths: one compile for "
        "all layers and lengths on a GPU's path); graphs = the same in reduce-overhead mode, replayed as CUDA graphs, "
        "each step's packed row padded to one of a few lengths (CUDA, padding-free rows; a candidate, not yet "
        "timed on a GPU); off by default: its compile time did not pay for itself on a CPU run of the demo's size "
        "(docs/benchmarks.md); true = layers")
    memory_gib: float | None = Field(
        None, gt=0, description="memory budget the plan fits batch_size, grad_accum and gradient_checkpointing "
        "into (those not set by you); null = what is free (cgroup limit or MemAvailable; free GPU memory on CUDA)")
    logging_steps: int = Field(5, ge=1, description="a train-loss line (metrics.jsonl, trackers) every N steps")
    eval_strategy: Literal["epoch", "steps"] = Field("epoch", description="when to compute eval loss (and save "
                                                     "a checkpoint): every epoch, or every eval_steps steps")
    eval_steps: int = Field(20, ge=1, description="used when eval_strategy is steps")
    early_stopping_patience: int = Field(
        2, ge=0, description="stop after this many evaluations without a lower eval loss; 0 = off")
    load_best: bool = Field(True, description="end with the checkpoint of lowest eval loss, not the last one")
    seed: int = Field(42, description="seed of weights init, dropout and batch order")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto = bf16 where the GPU or CPU runs it natively, else fp16 on CUDA, else fp32")
    group_by_length: bool | Literal["auto"] = Field(
        "auto", description="batch rows of similar length: less padding, but each step's loss then weighs its "
        "tokens by the batch they fell in (demo, 8 steps, 3 seeds: held-out loss 3.5 standard deviations above "
        "random batches); auto = on only where rows are padded (padding_free off), random batches otherwise")
    padding_free: Literal["auto", "on", "off"] = Field(
        "auto", description="on = a step's rows joined into one sequence with position ids (no pad tokens, "
        "attention kept within each row); auto = on (a CUDA GPU: 1.2-1.3x; a CPU in bf16: 1.1x on the demo rows, "
        "in fp32 as fast with a 1.8 GiB lower peak: the rows are padded again for attention alone; "
        "docs/benchmarks.md); off = rows padded to each step's longest")
    attention: Literal["auto", "sdpa", "varlen"] = Field(
        "auto", description="auto = on a CPU in bf16 tunesmith's own attention for short rows (whole score matrix in "
        "bf16 matmuls: 11.5 -> 10.2 s a demo step pair), elsewhere the model's SDPA; sdpa = the model's SDPA "
        "everywhere; varlen = padding-free rows through PyTorch's FlashAttention varlen kernel on a CUDA GPU "
        "(compute capability 8.0+, bf16/fp16; no mask over the packed row): a candidate, not yet timed on a GPU")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=lambda: ["tensorboard"], description="trackers besides metrics.jsonl; wandb runs "
        "offline (files under the run folder) when no API key is configured")

    @field_validator("lr_scheduler")
    @classmethod
    def _known_scheduler(cls, name: str) -> str:
        return _one_of(name, SCHEDULERS, "scheduler")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        return _one_of(name, OPTIMIZERS, "optimizer")

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_yes_no(cls, value: Any) -> Any:
        # before session 20 a yes/no: true (and YAML's on) compiles the layers, false (off) nothing
        return _from_bool(value, "layers")

    @field_validator("padding_free", mode="before")
    @classmethod
    def _padding_on_off(cls, value: Any) -> Any:
        return _from_bool(value)

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, steps: int) -> int:
        # transformers counts epochs only below 0: at 0 it trained one step where the plan counted the epochs'
        if steps == -1 or steps >= 1:
            return steps
        raise ValueError("expected -1 (train.epochs decides) or a number of steps >= 1")


def _from_bool(value: Any, true: str = "on", false: str = "off") -> Any:
    """A setting written as a boolean, as its word: YAML 1.1 reads a bare on / off (and yes / no) as true / false,
    so `retention: off` must still mean off."""
    return (true if value else false) if isinstance(value, bool) else value


def _one_of(name: str, allowed: tuple[str, ...], what: str) -> str:
    """Check a name against its registry now, not when the stage that uses it runs (after the run folder exists)."""
    if name not in allowed:
        known = "transformers knows" if what in ("scheduler", "optimizer") else "known"
        raise ValueError(f'unknown {what} "{name}"{did_you_mean(name, allowed)}; {known}: ' + ", ".join(allowed))
    return name


# Objectives scored against a frozen reference model (its log-probs computed once before training: preftrain);
# orpo and simpo need none.
REFERENCE_OBJECTIVES = ("dpo", "kto")


class PreferenceConfig(_Strict):
    """The preference objectives' knobs (train.objective dpo, orpo, simpo, kto); TRL's names and defaults."""

    beta: float | None = Field(None, gt=0, description="null = the method's usual value (dpo, kto, orpo 0.1; "
                               "simpo 2.0). dpo/kto: how far the model may move from the reference (lower = "
                               "further); orpo: the weight of the odds-ratio term (TRL's lambda); simpo: reward scale")
    simpo_gamma: float = Field(0.5, ge=0, description="simpo: the margin by which the chosen answer's reward "
                               "must beat the rejected one's (TRL's simpo_gamma)")
    desirable_weight: float = Field(1.0, gt=0, description="kto: weight of the good answers' loss (raise it "
                                    "when good answers are rarer than bad ones)")
    undesirable_weight: float = Field(1.0, gt=0, description="kto: weight of the bad answers' loss")

    def beta_for(self, objective: str) -> float:
        return self.beta if self.beta is not None else {"simpo": 2.0}.get(objective, 0.1)


REWARDS = ("answer", "number", "thinks", "calls")  # grpo.rewards: rewards.py defines each
OWN_REWARD = re.compile(r"(?P<file>.+\.py):(?P<function>[A-Za-z_]\w*)")  # grpo.rewards: a user's function


class GrpoConfig(_Strict):
    """train.objective grpo: TRL's GRPOTrainer on the SFT rows, each answer scored against the row's own."""

    rewards: Literal["auto"] | list[str] = Field(
        "auto", description="what scores an answer: answer (chrF of the answer against the row's, 0-1), number "
        "(its last number is the row's), thinks (it thinks before answering where the row does, and ends), calls "
        "(it makes the row's function calls), or FILE.py:FUNCTION, your own function as TRL calls it (run only "
        "with `tunesmith train --trust-code`; docs/grpo.md); auto = answer, and thinks / calls where the rows do")
    reward_weights: list[float] | None = Field(
        None, description="one weight per reward in grpo.rewards (a list, not auto), in its order: an answer's score "
        "is the weighted sum (TRL's reward_weights); null = each weighs 1")
    generations: int = Field(4, ge=2, description="answers written to each prompt per step (TRL's "
                             "num_generations); each is scored against the others of its prompt")
    max_new_tokens: int = Field(128, ge=1, description="longest answer written while training")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the answers written while training")
    beta: float = Field(0.0, ge=0, description="how strongly the model is kept near the starting one (KL); 0 = "
                        "not at all (TRL's default), and no reference model is needed")

    @model_validator(mode="after")
    def _weights_fit(self) -> GrpoConfig:
        if self.reward_weights is None:
            return self
        if not isinstance(self.rewards, list):
            raise ValueError("grpo.reward_weights needs grpo.rewards as a list (auto chooses the rewards from the "
                             "rows: name them to weigh them)")
        if len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"grpo.reward_weights has {len(self.reward_weights)} weights for "
                             f"{len(self.rewards)} rewards: give one per reward, in grpo.rewards' order")
        if len(set(self.rewards)) != len(self.rewards):
            raise ValueError("grpo.rewards names a reward twice: with grpo.reward_weights, name each once")
        return self

    @field_validator("rewards")
    @classmethod
    def _some(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError(f"name at least one of {', '.join(REWARDS)}, or auto")
        for name in value if isinstance(value, list) else ():
            if name not in REWARDS and not OWN_REWARD.fullmatch(name):
                raise ValueError(f'unknown reward "{name}"{did_you_mean(name, REWARDS)}; the rewards: '
                                 f"{', '.join(REWARDS)}, or FILE.py:FUNCTION (your own)")
        return value


class EvalConfig(_Strict):
    max_rows: int = Field(40, ge=1, description="held-out rows to generate for (generation is the slow part)")
    max_new_tokens: int = Field(96, ge=1, description="longest answer generated per eval row (not set: the plan "
                                "raises it where the eval answers think before answering and need more)")
    batch_size: int = Field(8, ge=1, description="rows generated together (left padding, KV cache)")
    temperature: float = Field(0.0, ge=0, description="0 (or under 0.001) = greedy (deterministic); more samples")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling, with temperature > 0")
    repetition_penalty: float = Field(1.0, gt=0, description="> 1 discourages repeating tokens; 1 = off")
    seed: int = Field(0, description="sampling and bootstrap seed")
    cache: bool = Field(True, description="reuse the base model's evaluation from an earlier run with the same "
                        "model, rows and settings ($TUNESMITH_HOME/cache/eval)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="the weights' dtype for generation and scoring (eval, compare, chat, serve): auto = "
        "bf16 where the GPU or CPU runs it natively (2x faster generation on a 2-core CPU; greedy answers can "
        "differ from fp32 ones, base and tuned alike), fp16 on CUDA without bf16, else fp32")
    embedder: str = Field("default", description="model for embedding cosine: default (all-MiniLM-L6-v2 for "
                          "English references, multilingual-e5-small for the others, row by row), multilingual "
                          "(e5 for every row), a sentence-transformers folder or cached name, or none")
    retention: Literal["auto", "on", "off"] = Field(
        "auto", description="the check that tuning did not break the model outside the task: perplexity of "
        "shipped English and Korean passages and answers to general prompts, base vs tuned; auto = on where it "
        "is cheap (a GPU, or a model of at most 2B parameters)")

    @field_validator("retention", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        return _from_bool(value)


class SynthConfig(_Strict):
    """`tunesmith synth`: seed words -> questions -> retrieved passages -> grounded answers -> a training file."""

    seeds: Path = Field(description="a text file, one seed word or phrase per line")
    out: Path = Field(description="the JSONL file to write (appended as produced; a re-run resumes it)")
    docs: Path | None = Field(None, description="a folder of .txt/.md/.jsonl passages to ground answers in")
    generator: str = Field("default", description="a model spec or run folder (local), or an OpenAI-compatible "
                           "API base url, e.g. http://127.0.0.1:8000/v1 (key from TUNESMITH_SYNTH_KEY or "
                           "OPENAI_API_KEY)")
    api_model: str | None = Field(None, description="the model name to ask the url for (default: the server's "
                                  "first model)")
    per_seed: int = Field(5, ge=1, le=50, description="questions asked for per seed word")
    lang: Literal["ko", "en"] | None = Field(None, description="the prompts' language, and rows in another "
                                               "language are removed; unset: prompts in the seed words' language, "
                                               "no language filter")
    format: Literal["messages", "alpaca"] = "messages"
    top_k: int = Field(3, ge=1, le=20, description="passages retrieved per question")
    retriever: str = Field("e5", description="e5 (multilingual-e5-small, bundled), bm25, hybrid (e5 + bm25), "
                           "or a sentence-transformers model folder")
    chunk_chars: int = Field(600, ge=100, description="passages are paragraphs joined up to this many characters")
    prompts: Path | None = Field(None, description="a JSON file overriding the shipped prompt templates")
    temperature: float = Field(0.8, ge=0, description="sampling temperature of the generator (questions vary)")
    max_new_tokens: int = Field(256, ge=16)
    min_chars: int = Field(8, ge=1, description="shorter questions or answers are removed")
    duplicate_similarity: float = Field(0.99, gt=0, le=1, description="a question this similar to an earlier "
                                        "one (embedding cosine with the retriever's model) is a near-duplicate; "
                                        "character 3-gram overlap >= 0.8 always is")
    min_support: float = Field(0.3, ge=0, le=1, description="with docs: share of the answer's character "
                               "3-grams found in its passages below which it is unsupported")
    limit_seeds: int | None = Field(None, ge=1, description="use the first N seed words")
    seed: int = 0


class RunConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="run folder name under output_dir")
    model: str = Field("default", description="default (embedded SmolLM2-135M-Instruct), a model folder, a "
                       ".gguf file, or a hub id in your Hugging Face cache")
    output_dir: Path = Field(Path("runs"), description="where run folders go")
    continue_from: Path | None = Field(None, description="a finished run folder: start from its adapter (or "
                                       "model) instead of the base model, e.g. on new data")
    data: DataConfig
    template: TemplateConfig = TemplateConfig()
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    preference: PreferenceConfig = PreferenceConfig()
    grpo: GrpoConfig = GrpoConfig()
    eval: EvalConfig = EvalConfig()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        # "." and ".." fit the pattern and name the output dir itself or its parent: `plan` printed "runs/.."
        if name in (".", ".."):
            raise ValueError("expected a plain folder name, not '.' or '..' (e.g. --name demo-2, or name: demo-2 in "
                             "a config)")
        return name

    @model_validator(mode="after")
    def _methods_fit(self) -> RunConfig:
        if self.train.method == "full" and self.train.load_in != "none":
            raise ValueError("train.load_in 8bit/4bit cannot be fully fine-tuned (quantised weights are frozen); "
                             "use method: lora with load_in: 4bit (QLoRA)")
        if self.train.neftune_alpha is not None and self.train.objective == "grpo":
            raise ValueError("train.neftune_alpha cannot be used with train.objective grpo: its steps write answers "
                             "with the training model, and the noise would be in them; leave it null")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at a config location, for the did-you-mean."""
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return list(model.model_fields)


def _explain(err: ValidationError, names: dict[str, str] | None = None) -> list[str]:
    """One line per problem, each naming the key (or, through `names`, the flag) as the user typed it."""
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc)
        key = (names or {}).get(key, key)
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(loc[:-1])
            problems.append(f'unknown key "{key}"{did_you_mean(str(loc[-1]), allowed)}; '
                            f"allowed here: {', '.join(allowed)}")
        elif not loc:  # a rule across keys (model_validator)
            problems.append(e["msg"].removeprefix("Value error, "))
        elif e["type"] == "missing":
            problems.append(f'missing required key "{key}"')
        else:
            msg = e["msg"].removeprefix("Value error, ")
            hint = ""
            if e["type"] == "literal_error":  # `supervise: asistant`: the choices are quoted in ctx["expected"]
                hint = did_you_mean(str(e.get("input")), re.findall(r"'([^']*)'", e["ctx"]["expected"]))
            problems.append(f'"{key}": {msg} (got {e.get("input")!r}){hint}')
    return problems


def parse(raw: dict[str, Any], *, source: str, base_dir: Path | None = None) -> RunConfig:
    """Validate a config mapping; relative data paths are made absolute against `base_dir`.

    >>> parse({"name": "x", "data": {"train": ["a.jsonl"]}}, source="<test>", base_dir=Path("/d")).data.train
    [PosixPath('/d/a.jsonl')]
    """
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise TunesmithError("invalid config", where=source, problems=_explain(err),
                             fix="edit the config; `docs/config.md` lists every key") from None
    if base_dir is None:
        return cfg
    data = cfg.data.model_copy(update={
        "train": [base_dir / p for p in cfg.data.train],
        "eval": [base_dir / p for p in cfg.data.eval]})
    grpo = cfg.grpo.model_copy(update={"rewards": _own_rewards_from(cfg.grpo.rewards, base_dir)})
    return cfg.model_copy(update={"data": data, "grpo": grpo,
                                  "continue_from": cfg.continue_from and base_dir / cfg.continue_from})


def _own_rewards_from(names: str | list[str], base_dir: Path) -> str | list[str]:
    """grpo.rewards with each FILE.py:FUNCTION's file made absolute against `base_dir`, as data paths are."""
    if isinstance(names, str):
        return names
    own = [OWN_REWARD.fullmatch(n) for n in names]
    return [f"{base_dir / m['file']}:{m['function']}" if m else n for n, m in zip(names, own, strict=True)]


Section = TypeVar("Section", bound=BaseModel)


def section(cls: type[Section], values: dict[str, Any], *, where: str, flags: dict[str, str]) -> Section:
    """One config section built from a verb's flags, validated with the config's own rules and messages.

    `flags` maps each field to the flag that set it, so the error names what the user typed:
    >>> section(TemplateConfig, {"supervise": "bogus"}, where="tunesmith preview", flags={"supervise": "--supervise"})
    Traceback (most recent call last):
    tunesmith.errors.TunesmithError: tunesmith preview: invalid option
      - "--supervise": Input should be 'assistant', 'last' or 'all' (got 'bogus')
    how to fix: change the option; `tunesmith preview --help` lists them
    """
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        raise TunesmithError("invalid option", where=where, problems=_explain(err, flags),
                             fix=f"change the option; `{where} --help` lists them") from None


def set_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `--set key.sub=value` override (value parsed as YAML) to a raw config mapping.

    A value that is not valid YAML (`--set 'data.system=[oops'`) is an error naming the assignment, not text:
    reading it as text would hide a mistyped list or mapping, and quoting says what was meant.
    """
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise TunesmithError(f"bad --set {assignment!r}", fix="write it as --set train.epochs=1")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise TunesmithError(f"bad --set {assignment!r}: {part} is not a section")
    try:
        node[parts[-1]] = yaml_load(value, where=f"--set {assignment}")
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise TunesmithError(f"the value {value!r} of {key} is not valid YAML ({problem})",
                             where=f"--set {assignment}",
                             fix=f"quote it to mean text: --set '{key}=\"{value}\"'; or write a list as "
                                 f"[a, b] and a mapping as {{a: b}}") from None


def override(key: str, value: object) -> str:
    """A `--set` assignment for a value the program already holds (a flag): YAML-quoted, so a name such as
    `[x` or `a: b` arrives as the text it is.

    >>> override("eval.embedder", "[x")
    "eval.embedder='[x'"
    """
    value = str(value) if isinstance(value, Path) else value
    dumped = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=float("inf")).strip()
    return f"{key}={dumped.removesuffix(chr(10) + '...').removesuffix(' ...')}"


def load(path: Path, overrides: list[str] = ()) -> RunConfig:
    """Read and validate a YAML config file, applying `--set` overrides first."""
    if not path.is_file():
        raise TunesmithError(f"config file {path} not found",
                             fix="pass a YAML config, e.g. `tunesmith train configs/demo.yaml`")
    data_fix = f"to train on {path.name} as data: --data {path}" if path.suffix.lower() not in (".yaml", ".yml") \
        else None  # `tunesmith plan mine.jsonl`: a data file where the config goes
    try:
        raw = yaml_load(read_text(path), where=str(path)) or {}
    except yaml.YAMLError as err:
        raise TunesmithError(f"not valid YAML: {err}", where=str(path), fix=data_fix) from None
    except OSError as err:
        raise TunesmithError(f"cannot read the config: {err.strerror}", where=str(path),
                             fix="check the file's permissions") from None
    except TunesmithError as err:  # not UTF-8: a cp949 CSV given as the config says what it is
        raise _with_fix(err, data_fix) from None
    if not isinstance(raw, dict):
        raise TunesmithError("a config must be a mapping of keys to values", where=str(path), fix=data_fix)
    tool = foreign.which(raw)
    if tool is not None:
        raise TunesmithError(f"this is a {tool} config, not a tunesmith one", where=str(path),
                             fix=f"tunesmith init --from {path} --out {path.stem}-tunesmith.yaml writes the same run "
                                 "as a tunesmith config (what does not carry over listed at its top); then plan or "
                                 "train that file")
    for assignment in overrides:
        set_override(raw, assignment)
    try:
        return parse(raw, source=str(path), base_dir=path.resolve().parent)
    except TunesmithError as err:
        raise _with_fix(err, data_fix and f"{data_fix}; or, if it is a config, {err.fix}") from None


def _with_fix(err: TunesmithError, fix: str | None) -> TunesmithError:
    """`err` with this fix instead of its own, where there is one."""
    return err if fix is None else TunesmithError(err.what, where=err.where, fix=fix, problems=err.problems)


def build(path: Path | None, overrides: list[str], data: list[Path] = ()) -> RunConfig:
    """A config from a YAML file, or from defaults when there is none (`tunesmith train --data mine.jsonl`).

    `data` (the --data flag, relative to the cwd) replaces data.train; the run is then named after the file.
    """
    if path is None and not data:
        raise TunesmithError("nothing to train on", fix="pass a config (tunesmith init writes one) or --data FILE")
    overrides = [paths_override("data.train", data)] * bool(data) + list(overrides)
    if path is not None:
        return load(path, overrides)
    raw: dict[str, Any] = {"name": safe_name(Path(data[0]).stem, fallback="run")}
    for assignment in overrides:
        set_override(raw, assignment)
    return parse(raw, source="command line", base_dir=Path.cwd())


def paths_override(key: str, paths: list[Path]) -> str:
    """A `--set` assignment of absolute paths (quoted by YAML, so commas or colons in a name survive).

    >>> paths_override("data.eval", [Path("/d/a b.jsonl")])
    'data.eval=[/d/a b.jsonl]'
    """
    return f"{key}={yaml.safe_dump([str(Path(p).resolve()) for p in paths], default_flow_style=True).strip()}"
