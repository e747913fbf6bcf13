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


def test_a_folder_with_pickle_weights_only_is_refused_with_the_reason_and_the_conversion(tiny_model_dir: Path,
                                                                                          tmp_path: Path):
    """Safetensors only: a folder of pytorch_model.bin is refused before anything is unpickled, saying why and the
    one line that converts it (the tokenizer-only verbs still read it); a folder with both loads the safetensors."""
    folder = tmp_path / "bin_model"
    folder.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(TunesmithError) as err:
        models.load(str(folder))
    assert "holds its weights as pickle files only (pytorch_model.bin)" in err.value.what
    assert "save_pretrained" in err.value.fix
    assert models.load(str(folder), tokenizer_only=True)[1] is not None
    (folder / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    assert models.load(str(folder))[0] is not None


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


@pytest.mark.parametrize(("content", "want"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "not a GGUF file: it starts with b'\\x89PNG', not b'GGUF'"),
    (b"GGUF\x03\x00\x00\x00garbage", "cannot read this GGUF file: unpack_from requires a buffer")])
def test_a_fake_or_truncated_gguf_is_a_clear_error(tmp_path: Path, content: bytes, want: str):
    fake = tmp_path / "x.gguf"
    fake.write_bytes(content)
    with pytest.raises(TunesmithError) as err:
        models.resolve(str(fake))
    assert str(err.value).startswith(f"{fake}: {want}") and "how to fix: re-download" in str(err.value)


def test_a_model_folder_without_tokenizer_files_lists_what_it_has(tiny_model_dir: Path, tmp_path: Path):
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, bare / name)
    with pytest.raises(TunesmithError) as err:
        models.load(str(bare), tokenizer_only=True)
    text = str(err.value)
    assert text.startswith(f"{bare}: cannot load the tokenizer of model '{bare}': the folder has no tokenizer "
                           "files (looked for tokenizer.json, tokenizer.model, vocab.json, merges.txt, ")
    assert "  - the folder holds: config.json, model.safetensors" in text
    assert "how to fix: save the tokenizer next to the weights" in text and "from one of: \n" not in text


def test_the_alternatives_name_the_models_this_machine_has(tiny_model_dir: Path, smol_dir: Path):
    with pytest.raises(TunesmithError) as err:
        models.load("nobody-owns-this/model-that-does-not-exist")
    assert "models on this machine: " in str(err.value) and str(smol_dir) in str(err.value)


def test_lora_targets_are_checked_against_the_model(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    from tunesmith.config import LoraConfig

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    models.check_target_modules(model, LoraConfig(target_modules=["q_proj", "v_proj"]))
    models.check_target_modules(model, LoraConfig(target_modules="all-linear"))
    models.check_target_modules(model, LoraConfig(target_modules=r".*\.(q|v)_proj"))
    with pytest.raises(TunesmithError) as err:
        models.check_target_modules(model, LoraConfig(target_modules=["q_proj", "v_prj", "c_attn"]))
    text = str(err.value)
    assert text.startswith("lora.target_modules: target modules not in the model\n"
                           '  - "v_prj" matches no module of the model (did you mean "v_proj"?)\n'
                           '  - "c_attn" matches no module of the model')
    assert "use names this model has: down_proj, embed_tokens, gate_proj, k_proj, lm_head, o_proj" in text
    with pytest.raises(TunesmithError, match="the pattern 'q_proj' matches no module"):
        models.check_target_modules(model, LoraConfig(target_modules="q_proj"))


def test_models_for_inference_run_in_the_eval_precision(tiny_model_dir: Path):
    import torch

    from tunesmith.runtime import choose_precision

    model, tok = models.load(str(tiny_model_dir))
    assert models.for_inference(model, "fp32") == "fp32" and model.dtype == torch.float32
    ids = tok("hello there", return_tensors="pt")
    want = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert models.for_inference(model, "bf16") == "bf16"
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    got = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert got.shape == want.shape  # it still generates; the tokens may differ from fp32's (greedy near-ties)
    assert models.for_inference(model, "auto") == choose_precision("auto")


def test_a_gguf_plans_and_tokenizes_without_being_converted(smol_dir: Path, tmp_path: Path, monkeypatch):
    # Config and tokenizer come from a weightless folder made from the file; the weights convert only when loaded.
    monkeypatch.setenv("TUNESMITH_HOME", str(tmp_path / "home"))
    gguf = str(models.default_gguf())
    _, tok = models.load(gguf, tokenizer_only=True)
    arch = models.model_config(gguf)
    made = sorted(p.name for p in (tmp_path / "home" / "models").iterdir())
    assert len(made) == 1 and made[0].endswith(".light")  # no converted folder, no weights
    assert not any(p.suffix == ".safetensors" for p in (tmp_path / "home").rglob("*"))
    _, converted = models.load(str(smol_dir), tokenizer_only=True)  # the same file, converted (the session's)
    text = "Hello, 안녕하세요 <|im_start|>user\nhi<|im_end|>"
    assert tok(text).input_ids == converted(text).input_ids
    assert tok.chat_template == converted.chat_template
    assert (arch.model_type, arch.hidden_size, arch.num_hidden_layers) == ("llama", 576, 30)
    assert models.location(gguf).startswith(str(tmp_path / "home" / "models"))  # where it will convert to
    assert not any(p.suffix == ".safetensors" for p in (tmp_path / "home").rglob("*"))
