"""Training configs of LLaMA-Factory and Axolotl, read as the tunesmith run they describe.

People come with the YAML they trained with elsewhere (`llama3_lora_sft.yaml`, an Axolotl `config.yml`). Given
to `plan`/`train` it stops with the translation's command; `tunesmith init --from FILE` writes the tunesmith config
of the same run: the model, the data files (LLaMA-Factory's dataset names looked up in its dataset_info.json), LoRA
rank/alpha/dropout/targets, quantised loading, batch size, accumulation, epochs or steps, learning rate and its
schedule, sequence length, precision, seed, the objective (SFT, DPO, ORPO, SimPO, KTO) and its beta. Each key that
has no tunesmith equivalent, or that tunesmith decides itself, is listed in the written file with why, never
dropped without a word.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.diskio import safe_name

LLAMAFACTORY_KEYS = {"model_name_or_path", "stage", "finetuning_type", "dataset", "cutoff_len", "lora_rank",
                     "lora_target", "per_device_train_batch_size", "num_train_epochs", "dataset_dir", "template"}
AXOLOTL_KEYS = {"base_model", "datasets", "sequence_len", "adapter", "micro_batch_size", "num_epochs", "lora_r",
                "lora_target_linear", "val_set_size", "sample_packing"}
# keys whose work tunesmith does itself, or that only steer the other tool's own machinery
NOT_NEEDED = {"do_train", "overwrite_output_dir", "overwrite_cache", "preprocessing_num_workers", "plot_loss",
              "save_steps", "save_strategy", "ddp_timeout", "dataloader_num_workers",
              "save_only_model", "resume_from_checkpoint", "dataset_prepared_path", "flash_attention",
              "sample_packing", "pad_to_sequence_len", "eval_sample_packing", "strict", "tokenizer_type",
              "model_type", "xformers_attention", "sdp_attention", "logging_dir", "special_tokens", "tf32",
              "group_by_length", "evals_per_epoch", "saves_per_epoch", "debug", "deepspeed", "fsdp", "fsdp_config",
              "wandb_entity", "wandb_watch", "wandb_name", "wandb_log_model", "hub_model_id", "push_to_hub"}


@dataclass(frozen=True)
class Translation:
    """A foreign config as tunesmith's: which tool wrote it, the config mapping, and what did not carry over."""

    tool: str  # "LLaMA-Factory" or "Axolotl"
    config: dict[str, Any]
    notes: tuple[str, ...]  # a key and why it is not in the config, one each

    def yaml_text(self, source: Path) -> str:
        """The config as YAML, headed by where it came from and what did not carry over."""
        import yaml

        head = [f"# tunesmith's config for the run {source} describes ({self.tool}); check it with: tunesmith plan "
                "THIS_FILE", *(f"# note: {n}" for n in self.notes)]
        return "\n".join(head) + "\n" + yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True)


def which(raw: dict[str, Any]) -> str | None:
    """The tool a config mapping was written for, by its keys: two or more of one tool's and none of tunesmith's."""
    keys = set(raw)
    if keys & {"name", "data", "train", "lora", "eval"}:  # tunesmith's own sections: its own config
        return None
    if len(keys & LLAMAFACTORY_KEYS) >= 2:
        return "LLaMA-Factory"
    if len(keys & AXOLOTL_KEYS) >= 2:
        return "Axolotl"
    return None


def translate(raw: dict[str, Any], source: Path, data: list[str] = ()) -> Translation | None:
    """The tunesmith run a LLaMA-Factory or Axolotl config describes, or None for any other mapping; `data`
    (files named by the user) replaces the data files it names."""
    tool = which(raw)
    if tool is None:
        return None
    out: dict[str, Any] = {}
    notes: list[str] = []
    keys = _LLAMAFACTORY if tool == "LLaMA-Factory" else _AXOLOTL
    for key, value in raw.items():
        if key in keys:
            keys[key](value, raw, source, out, notes)
        elif key in NOT_NEEDED:
            notes.append(f"{key}: not needed (tunesmith decides this itself, or it steers {tool}'s machinery only)")
        elif key == "trust_remote_code":
            notes.append(f"{key}: tunesmith runs no code from a model's folder (built-in architectures, safetensors)")
        elif key == "tool_format":
            notes.append(f"{key}: {_short(value)} is not needed: function calls are written by the model's own chat "
                         "template where it writes them, else in Qwen2.5's <tool_call> form (docs/function-calling.md)")
        else:
            notes.append(f"{key}: {_short(value)} has no tunesmith equivalent here")
    if tool == "LLaMA-Factory":
        _llamafactory_defaults(raw, out, notes)
    if data:
        out["data.train"] = list(data)
        notes = [n for n in notes if not n.startswith(("dataset:", "data.train:", "datasets["))]
    _name_and_data(out, source, notes)
    return Translation(tool, _nested(out), tuple(notes))


def _llamafactory_defaults(raw: dict[str, Any], out: dict[str, Any], notes: list[str]) -> None:
    """LLaMA-Factory's own defaults where its config is silent and tunesmith's differ: the same run, not ours."""
    lora = raw.get("finetuning_type", "lora") == "lora"
    defaults = {"lora.alpha": 2 * _number(raw.get("lora_rank", 8)) if lora else None,
                "lora.dropout": 0.0 if lora else None, "train.learning_rate": 5e-5,
                "train.lr_scheduler": "linear", "train.warmup_ratio": 0.0}
    filled = {k: v for k, v in defaults.items() if v is not None and k not in out}
    out.update(filled)
    if filled:
        notes.append("LLaMA-Factory's defaults kept where it is silent: " + ", ".join(f"{k}={v}" for k, v in
                                                                                    filled.items()))
    if "val_size" not in raw:
        notes.append("val_size: 0 there (no held-out rows); tunesmith holds out data.eval_fraction=0.2 to say "
                     "whether tuning helped")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{"train.epochs": 3} -> {"train": {"epochs": 3}}, sections in tunesmith's order."""
    out: dict[str, Any] = {}
    for section in ("name", "model", "output_dir", "data", "template", "lora", "train", "preference", "grpo",
                    "eval"):
        for key, value in flat.items():
            head, _, rest = key.partition(".")
            if head == section:
                if rest:
                    out.setdefault(head, {})[rest] = value
                else:
                    out[head] = value
    return out


def _name_and_data(out: dict[str, Any], source: Path, notes: list[str]) -> None:
    out.setdefault("name", safe_name(source.stem, "run"))
    if "data.train" not in out:
        out["data.train"] = ["YOUR_DATA.jsonl"]
        notes.append("data: no data file could be named from it; replace YOUR_DATA.jsonl with yours")


def _number(value: Any) -> Any:
    """YAML 1.1 reads `1e-4` as text: a number written either way becomes the number."""
    if isinstance(value, str):
        try:
            return int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            return value
    return value


Handler = Callable[[Any, dict[str, Any], Path, dict[str, Any], list[str]], None]


def _to(key: str, convert: Callable[[Any], Any] = _number) -> Handler:
    def handle(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
        out[key] = convert(value)
    return handle


def _output_dir(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    path = Path(str(value))
    out["name"] = safe_name(path.name, "run")
    out["output_dir"] = str(path.parent) if str(path.parent) != "." else "runs"


def _precision(name: str) -> Handler:
    def handle(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
        if value in (True, "true", "auto"):
            out["train.precision"] = name if value is True or value == "true" else "auto"
    return handle


def _report_to(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    names = value if isinstance(value, list) else [value]
    out["train.report_to"] = [n for n in names if n in ("wandb", "tensorboard")]


def _targets(value: Any) -> Any:
    if value in ("all", True):
        return "all-linear"
    return [t.strip() for t in value.split(",")] if isinstance(value, str) else list(value)


def _lf_stage(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    if value == "dpo":
        loss = raw.get("pref_loss", "sigmoid")
        out["train.objective"] = {"orpo": "orpo", "simpo": "simpo"}.get(loss, "dpo")
        if loss not in ("sigmoid", "orpo", "simpo"):
            notes.append(f"pref_loss: {loss} is not among tunesmith's objectives; trained as dpo (sigmoid)")
    elif value in ("sft", "kto"):
        out["train.objective"] = value
    else:
        notes.append(f"stage: {value} (tunesmith trains sft, dpo, orpo, simpo and kto); trained as sft")


def _lf_finetuning(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    out["train.method"] = "full" if value == "full" else "lora"
    if value not in ("lora", "full"):
        notes.append(f"finetuning_type: {value} (tunesmith trains lora or full); trained as lora")


def _lf_quant(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    bits = _number(value)
    if bits in (4, 8):
        out["train.load_in"] = f"{bits}bit"
    else:
        notes.append(f"quantization_bit: {value} (tunesmith loads in 4 or 8 bits, CUDA only)")


def _lf_dataset(key: str) -> Handler:
    def handle(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
        names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
        files = []
        for name in names:
            found, why = _lf_file(name, raw.get("dataset_dir", "data"), source)
            files += [found] if found else []
            notes += [f"{key}: {name}: {why}"] if why else []
        if files:
            out[key] = files
    return handle


def _lf_file(name: str, dataset_dir: str, source: Path) -> tuple[str | None, str | None]:
    """LLaMA-Factory's dataset name -> its file via dataset_info.json (dataset_dir relative to where LLaMA-Factory
    ran, else to the config's folder)."""
    for folder in (Path(dataset_dir), source.parent / dataset_dir):
        info = folder / "dataset_info.json"
        if not info.is_file():
            continue
        try:
            entry = json.loads(info.read_text(encoding="utf-8-sig")).get(name)
        except (OSError, ValueError, AttributeError):
            return None, f"{info} could not be read"
        if not isinstance(entry, dict):
            return None, f"no entry of that name in {info}"
        if entry.get("file_name"):
            return str(folder / entry["file_name"]), None
        hub = entry.get("hf_hub_url") or entry.get("ms_hub_url") or entry.get("script_url")
        return None, f"a hub dataset ({hub}): tunesmith trains on files; download it and name its file in data.train"
    return None, f"no dataset_info.json in {dataset_dir}; name its file in data.train"


def _val_size(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    size = _number(value)
    if isinstance(size, float) and 0 < size < 1:
        out["data.eval_fraction"] = size
    elif isinstance(size, (int, float)) and size >= 1:
        out["data.min_eval"] = int(size)
        notes.append(f"val_size: {value} rows: tunesmith holds out at least that many (data.min_eval)")


def _lf_gc(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    out["train.gradient_checkpointing"] = not value


def _lf_eval_strategy(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    if value in ("epoch", "steps"):
        out["train.eval_strategy"] = value
    else:
        notes.append(f"eval_strategy: {value}: tunesmith computes the eval loss every epoch or every eval_steps")


def _lf_template(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    notes.append(f"template: {value}: tunesmith renders with the model's own chat template (template.chat_template:"
                 " auto), or chatml / plain / a Jinja file where it has none")


_LLAMAFACTORY: dict[str, Handler] = {
    "model_name_or_path": _to("model", str), "stage": _lf_stage, "finetuning_type": _lf_finetuning,
    "lora_rank": _to("lora.r"), "lora_alpha": _to("lora.alpha"), "lora_dropout": _to("lora.dropout"),
    "lora_target": _to("lora.target_modules", _targets), "use_dora": _to("lora.dora", bool),
    "use_rslora": _to("lora.rslora", bool), "quantization_bit": _lf_quant, "dataset": _lf_dataset("data.train"),
    "eval_dataset": _lf_dataset("data.eval"), "dataset_dir": lambda *a: None, "template": _lf_template,
    "cutoff_len": _to("template.max_length"), "max_samples": _to("data.max_rows"), "val_size": _val_size,
    "output_dir": _output_dir, "per_device_train_batch_size": _to("train.batch_size"),
    "gradient_accumulation_steps": _to("train.grad_accum"), "learning_rate": _to("train.learning_rate"),
    "num_train_epochs": _to("train.epochs"), "max_steps": _to("train.max_steps"),
    "lr_scheduler_type": _to("train.lr_scheduler", str), "warmup_ratio": _to("train.warmup_ratio"),
    "weight_decay": _to("train.weight_decay"), "max_grad_norm": _to("train.max_grad_norm"),
    "neftune_noise_alpha": _to("train.neftune_alpha"),
    "logging_steps": _to("train.logging_steps"), "bf16": _precision("bf16"), "fp16": _precision("fp16"),
    "seed": _to("train.seed"), "report_to": _report_to, "optim": _to("train.optimizer", str),
    "gradient_checkpointing": _to("train.gradient_checkpointing", bool),
    "disable_gradient_checkpointing": _lf_gc, "pref_beta": _to("preference.beta"), "pref_loss": lambda *a: None,
    "eval_strategy": _lf_eval_strategy, "eval_steps": _to("train.eval_steps"),
    "per_device_eval_batch_size": _to("eval.batch_size"),
}


def _ax_adapter(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    out["train.method"] = "lora" if value in ("lora", "qlora") else "full"
    if value == "qlora":
        out["train.load_in"] = "4bit"


def _ax_datasets(key: str) -> Handler:
    def handle(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
        files = []
        for i, ds in enumerate(value if isinstance(value, list) else []):
            path = ds.get("path") if isinstance(ds, dict) else None
            if not isinstance(path, str):
                notes.append(f"{key}[{i}]: no path")
                continue
            local = Path(path) if Path(path).exists() else source.parent / path
            if local.exists() or Path(path).suffix.lower() in DATA_SUFFIXES:
                files.append(str(local if local.exists() else path))
            else:
                notes.append(f"{key}[{i}]: {path} looks like a hub dataset: tunesmith trains on files; download "
                             "it and name its file in data.train")
            if key == "datasets":
                _ax_dataset_shape(ds, i, out, notes)
        if files:
            out["data.train" if key == "datasets" else "data.eval"] = files
    return handle


DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow", ".txt", ".xlsx", ".gz")
AX_TYPES = ("alpaca", "sharegpt", "input_output", "completion")  # shapes tunesmith detects by itself


def _ax_dataset_shape(ds: dict, i: int, out: dict[str, Any], notes: list[str]) -> None:
    """An Axolotl dataset's type and field mappings as data.format / columns / roles."""
    kind = str(ds.get("type", ""))
    if kind not in ("", "chat_template", *AX_TYPES):
        notes.append(f"datasets[{i}].type: {kind}: tunesmith detects the shape of the rows itself (its formats: "
                     "docs/config.md, data.format)")
    mine = {"messages": ds["field_messages"]} if isinstance(ds.get("field_messages"), str) and ds[
        "field_messages"] not in ("messages", "conversations") else {}
    mappings = ds.get("message_property_mappings") or {k: ds[f"message_field_{k}"] for k in ("role", "content")
                                                       if f"message_field_{k}" in ds}
    mine.update({k: str(v) for k, v in mappings.items() if k in ("role", "content") and v != k})
    before = out.get("data.columns", {})
    if any(before.get(k, v) != v for k, v in mine.items()):
        notes.append(f"datasets[{i}]: its fields are named otherwise than an earlier dataset's, and data.columns "
                     "applies to every file: give it a run of its own, or the same field names")
    if mine:
        out["data.columns"] = {**before, **mine}
    roles = {str(name): role for role, names in (ds.get("roles") or {}).items() if role in ("user", "assistant",
             "system") for name in (names if isinstance(names, list) else [names])}
    if roles:
        out["data.roles"] = {**out.get("data.roles", {}), **roles}


def _ax_train_on_inputs(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    if value:
        out["template.supervise"] = "all"


def _ax_rl(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    if value in ("dpo", "orpo", "simpo", "kto", "grpo"):
        out["train.objective"] = value
    else:
        notes.append(f"rl: {value} (tunesmith trains dpo, orpo, simpo, kto and grpo)")
    if value == "grpo":
        _ax_grpo(raw.get("trl") if isinstance(raw.get("trl"), dict) else {}, source, out, notes)


def _ax_trl(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    if raw.get("rl") != "grpo":  # with rl: grpo, _ax_rl reads it
        notes.append(f"trl: {_short(value)} has no tunesmith equivalent here (its grpo settings are read with rl: "
                     "grpo)")


# Axolotl's trl: section for rl: grpo, in tunesmith's grpo names
_AX_GRPO = {"num_generations": "grpo.generations", "max_completion_length": "grpo.max_new_tokens",
            "temperature": "grpo.temperature", "beta": "grpo.beta"}


def _ax_grpo(trl: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    out.update({_AX_GRPO[k]: v for k, v in trl.items() if k in _AX_GRPO})
    funcs = trl.get("reward_funcs") or []
    funcs = funcs if isinstance(funcs, list) else [funcs]  # one function may be written without a list
    if funcs:
        _ax_reward_funcs(funcs, source, out, notes)
    weights = trl.get("reward_weights")
    if weights is not None and isinstance(out.get("grpo.rewards"), list) and len(out["grpo.rewards"]) == len(funcs):
        out["grpo.reward_weights"] = weights
    elif weights is not None:
        notes.append(f"trl.reward_weights: {weights} weigh reward functions not all found here; set "
                     "grpo.reward_weights beside grpo.rewards")
    left = sorted(k for k in trl if k not in _AX_GRPO and k not in ("reward_funcs", "reward_weights"))
    if left:
        notes.append(f"trl: {', '.join(left)} (not among tunesmith's grpo settings)")


def _ax_reward_funcs(funcs: list[Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    """Axolotl's trl.reward_funcs (module.function, imported from where Axolotl runs) as grpo.rewards' FILE.py:FUNCTION
    where the module's file is beside the config or in the cwd; run only with --trust-code."""
    found, missing = [], []
    for func in funcs:
        module, _, name = str(func).rpartition(".")
        relative = Path(*module.split(".")).with_suffix(".py") if module else None
        where = next((p for p in (source.parent / relative, Path.cwd() / relative) if p.is_file()), None) \
            if relative else None
        (found if where else missing).append(f"{where.resolve()}:{name}" if where else str(func))
    if found:
        out["grpo.rewards"] = found
        notes.append(f"trl.reward_funcs: {', '.join(Path(f).name for f in found)}: your functions, run only by "
                     "`tunesmith train CONFIG --trust-code`; completions reach them as text, with the row's answer as "
                     "reference (and answer, without its thinking)")
    if missing:
        notes.append(f"trl.reward_funcs: {', '.join(missing)}: no module file beside the config or in the cwd; name "
                     "each as grpo.rewards: [FILE.py:FUNCTION] (or use the built-in answer, number, thinks, calls)")


def _ax_wandb(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    out["train.report_to"] = ["wandb"]
    notes.append(f"wandb_project: {value}: set WANDB_PROJECT={value} when training (the key stays in your env)")


def _ax_warmup_steps(value: Any, raw: dict[str, Any], source: Path, out: dict[str, Any], notes: list[str]) -> None:
    notes.append(f"warmup_steps: {value}: tunesmith takes a share of the steps (train.warmup_ratio, default 0.05)")


_AXOLOTL: dict[str, Handler] = {
    "base_model": _to("model", str), "datasets": _ax_datasets("datasets"), "test_datasets": _ax_datasets("test"),
    "val_set_size": _val_size, "sequence_len": _to("template.max_length"), "adapter": _ax_adapter,
    "lora_r": _to("lora.r"), "lora_alpha": _to("lora.alpha"), "lora_dropout": _to("lora.dropout"),
    "lora_target_linear": lambda v, r, s, out, n: out.update({"lora.target_modules": "all-linear"}) if v else None,
    "lora_target_modules": _to("lora.target_modules", _targets), "peft_use_dora": _to("lora.dora", bool),
    "peft_use_rslora": _to("lora.rslora", bool), "load_in_4bit": lambda v, r, s, out, n: out.update(
        {"train.load_in": "4bit"}) if v else None,
    "load_in_8bit": lambda v, r, s, out, n: out.update({"train.load_in": "8bit"}) if v else None,
    "micro_batch_size": _to("train.batch_size"), "gradient_accumulation_steps": _to("train.grad_accum"),
    "num_epochs": _to("train.epochs"), "max_steps": _to("train.max_steps"),
    "learning_rate": _to("train.learning_rate"), "lr_scheduler": _to("train.lr_scheduler", str),
    "warmup_ratio": _to("train.warmup_ratio"), "warmup_steps": _ax_warmup_steps,
    "weight_decay": _to("train.weight_decay"), "max_grad_norm": _to("train.max_grad_norm"),
    "neftune_noise_alpha": _to("train.neftune_alpha"),
    "optimizer": _to("train.optimizer", str), "bf16": _precision("bf16"), "fp16": _precision("fp16"),
    "gradient_checkpointing": _to("train.gradient_checkpointing", bool), "train_on_inputs": _ax_train_on_inputs,
    "output_dir": _output_dir, "seed": _to("train.seed"), "logging_steps": _to("train.logging_steps"),
    "early_stopping_patience": _to("train.early_stopping_patience"), "rl": _ax_rl, "trl": _ax_trl,
    "dpo_beta": _to("preference.beta"), "rl_beta": _to("preference.beta"), "wandb_project": _ax_wandb,
    "chat_template": _lf_template,
}
