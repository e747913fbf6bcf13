"""Write a Llama-architecture transformers model as one GGUF file with the `gguf` package.

What llama.cpp's convert_hf_to_gguf.py does for LlamaForCausalLM, for the part tunesmith exports: hyperparameters,
tensors renamed by gguf's TensorNameMap, q/k projection rows permuted from Hugging Face's rotary layout
(halves) into llama.cpp's (interleaved pairs), 1-D tensors (norms) kept F32, the BPE tokenizer (tokens, token
types, merges, special ids via gguf.SpecialVocab) and the chat template. Tensors whose rows do not split into
quantisation blocks fall back to F16, as llama.cpp's converter does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunesmith import template
from tunesmith.errors import TunesmithError

ARCHITECTURES = ("LlamaForCausalLM",)


def write(model: Any, tok: Any, path: Path, quant: str, *, source_gguf: Path | None = None) -> list[str]:
    """Write `model` (merged, unquantised) and `tok` to `path`; returns notices for the user."""
    import gguf

    arch = model.config
    if getattr(arch, "architectures", None) and arch.architectures[0] not in ARCHITECTURES:
        raise TunesmithError(f"GGUF export supports {', '.join(ARCHITECTURES)}; this model is "
                             f"{arch.architectures[0]}", fix="use --format merged (llama.cpp's own "
                             "convert_hf_to_gguf.py reads that folder)")
    if _rope_scaling(arch):
        raise TunesmithError(f"GGUF export of rope scaling {_rope_scaling(arch)!r} is not supported",
                             fix="use --format merged and llama.cpp's convert_hf_to_gguf.py")
    writer = gguf.GGUFWriter(str(path), "llama")
    _hyperparameters(writer, arch, quant)
    notices = _tokenizer(writer, tok, arch, source_gguf)
    kept_f16 = 0
    for name, data, qtype in _tensors(model, quant):
        writer.add_tensor(name, data, raw_dtype=qtype)
        kept_f16 += quant not in ("f32", "f16") and qtype == gguf.GGMLQuantizationType.F16
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if kept_f16:
        notices.append(f"{kept_f16} tensors kept in F16: their rows do not split into {quant} blocks")
    return notices


def _rope_scaling(arch: Any) -> Any:
    scaling = getattr(arch, "rope_scaling", None) or {}
    kind = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else None
    return None if kind in (None, "default") else kind


# llama.cpp's K-quants (its quantizer; gguf-py only reads them): --quant -> llama.cpp's file type name
LLAMA_QUANTS = {"q6_k": "Q6_K", "q5_k_m": "Q5_K_M", "q5_k_s": "Q5_K_S", "q4_k_m": "Q4_K_M", "q4_k_s": "Q4_K_S",
                "q3_k_m": "Q3_K_M", "q2_k": "Q2_K"}


def check_llama_quantizer(quant: str) -> None:
    """A K-quant needs llama.cpp's quantizer (llama-cpp-python): said before any weights load."""
    import importlib.util

    if quant in LLAMA_QUANTS and importlib.util.find_spec("llama_cpp") is None:
        raise TunesmithError(f"--quant {quant} is made by llama.cpp's own quantizer, and llama-cpp-python is not "
                             "installed", fix="make llama-cpp (compiles it once, minutes), or use --quant q8_0 or "
                                              "q4_0 (quantised here in Python)")


def quantize(source: Path, path: Path, quant: str, threads: int = 0) -> list[str]:
    """llama.cpp's llama_model_quantize: the F16 GGUF `source` into `path` as the K-quant `quant` (what
    `llama-quantize source path Q4_K_M` does; tensors whose rows do not split into 256-value blocks get its
    fallback type). Its log (a line per tensor) is kept off the console; returns the notices worth a line."""
    import ctypes
    import re

    import llama_cpp

    from tunesmith.progress import captured_stderr

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{LLAMA_QUANTS[quant]}")
    params.nthread = threads
    with captured_stderr() as log:
        failed = llama_cpp.llama_model_quantize(str(source).encode(), str(path).encode(), ctypes.byref(params))
        said = log()
    if failed:
        raise TunesmithError(f"llama.cpp could not quantise the export to {quant}", where=str(path),
                             problems=said.strip().splitlines()[-5:], fix="use --quant q8_0 or f16")
    fallback = re.search(r"(\d+) of (\d+) tensor\(s\) required fallback quantization", said)
    return [f"{fallback[1]} of {fallback[2]} tensors are not {quant} but llama.cpp's fallback for it (their rows "
            "do not split into its 256-value blocks)"] if fallback else []


def _hyperparameters(writer: Any, arch: Any, quant: str) -> None:
    import gguf

    heads = arch.num_attention_heads
    head_dim = getattr(arch, "head_dim", None) or arch.hidden_size // heads
    writer.add_name(getattr(arch, "_name_or_path", "") or "tunesmith export")
    writer.add_context_length(arch.max_position_embeddings)
    writer.add_embedding_length(arch.hidden_size)
    writer.add_block_count(arch.num_hidden_layers)
    writer.add_feed_forward_length(arch.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(arch, "num_key_value_heads", None) or heads)
    writer.add_rope_freq_base(float(_rope_theta(arch)))
    writer.add_layer_norm_rms_eps(float(arch.rms_norm_eps))
    writer.add_vocab_size(arch.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                          "q5_1": gguf.LlamaFileType.MOSTLY_Q5_1, "q5_0": gguf.LlamaFileType.MOSTLY_Q5_0,
                          "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[quant])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _rope_theta(arch: Any) -> float:
    theta = getattr(arch, "rope_theta", None)
    if theta is None:  # transformers 5 keeps it in rope_parameters
        theta = (getattr(arch, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    return theta


def _tensors(model: Any, quant: str) -> Iterator[tuple[str, Any, Any]]:
    """(GGUF name, data, GGML type) for every tensor; the tied output head is left out (llama.cpp reuses the
    embeddings when output.weight is missing)."""
    import gguf
    import numpy as np

    arch = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, arch.num_hidden_layers)
    heads, kv = arch.num_attention_heads, getattr(arch, "num_key_value_heads", None) or arch.num_attention_heads
    qtype = getattr(gguf.GGMLQuantizationType, quant.upper())
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and getattr(arch, "tie_word_embeddings", False):
            continue
        if "rotary_emb" in hf_name:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise TunesmithError(f"no GGUF name for tensor {hf_name}", fix="use --format merged")
        data = tensor.detach().float().cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, kv)
        if data.ndim == 1:
            yield name, data.astype(np.float32), gguf.GGMLQuantizationType.F32
            continue
        kind = qtype
        block = gguf.GGML_QUANT_SIZES[kind][0]
        if data.shape[-1] % block:
            kind = gguf.GGMLQuantizationType.F16
        yield name, gguf.quants.quantize(data, kind), kind


def _permute(weights: Any, heads: int) -> Any:
    """Hugging Face's q/k rows (per head: first halves, then second halves of the rotary pairs) into llama.cpp's
    order (pairs interleaved), as convert_hf_to_gguf.LlamaModel.permute; transformers reverses it on load."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tokenizer(writer: Any, tok: Any, arch: Any, source_gguf: Path | None) -> list[str]:
    """The BPE vocabulary as llama.cpp's converter writes it (gpt2 model), special ids and merges through
    gguf.SpecialVocab, and the chat template the run trained with."""
    import gguf

    if not getattr(tok, "is_fast", False) or tok.backend_tokenizer.model.__class__.__name__ != "BPE":
        raise TunesmithError("GGUF export supports byte-level BPE tokenizers (GPT-2 style: SmolLM2, Llama 3, "
                             "Qwen); this one is not", fix="use --format merged")
    tokens, types = _vocabulary(tok, arch.vocab_size)
    pre, notices = _pre_tokenizer(source_gguf)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as folder:
        tok.save_pretrained(folder)  # SpecialVocab reads merges and special ids from tokenizer files
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    if tok.eos_token_id is None:  # then the first end-of-turn token ends generation in llama.cpp
        special.special_token_ids["eos"] = sorted(template.end_of_turn_ids(tok))[0]
    special.chat_template = tok.chat_template or None  # the template the run trained with (saved with it)
    special.add_to_gguf(writer, quiet=True)
    return notices


def _vocabulary(tok: Any, size: int) -> tuple[list[str], list[int]]:
    import gguf

    kinds = gguf.TokenType
    reverse = {i: t for t, i in tok.get_vocab().items()}
    added = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(max(size, len(reverse))):
        token = reverse.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(kinds.UNUSED)
        elif i in added:
            tokens.append(token)
            types.append(kinds.CONTROL if added[i].special else kinds.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(kinds.NORMAL)
    return tokens, types


def _pre_tokenizer(source_gguf: Path | None) -> tuple[str, list[str]]:
    """llama.cpp picks its pre-tokenizer regex by name: taken from the GGUF the base came from, else default."""
    if source_gguf is not None:
        import gguf

        field = gguf.GGUFReader(source_gguf).fields.get("tokenizer.ggml.pre")
        if field is not None:
            return str(field.contents()), []
    return "default", ["GGUF tokenizer.ggml.pre is 'default' (GPT-2 splitting): llama.cpp may split some text "
                       "differently from the Hugging Face tokenizer; check the export with llama.cpp"]
