from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith import models
from tunesmith.errors import TunesmithError


def test_default_model_is_converted_once_into_a_safetensors_folder(smol_dir: Path, tunesmith_home: Path):
    assert smol_dir.parent.parent == tunesmith_home
    names = {p.name for p in smol_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert not any(n.endswith((".bin", ".pt", ".gguf")) for n in names)
    assert models.resolve("smollm2-135m-instruct") == str(smol_dir) == models.resolve("default")


def test_converted_default_model_chats_coherently(smol_dir: Path):
    model, tok = models.load(str(smol_dir))
    assert not getattr(model, "is_quantized", False)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1]:])


@pytest.mark.parametrize("spec, message", [
    ("./no/such/folder", "not a model folder or a .gguf file"),
    ("missing.gguf", "GGUF file missing.gguf not found"),
])
def test_bad_model_paths_are_clear_errors(spec: str, message: str):
    with pytest.raises(TunesmithError, match=message):
        models.resolve(spec)


def test_folder_without_config_is_a_clear_error(tmp_path: Path):
    with pytest.raises(TunesmithError, match="without config.json"):
        models.resolve(str(tmp_path))


def test_unreachable_hub_id_names_the_alternatives():
    with pytest.raises(TunesmithError) as err:
        models.load("nobody-owns-this/model-that-does-not-exist")
    assert "--model default" in str(err.value)


def test_hub_id_loads_from_the_hf_cache(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import shutil

    # The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/...}
    repo = tmp_path / "hub" / "models--someone--tiny-llama"
    rev = "0" * 40
    shutil.copytree(tiny_model_dir, repo / "snapshots" / rev)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read at import; env is too late
    model, tok = models.load("someone/tiny-llama")
    assert model.config.num_hidden_layers == 2 and tok.chat_template
