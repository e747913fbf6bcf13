"""`tunesmith export`: a run's tuned model as a merged folder, a GGUF file, or a GGUF with an Ollama Modelfile.

Every export is loaded back and compared with the tuned model in memory before the command succeeds (`check`):
the largest |logit difference| on a few of the run's held-out prompts must be within the format's tolerance,
and greedy generations must agree (identical for merged and F16; the agreement is reported for the others).
The figures go to the export's manifest (tunesmith_export.json) beside the files.

GGUF is written with the `gguf` package for Llama-architecture models (SmolLM2, Llama 2/3 without rope scaling,
TinyLlama...): tensors named by gguf's own TensorNameMap, q/k rows permuted into llama.cpp's rotary layout,
the tokenizer (tokens, types, merges, special ids), the chat template used in training, end-of-turn ids.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith import diskio, generation, gguf_export, hub, models, ollama, progress, rundir, template
from tunesmith.config import EvalConfig, TemplateConfig
from tunesmith.errors import TunesmithError
from tunesmith.gguf_export import LLAMA_QUANTS
from tunesmith.records import load_fields

FORMATS = ("merged", "gguf", "ollama")
# gguf 0.19 quantises these in numpy (the K-quants it only reads); transformers' GGUF loader reads them all back.
NUMPY_QUANTS = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
QUANTS = (*NUMPY_QUANTS, *LLAMA_QUANTS)  # the K-quants: llama.cpp's quantizer, from the F16 file
# Largest |logit difference| allowed against the tuned model in memory, over every position and vocabulary entry
# of the check prompts (SmolLM2's logits span about -30..+30). Measured on the demo run (docs/export.md): merged
# 9.2e-5, f16 0.044, bf16 0.72, q8_0 1.38 (its tied output head is 8-bit too), q4_0 26.7 (fails: 4 bits are too
# few for a 135M model whose source GGUF was already 4-bit). q5_* and q4_* share one stated bound, not measured.
# The K-quants (llama.cpp's), on the same demo run: q6_k 2.53 (bound 4), q5_k_m 11.9, q5_k_s 17.2, q4_k_m 11.9,
# q4_k_s 11.3 (q5/q4 share the bound 8: all fail here), q3_k_m 16.8, q2_k 27.8 (bound 16): SmolLM2-135M's
# 576-wide rows do not split into the K-quants' 256-value blocks, so 180 of its 272 tensors take llama.cpp's
# legacy fallback types, on weights already rounded to 4 bits once.
TOLERANCE = {"merged": 1e-3, "f32": 1e-3, "f16": 0.1, "bf16": 1.5, "q8_0": 2.0, "q5_1": 8.0, "q5_0": 8.0,
             "q4_1": 8.0, "q4_0": 8.0, "q6_k": 4.0, "q5_k_m": 8.0, "q5_k_s": 8.0, "q4_k_m": 8.0, "q4_k_s": 8.0,
             "q3_k_m": 16.0, "q2_k": 16.0}
EXACT = ("merged", "f32", "f16")  # greedy generations must be identical; the others report agreement
CHECK_PROMPTS = 3
CHECK_TOKENS = 24
MANIFEST = "tunesmith_export.json"
TMP_MARKER = ".tunesmith-export-in-progress"  # inside the hidden work folder until it is renamed to --out
SPECIAL = ("/proc", "/sys", "/dev")  # kernel filesystems: writing a model there fails after minutes of work


@dataclass(frozen=True)
class ExportCheck:
    """An export loaded back and compared with the tuned model in memory on the run's held-out prompts."""

    kind: str  # merged, or the GGUF quantisation (f16, q8_0, ...)
    prompts: int
    max_logit_diff: float
    tolerance: float
    identical_generations: int  # prompts whose greedy continuation is the same token for token
    agreeing_tokens: int  # tokens before the first difference, summed over prompts
    generated_tokens: int
    same_tokenizer: bool  # the export's own tokenizer encodes the prompts to the same ids
    same_template: bool  # and carries the chat template used in training
    passed: bool

    def describe(self) -> str:
        return (f"{self.kind}: max |logit diff| {self.max_logit_diff:.3g} (tolerance {self.tolerance:g}), "
                f"{self.identical_generations}/{self.prompts} greedy generations identical, token agreement "
                f"{self.agreeing_tokens}/{self.generated_tokens}, tokenizer "
                f"{'same' if self.same_tokenizer else 'DIFFERENT'}, chat template "
                f"{'same' if self.same_template else 'DIFFERENT'}")


@dataclass(frozen=True)
class ExportResult:
    """tunesmith_export.json: what was exported from which run, the files, and the reload check."""

    format: str  # merged, gguf or ollama
    quant: str  # the GGUF quantisation; "" for merged
    path: str
    source: str  # what was loaded: base + adapter, or the full model
    files: tuple[str, ...]
    check: ExportCheck

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "an export manifest") -> ExportResult:
        fields_ = load_fields(cls, obj, where)
        return cls(**{**fields_, "files": tuple(fields_["files"]), "check": ExportCheck(**fields_["check"])})


def export(run_path: Path, out: Path, *, fmt: str = "merged", quant: str = "f16", overwrite: bool = False,
           say: Callable[[str], None] = print) -> ExportResult:
    """Export the tuned model of `run_path` into `out`; raises TunesmithError when the reload check fails."""
    if fmt not in FORMATS:
        raise TunesmithError(f"unknown export format {fmt!r}", fix="use one of: " + ", ".join(FORMATS))
    if quant not in QUANTS:
        raise TunesmithError(f"unknown GGUF quantisation {quant!r}", fix="use one of: " + ", ".join(QUANTS))
    if fmt != "merged":
        gguf_export.check_llama_quantizer(quant)
    run = rundir.RunDir(run_path)
    if not run.config.is_file():
        raise TunesmithError(f"{run_path} is not a run folder (no config.yaml)", fix="pass a folder under runs/")
    _check_target(out, overwrite)  # before minutes of loading and merging
    _clean_stale(out)
    from tunesmith import config

    cfg = config.load(run.config)
    step = progress.stages("export", 5, say)
    step("loading the tuned model ...")
    model, tok, what = models.load_run_weights(run)
    prompts = check_prompts(tok, run, cfg.template)
    step(f"answering {len(prompts)} check prompts with it ...")
    reference = _outputs(model, tok, prompts)
    step("merging the adapter into the base weights ..." if hasattr(model, "merge_and_unload") else
         "the weights are whole already (full fine-tuning) ...")
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()  # the adapter folded into the base weights
    _set_generation_config(model, tok)
    system = _training_system(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    (tmp / TMP_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        step(f"writing {fmt}{'' if fmt == 'merged' else ' ' + quant} ...")
        files = _write(fmt, quant, model, tok, tmp, cfg.model, system, say)
        step("loading it back and comparing its answers with the tuned model's ...")
        loaded, loaded_tok = _load_back(fmt, tmp)
        kind = "merged" if fmt == "merged" else quant  # what the check's tolerance is for
        result = ExportResult(fmt, "" if fmt == "merged" else quant, str(out), what, tuple(files),
                              _compare(reference, loaded, loaded_tok, tok, prompts, kind))
        diskio.write_json(tmp / MANIFEST, result.to_json())
        (tmp / TMP_MARKER).unlink()
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not result.check.passed:
        c = result.check
        lossy = c.same_tokenizer and c.same_template and c.kind not in EXACT
        raise TunesmithError(f"the export does not reproduce the tuned model: {c.describe()}", where=str(out),
                             fix=f"{quant} rounds this model's weights too far (the files are left in {out} if "
                                 "you accept that): a less lossy --quant (q6_k, q8_0, f16) or --format merged"
                             if lossy else "report this with the manifest; a less lossy --quant (f16 or q8_0) or "
                                           "--format merged may pass")
    return result


def _check_target(out: Path, overwrite: bool) -> None:
    """--out is a new path or a folder on an ordinary filesystem, not a file or a link; an earlier export is
    replaced only with `overwrite`, and only when it holds nothing but that export's own files."""
    resolved = out.resolve()
    if out.is_symlink():
        raise TunesmithError(f"--out {out} is a symbolic link (to {resolved})", fix="name the folder itself")
    if out.exists() and not out.is_dir():
        raise TunesmithError(f"--out {out} is a file, not a folder", fix="name a new or empty folder")
    if any(resolved == Path(s) or Path(s) in resolved.parents for s in SPECIAL):
        raise TunesmithError(f"--out {out} is on a special filesystem ({resolved})", fix="name a folder on disk")
    above = next(p for p in (resolved, *resolved.parents) if p.exists())
    if not above.is_dir() or not os.access(above, os.W_OK):
        raise TunesmithError(f"--out {out}: {above} is {'not a folder' if not above.is_dir() else 'not writable'}",
                             fix="name a new folder in a writable folder")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not overwrite:
        raise TunesmithError(f"{out} exists and is not empty", fix="pass --overwrite, or another --out folder")
    if not (out / MANIFEST).is_file():
        raise TunesmithError(f"{out} is not an earlier tunesmith export (no {MANIFEST}); it is left alone",
                             fix="choose an empty or new --out folder")
    earlier = ExportResult.from_json(diskio.read_json(out / MANIFEST), where=str(out / MANIFEST))
    others = sorted(p.name for p in out.iterdir() if p.name not in {*earlier.files, MANIFEST})
    if others:
        raise TunesmithError(f"{out} holds files that are not part of the earlier export: {', '.join(others)}; "
                             "--overwrite would delete them, so nothing is replaced",
                             fix="move them elsewhere, or choose another --out folder")


def _clean_stale(out: Path) -> None:
    """Remove the hidden work folders (.<out>-*) an export killed before its rename left beside `out`: only ours
    (TMP_MARKER inside) and only when the process that made them is gone."""
    if not out.parent.is_dir():
        return
    for folder in out.parent.glob(f".{out.name}-*"):
        marker = folder / TMP_MARKER
        if folder.is_dir() and not folder.is_symlink() and marker.is_file() and not _alive(marker):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(marker: Path) -> bool:
    try:
        os.kill(int(marker.read_text(encoding="utf-8").strip()), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _write(fmt: str, quant: str, model: Any, tok: Any, folder: Path, base: str, system: str | None,
           say: Callable[[str], None]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "merged":
        model.save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)
        return sorted(p.name for p in folder.iterdir() if p.name != TMP_MARKER)
    name = f"model-{quant}.gguf"
    written = folder / (".model-f16.gguf" if quant in LLAMA_QUANTS else name)  # a K-quant starts from F16
    for notice in gguf_export.write(model, tok, written, "f16" if quant in LLAMA_QUANTS else quant,
                                    source_gguf=_source_gguf(base)):
        say(notice)
    if quant in LLAMA_QUANTS:
        for notice in gguf_export.quantize(written, folder / name, quant):
            say(notice)
        written.unlink()
    if fmt == "ollama":
        (folder / "Modelfile").write_text(ollama.modelfile(tok, name, system), encoding="utf-8")
    return sorted(p.name for p in folder.iterdir() if p.name != TMP_MARKER)


def _source_gguf(base: str) -> Path | None:
    """The GGUF the base model was read from (the default model, or a .gguf --model): its tokenizer settings
    (the pre-tokenizer name llama.cpp needs) are carried over."""
    if base.lower() in models.DEFAULT_ALIASES:
        return models.default_gguf()
    return Path(base) if base.endswith(".gguf") else None


def _load_back(fmt: str, folder: Path) -> tuple[Any, Any]:
    """The export as a fresh process would load it: plain transformers, no tunesmith code in between."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    if fmt == "merged":
        return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    gguf = next(folder.glob("*.gguf")).name
    with progress.captured_stderr():  # transformers' GGUF reader draws a bar no setting turns off
        return (AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf,
                                                     quantization_config=GgufConfig(dequantize=True)),
                AutoTokenizer.from_pretrained(folder, gguf_file=gguf))


def _set_generation_config(model: Any, tok: Any) -> None:
    """Every end-of-turn id stops generation in a plain `model.generate` of the export (a model that never stops
    is the commonest export complaint)."""
    model.generation_config.eos_token_id = sorted(template.end_of_turn_ids(tok))
    model.generation_config.pad_token_id = tok.pad_token_id


def _training_system(run: rundir.RunDir) -> str | None:
    from tunesmith.chat import training_system_prompt

    return training_system_prompt(run.read_conversations("train"))


def check_prompts(tok: Any, run: rundir.RunDir, settings: TemplateConfig, n: int = CHECK_PROMPTS) -> list[str]:
    """The first `n` held-out prompts of the run, rendered as eval and chat render them (the run's template
    `settings`; a text row's is its first half, as eval's)."""
    convs = run.read_conversations("eval")[:n]
    fitted, _ = template.fit(tok, convs, settings)
    return [template.prompt_text(tok, c)[0] for c in fitted]


def _outputs(model: Any, tok: Any, prompts: Sequence[str]) -> list[tuple[Any, list[int]]]:
    """(last-position-free logits over the prompt, greedy continuation ids) per prompt."""
    import torch

    settings = EvalConfig(max_new_tokens=CHECK_TOKENS)
    out = []
    model.eval()
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0].float().cpu()
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 **generation.generation_kwargs(tok, settings))
        out.append((logits, gen[0, ids.shape[1]:].tolist()))
    return out


def _compare(reference: list[tuple[Any, list[int]]], loaded: Any, loaded_tok: Any, tok: Any,
             prompts: Sequence[str], kind: str) -> ExportCheck:
    """The loaded export against the tuned model in memory, on the same token ids."""
    mine = _outputs(loaded, tok, prompts)  # the reference tokenizer: logits compare position by position
    diff = max(float((a - b).abs().max()) for (a, _), (b, _) in zip(reference, mine))
    same = agree = total = 0
    for (_, a), (_, b) in zip(reference, mine):
        same += a == b
        agree += next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        total += max(len(a), len(b))
    tokenizer_same = all(loaded_tok(p, add_special_tokens=False)["input_ids"]
                         == tok(p, add_special_tokens=False)["input_ids"] for p in prompts)
    template_same = (getattr(loaded_tok, "chat_template", None) or "") == (tok.chat_template or "")
    passed = (diff <= TOLERANCE[kind] and tokenizer_same and template_same
              and (same == len(prompts) or kind not in EXACT))
    return ExportCheck(kind, len(prompts), round(diff, 6), TOLERANCE[kind], same, agree, total, tokenizer_same,
                       template_same, passed)


def _hub_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def check_hub(repo: str) -> None:
    """--push-to-hub needs a token and a reachable hub; said before any work, never printing the token."""
    if "/" not in repo:
        raise TunesmithError(f"--push-to-hub {repo!r} is not a repo id", fix="use OWNER/NAME, e.g. me/my-tuned")
    if not _hub_token():
        raise TunesmithError("--push-to-hub needs a Hugging Face token", fix="set HF_TOKEN or run `hf auth login`")
    if not hub.reachable():
        raise TunesmithError("--push-to-hub: the Hugging Face hub is unreachable from here",
                             fix="export without it, then upload the folder where there is network: "
                                 "hf upload OWNER/NAME FOLDER")


def push(folder: Path, repo: str) -> str:
    """Upload the export folder (manifest included) to a model repo; returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=_hub_token())
    api.create_repo(repo, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                      commit_message="tunesmith export")
    return f"https://huggingface.co/{repo}"
