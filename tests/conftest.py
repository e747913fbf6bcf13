"""Hermetic fixtures: the cache and run folders live in tmp dirs; models are real, tiny ones built from config.

Shared helpers, imported as `from tests.conftest import ...`: `tunesmith` (the real CLI in a subprocess), `fails`
(exit 2, an error line, no traceback), `tiny_config` / `write_config` (the tiny run every end-to-end test uses),
`write_json`. Shared fixtures: `smol_dir`, `tiny_model_dir`, `small_jsonl`, `tiny_run` (one finished run per
module), `serve` (a local OpenAI-compatible judge server).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on a 2-core machine: one compute thread each (and in the CLI processes a
    # test starts), or four OpenMP threads spin on two cores and the browser test's 150 training steps took 212 s
    # instead of 21 s.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "sample_data"
REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def tunesmith(*args: str, cwd: Path | None = None, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess:
    """`tunesmith ARGS` as a user runs it: a child process (cwd: the test's tmp dir unless given)."""
    return subprocess.run([sys.executable, "-m", "tunesmith", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)


def fails(res: subprocess.CompletedProcess, *messages: str) -> str:
    """Exit 2, no traceback, and each message in stderr; returns stderr for more checks."""
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "\nerror: " in "\n" + res.stderr, res.stderr
    for message in messages:
        assert message in res.stderr, res.stderr
    return res.stderr


# The tiny run: 16 rows, 6 LoRA steps with eval loss at steps 0, 3 and 6, 4 eval rows of 8 new tokens (~30 s).
TINY_TRAIN = {"max_steps": 6, "batch_size": 4, "learning_rate": 5e-3, "logging_steps": 2, "eval_strategy": "steps",
              "eval_steps": 3, "report_to": []}


def tiny_raw(model: Path, data: Path, *, train: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The tiny run's config mapping; `train` replaces the whole train section, `extra` any top-level key."""
    return {"name": "tiny", "model": str(model), "data": {"train": [str(data)], "min_eval": 4},
            "template": {"max_length": 128}, "lora": {"r": 4, "alpha": 8},
            "train": TINY_TRAIN if train is None else train,
            # The retention check is off in the tiny runs (4 s a run); tiny_run and the tests about it turn it on.
            "eval": {"max_rows": 4, "max_new_tokens": 8, "batch_size": 4, "retention": "off"}, **extra}


def tiny_config(model: Path, data: Path, out: Path, *, train: dict[str, Any] | None = None, **extra: Any):
    """The tiny run as a RunConfig writing under `out`.

    >>> tiny_config(Path("/m"), Path("/d.jsonl"), Path("/runs")).train.max_steps
    6
    """
    from tunesmith import config

    return config.parse(tiny_raw(model, data, train=train, output_dir=str(out), **extra), source="<test>")


def write_config(tmp_path: Path, model: Path, data: Path, extra: str = "") -> Path:
    """The tiny run as `tmp_path/run.yaml` (runs go to ./runs); `extra` is YAML text appended to it."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(tiny_raw(model, data), sort_keys=False) + extra, encoding="utf-8")
    return cfg


@pytest.fixture(scope="session")
def tunesmith_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tunesmith_home")


@pytest.fixture(scope="session", autouse=True)
def _session_home(tunesmith_home: Path) -> Iterator[None]:
    """TUNESMITH_HOME for the whole session: module and session fixtures (a tiny run, a conversion) run before
    _hermetic, and the tiny run's evaluation cache entries landed in the real ~/.cache/tunesmith before."""
    from tunesmith.runtime import scoped_env

    with scoped_env({"TUNESMITH_HOME": str(tunesmith_home)}):
        yield


@pytest.fixture(autouse=True)
def _hermetic(tunesmith_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNESMITH_HOME", str(tunesmith_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing loads from the hub at run time
    monkeypatch.chdir(tmp_path)  # runs/ (and anything a library drops in the cwd) lands in tmp


@pytest.fixture(scope="session")
def smol_dir(tunesmith_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded SmolLM2-135M-Instruct, converted once per session (~30 s) and linked into the tmp
    TUNESMITH_HOME: under pytest-xdist the workers share one conversion, the first one makes it, the others wait."""
    import os

    from filelock import FileLock

    from tunesmith import models
    from tunesmith.runtime import scoped_env

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this session's folder, holding each worker's own
    with scoped_env({"TUNESMITH_HOME": str(shared / "converted_home")}), FileLock(str(shared / "converted_home.lock")):
        folder = Path(models.resolve("default"))
    link = tunesmith_home / "models" / folder.name  # where `--model default` looks under the tmp home
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(folder, target_is_directory=True)
    return link


@pytest.fixture(scope="session")
def smol_tokenizer(request: pytest.FixtureRequest):
    """SmolLM2's tokenizer; TUNESMITH_TEST_TOKENIZER names a folder holding it where the embedded GGUF is not
    installed (the GPU machine: bench/gpu_check.sh carries the tokenizer files alone)."""
    import os

    from transformers import AutoTokenizer

    folder = os.environ.get("TUNESMITH_TEST_TOKENIZER") or request.getfixturevalue("smol_dir")
    return AutoTokenizer.from_pretrained(folder)


def tiny_llama(tokenizer, out: Path, context: int = 512, layers: int = 2) -> Path:  # noqa: ANN001
    """Save a 2-layer Llama (hidden 64) with `tokenizer` and its chat template in `out`: trains in seconds.
    bench/train_contestants.py's `--model narrowN` is the same model with N layers."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=context, tie_word_embeddings=True,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(smol_tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with the embedded tokenizer and a 512-token context."""
    return tiny_llama(smol_tokenizer, tmp_path_factory.mktemp("tiny_llama"))


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


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run, shared by the tests of a module."""
    import os

    from tunesmith import pipeline

    home = tmp_path_factory.mktemp("run")
    data = home / "small.jsonl"
    data.write_text("\n".join((SAMPLE / "counsel_en.jsonl").read_text(encoding="utf-8").splitlines()[:16]) + "\n",
                    encoding="utf-8")
    os.environ["HF_HUB_OFFLINE"] = "1"
    cfg = tiny_config(tiny_model_dir, data, home / "runs")
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"retention": "on"})})
    return pipeline.run(cfg, say=lambda _: None).run_dir


Reply = Callable[[dict, dict], tuple[int, object]]  # (request body, headers) -> (status, json or text)


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], tuple[str, list]]]:
    """Start a judge server on 127.0.0.1 with a reply rule; returns its /v1 url and the requests it saw."""
    servers = []

    def start(reply: Reply) -> tuple[str, list]:
        seen: list[tuple[str, dict, dict]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                seen.append((self.path, dict(self.headers), body))
                status, payload = reply(body, dict(self.headers))
                data = (json.dumps(payload) if not isinstance(payload, str) else payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except BrokenPipeError:  # the client timed out first, as the timeout test wants
                    pass

            def log_message(self, *args: object) -> None:  # keep the test output clean
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
