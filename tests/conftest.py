"""Hermetic fixtures: the cache and run folders live in tmp dirs; models are real, tiny ones built from config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "sample_data"
REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture(scope="session")
def tunesmith_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tunesmith_home")


@pytest.fixture(autouse=True)
def _hermetic(tunesmith_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNESMITH_HOME", str(tunesmith_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing loads from the hub at run time
    monkeypatch.chdir(tmp_path)  # runs/ (and anything a library drops in the cwd) lands in tmp


@pytest.fixture(scope="session")
def smol_dir(tunesmith_home: Path) -> Path:
    """The embedded SmolLM2-135M-Instruct, converted once per session into the tmp TUNESMITH_HOME."""
    import os

    from tunesmith import models

    old = os.environ.get("TUNESMITH_HOME")
    os.environ["TUNESMITH_HOME"] = str(tunesmith_home)
    try:
        return Path(models.resolve("default"))
    finally:
        if old is None:
            os.environ.pop("TUNESMITH_HOME")
        else:
            os.environ["TUNESMITH_HOME"] = old


@pytest.fixture(scope="session")
def smol_tokenizer(smol_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(smol_dir: Path, smol_tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (hidden 64) with the embedded tokenizer and chat template: trains in seconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True,
                      bos_token_id=smol_tokenizer.bos_token_id, eos_token_id=smol_tokenizer.eos_token_id,
                      pad_token_id=smol_tokenizer.pad_token_id)
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    smol_tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def small_jsonl(tmp_path: Path) -> Path:
    """16 messages rows taken from the bundled English sample data."""
    lines = (SAMPLE / "counsel_en.jsonl").read_text(encoding="utf-8").splitlines()[:16]
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path
