"""tunesmith export on a real tiny run: merged, GGUF (F16, Q8_0) and Ollama, each loaded back and compared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import fails, tunesmith
from tests.fixtures import templates
from tunesmith import export, ollama
from tunesmith.export import ExportResult
from tunesmith.errors import TunesmithError

GOLDEN = Path(__file__).parent / "fixtures" / "Modelfile.smollm2"


@pytest.fixture(scope="module")
def exports(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExportResult]:
    out = tmp_path_factory.mktemp("exports")
    said: list[str] = []
    done = {"merged": export.export(tiny_run, out / "merged", fmt="merged", say=said.append)}
    # Each stage says itself, numbered, with the time so far (one line each, no third-party bars).
    assert [line.split(" (")[0].split(" ...")[0] for line in said if line.startswith("export [")] == [
        "export [1/5] loading the tuned model", "export [2/5] answering 3 check prompts with it",
        "export [3/5] merging the adapter into the base weights", "export [4/5] writing merged",
        "export [5/5] loading it back and comparing its answers with the tuned model's"]
    for quant in ("f16", "q8_0"):
        done[quant] = export.export(tiny_run, out / quant, fmt="gguf", quant=quant, say=lambda _: None)
    return done


def test_every_export_passes_its_reload_check_and_writes_it_down(exports):
    for kind, result in exports.items():
        check = result.check
        assert check.passed and check.prompts == export.CHECK_PROMPTS, check
        assert check.max_logit_diff <= export.TOLERANCE[kind] and check.same_tokenizer and check.same_template
        manifest = json.loads((Path(result.path) / export.MANIFEST).read_text())
        assert ExportResult.from_json(manifest) == result
    assert exports["merged"].check.max_logit_diff < 1e-3
    assert exports["f16"].check.identical_generations == export.CHECK_PROMPTS  # exact formats: same greedy text
    assert exports["q8_0"].check.max_logit_diff > exports["f16"].check.max_logit_diff  # 8 bits lose more


def test_the_merged_export_loads_and_stops_with_plain_transformers(exports, tiny_run):
    # A fresh interpreter with transformers alone: the chat template and end-of-turn stop travel with the folder.
    code = (
        "import sys, json; from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "m = AutoModelForCausalLM.from_pretrained(sys.argv[1]); t = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "ids = t.apply_chat_template([{'role': 'user', 'content': 'hi'}], add_generation_prompt=True,"
        " return_tensors='pt', return_dict=True)\n"
        "print(json.dumps({'eos': m.generation_config.eos_token_id, 'im_end': t.convert_tokens_to_ids('<|im_end|>'),"
        " 'template': t.chat_template, 'n': int(m.generate(**ids, max_new_tokens=4).shape[1])}))")
    res = subprocess.run([sys.executable, "-c", code, exports["merged"].path], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.splitlines()[-1])
    assert got["im_end"] in got["eos"] and got["n"] > 0
    assert got["template"] == (tiny_run / "adapter" / "chat_template.jinja").read_text()


def test_the_gguf_vocabulary_is_the_one_llama_cpp_was_given_for_smollm2(exports, smol_dir):
    import gguf

    from tunesmith import models

    mine = gguf.GGUFReader(next(Path(exports["f16"].path).glob("*.gguf")))
    original = gguf.GGUFReader(models.default_gguf())
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        assert mine.fields[key].contents() == original.fields[key].contents(), key
    # the tiny run's base is a folder, not the GGUF: llama.cpp's pre-tokenizer name is unknown, so "default"
    assert mine.fields["tokenizer.ggml.pre"].contents() == "default"
    names = {t.name for t in mine.tensors}
    assert "blk.1.attn_q.weight" in names and "output.weight" not in names  # tied head: llama.cpp reuses embd
    types = {t.name: t.tensor_type.name for t in mine.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.ffn_up.weight"] == "F16"


def test_the_ollama_modelfile_matches_the_golden_file(tiny_run, tmp_path):
    result = export.export(tiny_run, tmp_path / "ollama", fmt="ollama", quant="q8_0", say=lambda _: None)
    assert "Modelfile" in result.files and result.check.passed
    # the manifest lists what --out holds: the work folder's in-progress marker was listed too
    assert sorted(result.files) == sorted(p.name for p in Path(result.path).iterdir() if p.name != export.MANIFEST)
    text = (Path(result.path) / "Modelfile").read_text()
    assert text == GOLDEN.read_text(), text


@pytest.mark.parametrize(("jinja", "family"), [(templates.LLAMA3, "llama3"), (templates.GEMMA, "gemma"),
                                               (templates.CHATML_MARKED, "chatml")])
def test_ollama_families_are_recognised_by_what_the_template_renders(smol_tokenizer, jinja, family):
    import copy

    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = jinja
    assert ollama.family_of(tok) == (family, None)
    if family == "gemma":  # no system role: no SYSTEM line, a comment instead
        assert "SYSTEM" not in ollama.modelfile(tok, "m.gguf", "Be kind.")
    else:
        assert 'SYSTEM """Be kind."""' in ollama.modelfile(tok, "m.gguf", "Be kind.")


def test_an_unknown_template_family_is_refused_with_a_way_out(smol_tokenizer):
    import copy

    from tunesmith.template import PLAIN_TEMPLATE

    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = PLAIN_TEMPLATE
    with pytest.raises(TunesmithError, match="no Ollama TEMPLATE") as err:
        ollama.modelfile(tok, "m.gguf", None)
    assert "--format gguf" in err.value.fix


def test_export_refuses_bad_options_and_foreign_folders(tiny_run, tmp_path):
    fails(tunesmith("export", str(tiny_run), "--out", str(tmp_path / "x"), "--format", "onnx"), "onnx", "merged")
    fails(tunesmith("export", str(tiny_run), "--out", str(tmp_path / "x"), "--format", "gguf", "--quant", "q3_k"),
          "q3_k", "q8_0")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    fails(tunesmith("export", str(tiny_run), "--out", str(mine), "--overwrite"), "not an earlier tunesmith export")
    assert (mine / "notes.txt").read_text() == "keep me"
    fails(tunesmith("export", str(tiny_run), "--out", str(tmp_path / "y"), "--push-to-hub", "me/x",
                    env={**{k: v for k, v in os.environ.items() if "TOKEN" not in k}, "HF_HOME": str(tmp_path)}),
          "Hugging Face token")
    assert not (tmp_path / "y").exists()


def test_out_is_checked_before_anything_loads(tiny_run, tmp_path, monkeypatch):
    from tunesmith import models

    monkeypatch.setattr(models, "load_run_weights", lambda *_: pytest.fail("loaded before --out was checked"))
    afile = tmp_path / "afile.txt"
    afile.write_text("x", encoding="utf-8")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for out, says in ((afile, "is a file"), (tmp_path / "link", "symbolic link"),
                      (Path("/proc/self/x"), "special filesystem"), (afile / "below", "not a folder")):
        with pytest.raises(TunesmithError, match=says):
            export.export(tiny_run, out, overwrite=True, say=lambda _: None)
    assert afile.read_text(encoding="utf-8") == "x" and (tmp_path / "link").is_symlink()


def test_overwrite_replaces_only_an_earlier_exports_own_files(tiny_run, tmp_path):
    out = tmp_path / "merged"
    export.export(tiny_run, out, fmt="merged", say=lambda _: None)
    (out / "my_notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(TunesmithError, match="my_notes.txt"):
        export.export(tiny_run, out, fmt="merged", overwrite=True, say=lambda _: None)
    assert (out / "my_notes.txt").read_text(encoding="utf-8") == "mine" and (out / export.MANIFEST).is_file()
    (out / "my_notes.txt").unlink()
    assert export.export(tiny_run, out, fmt="merged", overwrite=True, say=lambda _: None).check.passed


def test_a_killed_exports_hidden_work_folder_is_removed_by_the_next(tiny_run, tmp_path):
    """SIGKILL while the export is being loaded back (its files written, not yet renamed to --out): the next
    export removes the hidden folder; one of a live process, and one that is not ours, are left alone."""
    import signal
    import time

    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; "
                              "from tunesmith import export; "
                              "export.export(Path(sys.argv[1]), Path(sys.argv[2]), say=lambda _: None)",
                              str(tiny_run), str(out)])
    deadline = time.time() + 300
    while not list(tmp_path.glob(".out-*/model.safetensors")) and time.time() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    (stale,) = tmp_path.glob(".out-*")
    assert (stale / export.TMP_MARKER).is_file() and not out.exists()
    live = tmp_path / ".out-live"
    live.mkdir()
    (live / export.TMP_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
    foreign = tmp_path / ".out-mine"
    foreign.mkdir()
    export.export(tiny_run, out, say=lambda _: None)
    assert not stale.exists() and live.is_dir() and foreign.is_dir() and (out / export.MANIFEST).is_file()
    assert not (out / export.TMP_MARKER).exists()


def test_a_k_quant_without_llama_cpp_says_how_to_get_it_before_loading(tiny_run, tmp_path, monkeypatch):
    """q4_k_m and the other K-quants come from llama.cpp's quantizer: without llama-cpp-python the export stops
    before any weights load, naming `make llama-cpp` and the quantisations that need nothing more."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    monkeypatch.setattr(export.models, "load_run_weights", lambda *a, **k: pytest.fail("loaded the weights"))
    with pytest.raises(TunesmithError) as err:
        export.export(tiny_run, tmp_path / "q", fmt="ollama", quant="q4_k_m", say=lambda _: None)
    assert "llama.cpp's own quantizer" in err.value.what and err.value.fix.startswith("make llama-cpp")
    assert not (tmp_path / "q").exists()


def test_a_k_quant_is_quantised_by_llama_cpp_and_passes_the_reload_check(tiny_run, tmp_path):
    """With llama-cpp-python (opt-in: `make llama-cpp`), --quant q4_k_m writes the F16 GGUF, has llama.cpp
    quantise it, leaves only the quantised file, and loads it back through transformers for the check."""
    pytest.importorskip("llama_cpp", reason="make llama-cpp (compiles llama.cpp) to run this check")
    import gguf

    done = export.export(tiny_run, tmp_path / "q", fmt="gguf", quant="q4_k_m", say=lambda _: None)
    assert done.check.passed and sorted(p.name for p in (tmp_path / "q").iterdir()) == [
        "model-q4_k_m.gguf", export.MANIFEST]
    kinds = {t.tensor_type.name for t in gguf.GGUFReader(tmp_path / "q" / "model-q4_k_m.gguf").tensors}
    assert kinds - {"F32", "F16"}, kinds  # quantised tensors, not F16 copies


@pytest.fixture(scope="module")
def smol_exports(smol_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ExportResult]]:
    """A 2-step run on the embedded SmolLM2-135M and its F16 GGUF export (Q8_0's path runs on the tiny model
    above: quantising 135M weights in Python cost the suite a minute; docs/export.md has SmolLM2's Q8_0 figures)."""
    from tests.conftest import SAMPLE, tiny_config
    from tunesmith import pipeline

    home = tmp_path_factory.mktemp("smol")
    data = home / "rows.jsonl"
    data.write_text("\n".join((SAMPLE / "counsel_en.jsonl").read_text(encoding="utf-8").splitlines()[:24]) + "\n")
    cfg = tiny_config(Path("default"), data, home / "runs", train={
        "max_steps": 2, "batch_size": 4, "learning_rate": 2e-4, "eval_strategy": "steps", "eval_steps": 2,
        "report_to": []})
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"max_rows": 2, "embedder": "none"})})
    run = pipeline.run(cfg, say=lambda _: None).run_dir
    return run, {q: export.export(run, home / q, fmt="gguf", quant=q, say=lambda _: None) for q in ("f16",)}


@pytest.mark.slow
def test_the_default_model_round_trips_through_gguf(smol_exports):
    import gguf

    from tunesmith import models

    _, done = smol_exports
    f16 = done["f16"].check
    assert f16.passed and f16.identical_generations == f16.prompts and f16.max_logit_diff < 0.1, f16
    mine = gguf.GGUFReader(next(Path(done["f16"].path).glob("*.gguf")))
    assert mine.fields["tokenizer.ggml.pre"].contents() == gguf.GGUFReader(
        models.default_gguf()).fields["tokenizer.ggml.pre"].contents() == "smollm"


@pytest.mark.slow
def test_llama_cpp_runs_the_exported_gguf_like_transformers(smol_exports):
    """llama.cpp is the GGUF's real consumer (opt-in: `make llama-cpp` compiles it): the same prompt tokens, its
    chat template from the file, greedy text equal to transformers' (24 tokens: f16 arithmetic may flip a near-tie
    later; the demo run's 5 answers of up to 144 tokens were identical, docs/export.md), and both stop at the
    end-of-turn token on a question with a one-word answer."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="make llama-cpp (compiles llama.cpp) to run this check")
    from tunesmith import chat

    run, done = smol_exports
    llm = llama_cpp.Llama(model_path=str(next(Path(done["f16"].path).glob("*.gguf"))), n_ctx=1024, n_threads=2,
                          seed=0, verbose=False)
    for user, tokens in (("I keep putting off my thesis and feel awful about it.", 24),
                         ("Answer with one word, yes or no: is the sky blue?", 32)):
        session = chat.open_session(str(run), options={"max_new_tokens": tokens}, say=lambda _: None)
        prompt = session.prompt(user)
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == \
            session.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        theirs = llm.create_chat_completion(messages=[{"role": "user", "content": user}], max_tokens=tokens,
                                            temperature=0.0)["choices"][0]
        mine = chat.respond(session, user)
        assert theirs["message"]["content"].strip() == mine.text
        assert (theirs["finish_reason"] == "stop") == mine.stopped
    assert mine.stopped and len(mine.text.split()) <= 3, mine  # the one-word answer ended by itself


def test_the_check_prompts_of_a_text_or_segments_run_are_its_eval_prompts(smol_tokenizer, tmp_path):
    """A run trained on plain text or on segments rows has no chat rows: its check prompts are eval's prompts for
    them (was: none, and export of a .txt run died on max() of an empty list)."""
    from tunesmith import rundir
    from tunesmith.config import TemplateConfig
    from tunesmith.records import Conversation, Message

    run = rundir.RunDir(tmp_path / "run")
    run.train_data.parent.mkdir(parents=True)
    text = Conversation((Message("text", "one two three four"),), "t.txt:1")
    seg = Conversation((Message("segment", "Q: hi\n", False), Message("segment", "A: hello<|im_end|>")), "s.jsonl:1")
    run.write_conversations("eval", [text, seg])
    assert export.check_prompts(smol_tokenizer, run, TemplateConfig()) == ["one two", "Q: hi\n"]
