"""`tunesmith models`: the models on this machine that tunesmith can train, each described from its own files
(architecture, parameters, context, chat template, how many tokens Korean text costs), and, for a data file,
what the plan says a run would need (peak memory, time) with each.

Nothing is downloaded. A model folder is read from config.json and the safetensors headers; a GGUF from the
weightless folder of its config and tokenizer that a plan reads too (written once: parsing a GGUF takes seconds),
or, where transformers cannot read it, from its header (the `gguf` package).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunesmith.stores import StoredModel

KOREAN = "요즘 회사 일이 너무 많아서 잠을 못 자요. 주말에도 쉬지 못해서 지쳤어요."  # 37 characters
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


@dataclass(frozen=True)
class ModelInfo:
    model: StoredModel
    architecture: str | None
    parameters: int | None
    context: int | None
    chat_template: bool
    korean_tokens_per_char: float | None  # None where the tokenizer could not be built
    not_trainable: str | None  # why tunesmith cannot train it; None when it can
    fit: str | None = None  # with --data: the plan's estimate for that file, or why it does not fit

    def to_json(self) -> dict[str, Any]:
        return {"name": self.model.name, "store": self.model.store, "path": str(self.model.path),
                "size_bytes": self.model.size_bytes, "architecture": self.architecture,
                "parameters": self.parameters, "context": self.context, "chat_template": self.chat_template,
                "korean_tokens_per_char": self.korean_tokens_per_char, "trainable": self.not_trainable is None,
                "not_trainable": self.not_trainable, "fit": self.fit}


def everything(folders: list[Path] = ()) -> list[StoredModel]:
    """The embedded default first, then every model in the stores and `folders`."""
    from tunesmith import models, stores

    gguf = models.default_gguf()
    return [StoredModel("default", "tunesmith", gguf, gguf.stat().st_size), *stores.find(folders)]


def describe(model: StoredModel) -> ModelInfo:
    return _gguf(model) if model.path.is_file() else _folder(model)  # a file: a GGUF (Ollama blobs have no suffix)


def _folder(model: StoredModel) -> ModelInfo:
    weights = sorted(model.path.glob("*.safetensors"))
    why = None if weights else "no .safetensors weights (tunesmith loads safetensors only, never pickled .bin files)"
    return _from_config(model, model.path, _safetensors_parameters(weights) or None, why)


def _from_config(model: StoredModel, folder: Path, parameters: int | None, why: str | None) -> ModelInfo:
    """What a model folder's config.json and tokenizer files say (`folder`: the model's own, or the weightless
    folder a GGUF's config and tokenizer were written into)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    arch = cfg.get("model_type")
    why = (why if arch in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else
           f"{arch!r} is not a causal language model transformers can load" if arch else "config.json names no model_type")
    tok_cfg = folder / "tokenizer_config.json"
    template = (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file() or (
        tok_cfg.is_file() and "chat_template" in json.loads(tok_cfg.read_text(encoding="utf-8")))
    context = next((cfg[k] for k in CONTEXT_KEYS if isinstance(cfg.get(k), int)), None)
    return ModelInfo(model, arch, parameters, context, template, _korean_cost(lambda: _auto_tokenizer(folder)), why)


def _safetensors_parameters(files: list[Path]) -> int:
    """Parameters counted from each file's header (8-byte length, then JSON of dtype/shape/offsets)."""
    total = 0
    for f in files:
        with f.open("rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        for name, t in header.items():
            if name != "__metadata__":
                n = 1
                for d in t["shape"]:
                    n *= d
                total += n
    return total


def _gguf(model: StoredModel) -> ModelInfo:
    """From the weightless folder that the plan and `--data` read too (the GGUF's config and tokenizer, written
    once beside where it converts to): parsing a GGUF's header takes seconds (~5 s for SmolLM2's 49k-token
    vocabulary on 2 vCPUs), and the listing read each file 4 times, 92 s for three models. A GGUF transformers
    cannot read is described from its header alone."""
    from tunesmith import models
    from tunesmith.errors import TunesmithError

    try:
        folder = Path(models.resolve(model.name, weights=False))
    except TunesmithError as err:
        return _gguf_header(model, err.what)
    info = _from_config(model, folder, None, None)
    return replace(info, parameters=_meta_parameters(folder)) if info.not_trainable is None else info


def _meta_parameters(folder: Path) -> int | None:
    """Parameters of the model `folder`'s config describes, counted on an empty model (models.empty_model: no
    weights; tied embeddings once, as a GGUF stores them)."""
    import warnings

    from transformers import AutoConfig

    from tunesmith import models

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = models.empty_model(AutoConfig.from_pretrained(str(folder)))
    except (ValueError, KeyError, OSError, TypeError):
        return None
    return sum(p.numel() for p in model.parameters())


def _gguf_header(model: StoredModel, failure: str) -> ModelInfo:
    """A GGUF that transformers failed to read (`failure`), described from its header: which architecture, so that
    the listing says why."""
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        reader = GGUFReader(str(model.path))
    except (ValueError, KeyError, IndexError, EOFError, OSError, struct.error):
        return ModelInfo(model, None, None, None, False, None, failure)

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    arch = field("general.architecture")
    why = (f"transformers cannot read {arch!r} GGUF files (it reads "
           f"{', '.join(sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {'general', 'tokenizer'}))})"
           if arch not in GGUF_SUPPORTED_ARCHITECTURES else failure)
    params = sum(int(t.n_elements) for t in reader.tensors)
    return ModelInfo(model, arch, params, field(f"{arch}.context_length"), "tokenizer.chat_template" in reader.fields,
                     None, why)


def _auto_tokenizer(path: Path, **kw: Any) -> Any:
    import logging

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)  # GGUF conversion warnings are not the user's business here
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False, **kw)
    finally:
        hf_logging.set_verbosity(level)


def _korean_cost(tokenizer: Callable[[], Any]) -> float | None:
    try:
        tok = tokenizer()
        return round(len(tok(KOREAN, add_special_tokens=False)["input_ids"]) / len(KOREAN), 2)
    except Exception:  # noqa: BLE001  (any tokenizer that cannot be built: the listing says "?")
        return None


def with_fit(info: ModelInfo, data: list[Path]) -> ModelInfo:
    """The plan's peak memory and time for training on `data` with this model, as `tunesmith plan` says."""
    from tunesmith import config, pipeline
    from tunesmith.errors import TunesmithError

    if info.not_trainable:
        return info
    try:
        cfg = config.build(None, [config.override("model", info.model.name)], data)
        est = pipeline.estimate(cfg)
    except TunesmithError as err:
        return replace(info, fit=f"does not fit: {err.what}")
    return replace(info, fit=f"~{est.memory_gib:.1f} GiB of {est.budget_gib:.1f} GiB, ~{est.duration} "
                             f"({est.rows} rows, {est.steps} steps)")


def lines(infos: list[ModelInfo]) -> list[str]:
    """The human listing: one block per model, trainable ones first."""
    out = []
    for i in sorted(infos, key=lambda i: i.not_trainable is not None):
        params = f"{i.parameters / 1e9:.2f}B" if (i.parameters or 0) >= 1e9 else (
            f"{i.parameters / 1e6:.0f}M" if i.parameters else "?")
        ko = f"{i.korean_tokens_per_char} tokens/char" if i.korean_tokens_per_char is not None else "?"
        out.append(f"{i.model.name}  [{i.model.store}]")
        out.append(f"  {i.architecture or '?'}, {params} parameters, context {i.context or '?'}, chat template "
                   f"{'yes' if i.chat_template else 'no'}, Korean {ko}, {i.model.size_bytes / 2**30:.2f} GiB on disk")
        out.append(f"  {'trainable: --model ' + _quoted(i.model.name) if i.not_trainable is None else 'not trainable: ' + i.not_trainable}")
        if i.fit:
            out.append(f"  with your data: {i.fit}")
    return out


def _quoted(name: str) -> str:
    import shlex

    return shlex.quote(name)
