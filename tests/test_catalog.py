"""`tunesmith models` on a Hugging Face cache, an Ollama store and an LM Studio folder built in a temp dir from
real model files (the tiny test model, the embedded GGUF), and `--model` taking an Ollama name."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from tests.conftest import tunesmith
from tunesmith import models


def fake_stores(tmp: Path, tiny_model_dir: Path) -> dict[str, str]:
    """HF cache with one model, Ollama with one library model, LM Studio with one GGUF and an mmproj file."""
    snapshot = tmp / "hf" / "models--tiny-org--tiny-llama" / "snapshots" / "abc123"
    shutil.copytree(tiny_model_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")  # the hub writes the snapshot's commit here
    (tmp / "hf" / "models--tiny-org--tokenizer-only" / "snapshots" / "x").mkdir(parents=True)  # no config.json
    gguf = models.default_gguf()
    digest = hashlib.sha256(str(gguf).encode()).hexdigest()  # any hex name: Ollama's is the blob's sha256
    blobs = tmp / "ollama" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"sha256-{digest}").symlink_to(gguf)
    manifest = tmp / "ollama" / "manifests" / "registry.ollama.ai" / "library" / "smol" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:00"},
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}]}))
    lm = tmp / "home" / ".lmstudio" / "models" / "pub" / "smol-GGUF"
    lm.mkdir(parents=True)
    (lm / "smol.Q4_1.gguf").symlink_to(gguf)
    (lm / "mmproj-smol.gguf").write_bytes(b"GGUF")
    return {**os.environ, "HF_HUB_CACHE": str(tmp / "hf"), "OLLAMA_MODELS": str(tmp / "ollama"),
            "HOME": str(tmp / "home")}


def test_models_lists_each_store_with_what_training_needs(tmp_path: Path, tiny_model_dir: Path, small_jsonl: Path):
    env = fake_stores(tmp_path, tiny_model_dir)
    res = tunesmith("models", "--json", "--data", str(small_jsonl), env=env)
    assert res.returncode == 0, res.stderr
    found = {m["name"]: m for m in json.loads(res.stdout)["models"]}
    lm_file = str(tmp_path / "home" / ".lmstudio" / "models" / "pub" / "smol-GGUF" / "smol.Q4_1.gguf")
    assert set(found) == {"default", "tiny-org/tiny-llama", "smol:latest", lm_file}
    assert [found[n]["store"] for n in ("default", "tiny-org/tiny-llama", "smol:latest", lm_file)] == [
        "tunesmith", "hf-cache", "ollama", "lm-studio"]
    for name in ("default", "smol:latest", lm_file):  # the embedded GGUF, read three ways
        m = found[name]
        assert (m["architecture"], m["parameters"], m["context"], m["chat_template"], m["trainable"]) == (
            "llama", 134_515_008, 8192, True, True)
        assert 1.5 < m["korean_tokens_per_char"] < 3  # SmolLM2 spends ~2 byte-level tokens per Hangul syllable
    tiny = found["tiny-org/tiny-llama"]
    assert tiny["architecture"] == "llama" and tiny["trainable"] and tiny["parameters"] > 0
    assert tiny["path"].endswith("snapshots/abc123")
    # With a data file: the plan's own estimate for each trainable model, as `tunesmith plan` computes it.
    fits = [m["fit"] for m in found.values()]
    assert all(re.fullmatch(r"~\d+\.\d GiB of \d+\.\d GiB, ~\S+( \S+)? \(\d+ rows, \d+ steps\)", f) for f in fits), fits
    assert len({f.split(" (")[1] for f in fits}) == 1  # the same rows and steps, whichever the model


def test_an_ollama_name_is_a_model_spec(tmp_path: Path, tiny_model_dir: Path, monkeypatch):
    env = fake_stores(tmp_path, tiny_model_dir)
    monkeypatch.setenv("OLLAMA_MODELS", env["OLLAMA_MODELS"])
    folder = Path(models.resolve("smol"))  # :latest by default, as Ollama does
    assert folder.name.startswith("ollama-smol_latest-") and (folder / "model.safetensors").is_file()
    assert models.resolve("smol:latest") == str(folder)


def test_a_gguf_transformers_cannot_read_is_listed_with_its_architecture_and_why(tmp_path: Path):
    from gguf import GGUFWriter

    from tunesmith import catalog
    from tunesmith.stores import StoredModel

    path = tmp_path / "rwkv.gguf"
    writer = GGUFWriter(str(path), "rwkv6")
    writer.add_context_length(4096)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = catalog.describe(StoredModel(str(path), "folder", path, path.stat().st_size))
    assert (info.architecture, info.parameters, info.context, info.chat_template) == ("rwkv6", 32, 4096, False)
    assert info.not_trainable.startswith("transformers cannot read 'rwkv6' GGUF files (it reads ")
    assert "llama" in info.not_trainable and info.korean_tokens_per_char is None
    assert catalog.lines([info])[2] == "  not trainable: " + info.not_trainable
