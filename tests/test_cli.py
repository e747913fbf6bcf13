"""End-to-end through the real CLI (a subprocess, as a user runs it) on a tiny real model and 16 rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tunesmith, write_config  # noqa: F401  (also imported from here by older test modules)

RUN_FILES = {".tunesmith-run", ".lock", "config.yaml", "manifest.json", "metrics.jsonl", "plan.json", "report.html", "report.md",
             "report_curves.png", "data/train.jsonl", "data/eval.jsonl", "data/summary.json", "eval/base.jsonl",
             "eval/tuned.jsonl", "eval/settings.json", "eval/summary.json", "adapter/adapter_config.json",
             "adapter/adapter_model.safetensors", "adapter/tokenizer.json", "adapter/tokenizer_config.json",
             "adapter/chat_template.jinja", "adapter/README.md"}


def test_train_end_to_end_writes_the_run_folder(tmp_path: Path, tiny_model_dir: Path, small_jsonl: Path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cfg = write_config(tmp_path, tiny_model_dir, small_jsonl)
    res = tunesmith("train", str(cfg), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "runs" / "tiny"
    files = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
    assert files == RUN_FILES
    assert "report: runs/tiny/report.html" in res.stdout and "eval loss" in res.stdout
    assert "tuned − base (95% CI)" in res.stdout and "stopped by itself" in res.stdout

    # LoRA B matrices start at zero: any non-zero B means training changed the adapter.
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    PeftModel.from_pretrained(base, run / "adapter")  # loads as a real PEFT adapter

    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if "eval_loss" in m]
    trains = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in evals] == [0, 3, 6] and all(m["eval_loss"] > 0 for m in evals)
    assert [m["step"] for m in trains] == [2, 4, 6]
    assert all(m["tokens_per_s"] > 0 and m["learning_rate"] is not None for m in trains)

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seed"] == 42 and list(manifest["data_files"]) == [str(small_jsonl)]
    assert len(manifest["data_files"][str(small_jsonl)]) == 64 and manifest["packages"]["trl"]
    n_train = len((run / "data" / "train.jsonl").read_text().splitlines())
    n_eval = len((run / "data" / "eval.jsonl").read_text().splitlines())
    assert (n_train, n_eval) == (12, 4)
    before = [json.loads(x) for x in (run / "eval" / "base.jsonl").read_text().splitlines()]
    assert len(before) == 4 and set(before[0]) == {"source", "prompt", "reference", "generation", "stopped"}
    report = (run / "report.html").read_text()
    assert "data:image/png;base64," in report and "chrF (main)" in report

    again = tunesmith("train", str(cfg), cwd=tmp_path)
    assert again.returncode == 2 and "holds a finished run" in again.stderr and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize("extra, expected", [
    ("lora_rank: 4", 'unknown key "lora_rank"'),
    ("train: {epoch: 1}", 'did you mean "epochs"'),
])
def test_bad_config_exits_2_without_traceback(tmp_path: Path, small_jsonl: Path, extra: str, expected: str):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"name: bad\ndata: {{train: [{small_jsonl}]}}\n{extra}\n")
    res = tunesmith("train", str(cfg), cwd=tmp_path)
    assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr


def test_missing_data_file_exits_2(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: c\ndata: {train: [nowhere.jsonl]}\n")
    res = tunesmith("train", str(cfg), cwd=tmp_path)
    assert res.returncode == 2 and "nowhere.jsonl not found" in res.stderr and "Traceback" not in res.stderr
    debug = tunesmith("--debug", "train", str(cfg), cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_unknown_model_exits_2_naming_alternatives(tmp_path: Path, small_jsonl: Path):
    cfg = write_config(tmp_path, tmp_path / "no-model-here", small_jsonl)
    res = tunesmith("train", str(cfg), cwd=tmp_path)
    assert res.returncode == 2 and "--model default" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()  # nothing half-written when the model is wrong


def test_bad_flag_value_exits_2(tmp_path: Path):
    res = tunesmith("train", "x.yaml", "--overwrite=maybe", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    res = tunesmith("train", "missing.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "config file missing.yaml not found" in res.stderr


def test_plan_is_a_dry_run_that_says_what_training_would_do(tmp_path: Path, tiny_model_dir: Path, small_jsonl: Path):
    cfg = write_config(tmp_path, tiny_model_dir, small_jsonl)
    res = tunesmith("plan", str(cfg), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "plan: rows: 12 train, 4 eval (read 16: 0 skipped, 0 duplicates, 0 not trained)" in out
    assert "plan: steps: 3 per epoch, 6 in total (2 epochs); effective batch 4 = 4 rows x 1 accumulation x 1 process(es)" in out
    assert "plan: precision: " in out and "check: end-of-turn token supervised: yes" in out
    assert not (tmp_path / "runs").exists()  # nothing written


def test_every_verb_shows_examples_that_parse_with_its_own_flags():
    """Each verb's --help ends its description with an Examples: block (simonw/llm's habit); every example line
    parses with the verb's own flags (a renamed flag breaks this test, not a reader's first try)."""
    import shlex

    import typer

    from tunesmith import cli

    group = typer.main.get_command(cli.app)
    for name, command in group.commands.items():
        text = command.help or ""
        assert "\nExamples:\n" in text, name
        lines = [ln.strip() for ln in text.split("\nExamples:\n", 1)[1].splitlines() if ln.strip()]
        assert lines and all(ln.startswith(f"tunesmith {name}") for ln in lines), (name, lines)
        for line in lines:
            argv = shlex.split(line, comments=True)[2:]
            command.make_context(name, argv)  # raises click's UsageError on an unknown flag or extra argument


def test_help_shows_value_kinds_and_usage_errors_share_the_one_error_prefix():
    for verb in ("train", "inspect", "preview", "chat", "synth", "init"):
        text = tunesmith(verb, "--help").stdout
        assert "<bool>" not in text and "<str>" not in text and "<int>" not in text, verb
    assert " --epochs " in tunesmith("train", "--help").stdout and "NUMBER" in tunesmith("train", "--help").stdout
    assert "replace the config file at --out" in tunesmith("init", "--help").stdout
    assert "min_support" in tunesmith("synth", "--help").stdout and "train.epochs" not in tunesmith("synth", "--help").stdout
    for args, message in ((("train", "--epochs", "x"), "Invalid value for '--epochs'"),
                          (("tran",), "No such command 'tran'. Did you mean 'train'?")):
        res = tunesmith(*args)
        assert res.returncode == 2 and f"\nerror: {message}" in res.stderr and "Error" not in res.stderr, res.stderr
