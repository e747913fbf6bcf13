"""Bad input through the real CLI (issue 10): each case exits 2 with where and how to fix, no traceback, and
leaves nothing behind; or it works. Tiny real models, real files; the W&B key check runs wandb's own code
against a local HTTP server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.conftest import fails, tunesmith, write_config  # noqa: F401  (fails: also imported from here)

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "sample_data" / "counsel_en.jsonl"


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- config files and --set -------------------------------------------------------------------------------

def test_duplicate_keys_in_a_nested_section(tmp_path: Path, small_jsonl: Path):
    cfg = config_file(tmp_path, f"name: x\ndata:\n  train: [{small_jsonl}]\n  train: [other.jsonl]\n")
    fails(tunesmith("plan", str(cfg), cwd=tmp_path),
          f"error: {cfg}: a key appears twice in the same section (YAML would silently keep the last one)\n"
          '  - "train" on line 4 (first on line 3)\n'
          "how to fix: keep one of each; delete or merge the repeated lines")


def test_a_cp949_config(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes("name: x\ndata: {train: [a.jsonl]}\nsystem: 상담사\n".encode("cp949"))
    fails(tunesmith("plan", str(cfg), cwd=tmp_path), f"error: {cfg}:3: not UTF-8 text: byte 0x",
          "how to fix: save the config as UTF-8")


@pytest.mark.parametrize("args", [["--set", "train.epochs=.inf"], ["--set", "train.learning_rate=.nan"],
                                  ["--epochs", "inf"]], ids=["set-inf", "set-nan", "flag-inf"])
def test_infinite_or_nan_numbers(tmp_path: Path, small_jsonl: Path, args: list[str]):
    key = "train.learning_rate" if "nan" in args[1] else "train.epochs"
    fails(tunesmith("plan", "--data", str(small_jsonl), *args, cwd=tmp_path),
          f'"{key}": Input should be a finite number')


def test_a_set_value_that_is_not_yaml(tmp_path: Path, small_jsonl: Path):
    fails(tunesmith("plan", "--data", str(small_jsonl), "--set", "data.system=[oops", cwd=tmp_path),
          "error: --set data.system=[oops: the value '[oops' of data.system is not valid YAML",
          "how to fix: quote it to mean text: --set 'data.system=\"[oops\"'")


def test_flag_values_arrive_as_the_text_typed(tmp_path: Path, small_jsonl: Path):
    """--name is YAML-quoted on its way into the config: 'a: b' stays text (refused by the name rule), not a mapping."""
    fails(tunesmith("train", "--data", str(small_jsonl), "--name", "a: b", cwd=tmp_path),
          '"name": String should match pattern', "(got 'a: b')")


def test_eval_embedder_that_is_not_yaml(tmp_path: Path, small_jsonl: Path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: r\ndata: {{train: [{small_jsonl}]}}\n")
    fails(tunesmith("eval", str(run), "--embedder", "[x", cwd=tmp_path))


@pytest.mark.parametrize(("key", "value", "message"), [
    ("train.lr_scheduler", "cosin", '"train.lr_scheduler": unknown scheduler "cosin" (did you mean "cosine"?)'),
    ("train.optimizer", "adam_torch", '"train.optimizer": unknown optimizer "adam_torch" (did you mean "adamw_torch"?)')])
def test_unknown_scheduler_or_optimizer_before_the_run_folder(tmp_path: Path, small_jsonl: Path, key: str,
                                                              value: str, message: str):
    fails(tunesmith("train", "--data", str(small_jsonl), "--set", f"{key}={value}", cwd=tmp_path), message)
    assert not (tmp_path / "runs").exists()


def test_unknown_lora_target_or_broken_template_before_the_run_folder(tmp_path: Path, tiny_model_dir: Path,
                                                                      small_jsonl: Path):
    cfg = write_config(tmp_path, tiny_model_dir, small_jsonl)
    fails(tunesmith("train", str(cfg), "--set", "lora.target_modules=[q_proj, v_prj]", cwd=tmp_path),
          "error: lora.target_modules: target modules not in the model\n"
          '  - "v_prj" matches no module of the model (did you mean "v_proj"?)')
    fails(tunesmith("train", str(cfg), "--set", "template.chat_template='{% for m in messages %}{{ m.content }'",
                    cwd=tmp_path),
          "error: template.chat_template: the chat template cannot render a user/assistant exchange: "
          "TemplateSyntaxError (line 1): unexpected '}'")
    assert not (tmp_path / "runs").exists()


# --- models --------------------------------------------------------------------------------------------------

def test_a_fake_gguf_and_a_folder_without_tokenizer(tmp_path: Path, tiny_model_dir: Path):
    fake = tmp_path / "x.gguf"
    fake.write_bytes(os.urandom(4096).replace(b"GGUF", b"GGUX"))
    fails(tunesmith("preview", str(SAMPLE), "--model", str(fake), cwd=tmp_path),
          f"error: {fake}: not a GGUF file: it starts with", "how to fix: re-download the .gguf")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())
    fails(tunesmith("tokens", "--model", str(bare), cwd=tmp_path),
          f"cannot load the tokenizer of model '{bare}': the folder has no tokenizer files",
          "  - the folder holds: config.json\n")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="QLoRA is allowed where CUDA is")
def test_plan_refuses_4bit_on_a_cpu_as_train_does(tmp_path: Path, tiny_model_dir: Path, small_jsonl: Path):
    cfg = write_config(tmp_path, tiny_model_dir, small_jsonl)
    fails(tunesmith("plan", str(cfg), "--load-4bit", cwd=tmp_path),
          "load_in: 4bit (QLoRA / 8-bit loading) needs a CUDA GPU with bitsandbytes; this machine has none")


# --- verb options --------------------------------------------------------------------------------------------

def test_verb_options_are_validated_like_config_keys(tmp_path: Path):
    fails(tunesmith("preview", str(SAMPLE), "--supervise", "bogus", cwd=tmp_path),
          "error: tunesmith preview: invalid option\n"
          "  - \"--supervise\": Input should be 'assistant', 'last' or 'all' (got 'bogus')\n"
          "how to fix: change the option; `tunesmith preview --help` lists them")
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n")
    fails(tunesmith("compare", "--models", "default", "--prompts", str(prompts), "--batch-size", "0", cwd=tmp_path),
          '  - "--batch-size": Input should be greater than or equal to 1 (got 0)')
    fails(tunesmith("inspect", str(SAMPLE), "--format", "sharegtp", cwd=tmp_path),
          '  - "--format": unknown format "sharegtp" (did you mean "sharegpt"?); known: messages, sharegpt')


# --- files the verbs write -----------------------------------------------------------------------------------

def test_init_out_creates_missing_folders_and_refuses_a_folder(tmp_path: Path):
    res = tunesmith("init", "--out", "new/sub/run.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "wrote new/sub/run.yaml (created the folder new/sub)" in res.stdout
    assert (tmp_path / "new" / "sub" / "run.yaml").is_file()
    fails(tunesmith("init", "--out", "new", cwd=tmp_path), "error: --out new: --out is a folder",
          "how to fix: pass a file name, e.g. --out new/tunesmith.yaml")


def test_compare_csv_into_a_folder_and_an_unwritable_path(tmp_path: Path, tiny_model_dir: Path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\nhow are you?\n")
    (tmp_path / "out").mkdir()
    res = tunesmith("compare", "--models", str(tiny_model_dir), "--prompts", str(prompts), "--csv", "out",
                    "--max-new-tokens", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "wrote out/compare.csv (2 prompts, 0 skipped)" in res.stdout
    assert len((tmp_path / "out" / "compare.csv").read_text(encoding="utf-8-sig").splitlines()) == 3
    (tmp_path / "a-file").write_text("x")
    err = fails(tunesmith("compare", "--models", str(tiny_model_dir), "--prompts", str(prompts), "--csv",
                          "a-file/x.csv", cwd=tmp_path), "error: --csv a-file/x.csv: cannot create the folder")
    assert "generating" not in err  # refused before the slow part


def test_tokens_add_refuses_a_non_empty_out(tmp_path: Path, tiny_model_dir: Path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    fails(tunesmith("tokens", "--model", str(tiny_model_dir), "--add", "<x>", "--out", str(out), cwd=tmp_path),
          f"error: --out {out}: the folder is not empty; saving would replace files in it\n  - it holds: notes.txt",
          "how to fix: pass a new or empty folder, or --overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    res = tunesmith("tokens", "--model", str(tiny_model_dir), "--add", "<x>", "--out", str(out), "--overwrite",
                    cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (out / "notes.txt").read_text() == "keep me" and (out / "config.json").is_file()


# --- W&B -----------------------------------------------------------------------------------------------------

@pytest.fixture
def wandb_server():
    """A local stand-in for api.wandb.ai that rejects every key (HTTP 401), as the real one does a revoked key."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"errors": [{"message": "user is not logged in"}]}')

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


CHECK_KEY = """
from tunesmith.errors import TunesmithError
from tunesmith.train import wandb_offline_reason
try:
    print(wandb_offline_reason())
except TunesmithError as err:
    print(err)
"""


def wandb_check(**env: str) -> str:
    """wandb_offline_reason() in a child process: wandb keeps its login state per process, and a host or key
    checked here must not leak into later in-process tests (the W&B offline run in test_train.py)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    res = subprocess.run([sys.executable, "-c", CHECK_KEY], capture_output=True, text=True, timeout=60,
                         env={**base, **env})
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_wandb_key_is_checked_fast_and_never_shown(wandb_server: str, tmp_path: Path):
    key = "k" * 40
    start = time.perf_counter()
    out = wandb_check(WANDB_API_KEY=key, WANDB_BASE_URL=wandb_server)
    assert time.perf_counter() - start < 30
    assert out.startswith("WANDB_API_KEY: W&B did not accept the API key: Failed to authenticate")
    assert key not in out
    # nothing listens on port 9: the key cannot be checked, so the run logs offline
    assert wandb_check(WANDB_API_KEY=key, WANDB_BASE_URL="http://127.0.0.1:9") == \
        "cannot reach http://127.0.0.1:9 to check the API key"
    assert wandb_check(HOME=str(tmp_path)) == "no API key configured"  # no key, no ~/.netrc


def test_a_malformed_wandb_key_exits_2_without_retries(tmp_path: Path, tiny_model_dir: Path, small_jsonl: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "abc123")
    cfg = write_config(tmp_path, tiny_model_dir, small_jsonl)
    start = time.perf_counter()
    err = fails(tunesmith("train", str(cfg), "--set", "train.report_to=[wandb]", cwd=tmp_path),
                "error: WANDB_API_KEY: the W&B API key is malformed: API key must have 40+ characters, has 6.",
                "how to fix: copy the key again from https://wandb.ai/authorize")
    assert time.perf_counter() - start < 90 and "abc123" not in err


# --- Ctrl-C --------------------------------------------------------------------------------------------------

def test_ctrl_c_during_training_says_how_to_resume(tmp_path: Path, tiny_model_dir: Path, small_jsonl: Path):
    cfg = write_config(tmp_path, tiny_model_dir, small_jsonl)
    # SIGINT restored for the child: a test run started in the background (`pytest &`) ignores SIGINT, and an
    # ignored signal stays ignored across exec, so the child would never see the interrupt.
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith", "train", str(cfg), "--set", "train.max_steps=100000",
                             "--set", "train.eval_steps=100000"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in proc.stderr:  # interrupt once the training loop runs
        lines.append(line)
        if line.startswith("training (lora)"):
            time.sleep(2)
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted; re-run the same command to resume from the last complete checkpoint" in rest
    assert "Traceback" not in rest
