"""Process facts (runtime.py): rank and world size, precision, the allocator and the tcmalloc re-exec."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tunesmith import runtime


def test_rank_and_world_size_come_from_the_launcher(monkeypatch: pytest.MonkeyPatch):
    for name in ("RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (runtime.rank(), runtime.world_size()) == (0, 1)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert (runtime.rank(), runtime.world_size()) == (3, 4)
    monkeypatch.setenv("RANK", "1")  # torchrun's name wins
    assert runtime.rank() == 1


def test_precision_set_by_hand_is_kept_and_auto_follows_the_hardware():
    import torch

    assert runtime.choose_precision("fp32") == "fp32"
    assert runtime.precision_reason("fp32") == "fp32 (set in train.precision)"
    if not torch.cuda.is_available():
        assert runtime.choose_precision("auto") == ("bf16" if runtime.cpu_has_bf16() else "fp32")
        assert ("has" if runtime.cpu_has_bf16() else "lacks") + " native bf16" in runtime.precision_reason("auto")


def test_hardware_names_the_allocator_of_this_process(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4")
    assert runtime.tcmalloc_preloaded() and runtime.hardware()["tcmalloc"] is True
    monkeypatch.delenv("LD_PRELOAD")
    hw = runtime.hardware()
    assert hw["tcmalloc"] is False and hw["cpu cores"] == os.cpu_count()


def test_tcmalloc_env_decides_the_re_exec(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(runtime, "TCMALLOC", ("/nowhere/libtcmalloc.so.4", sys.executable))  # a file that exists
    assert runtime.tcmalloc_env({"PATH": "/bin"}) == {"PATH": "/bin", "LD_PRELOAD": sys.executable}
    assert runtime.tcmalloc_env({"LD_PRELOAD": "libx.so"})["LD_PRELOAD"] == f"{sys.executable}:libx.so"
    assert runtime.tcmalloc_env({"LD_PRELOAD": "/lib/libtcmalloc_minimal.so.4"}) is None  # already preloaded
    assert runtime.tcmalloc_env({"TUNESMITH_NO_TCMALLOC": "1"}) is None
    monkeypatch.setattr(runtime, "TCMALLOC", ("/nowhere/libtcmalloc.so.4",))
    assert runtime.tcmalloc_env({}) is None  # not installed: nothing to preload


# The real CLI in a child process, with os.execve replaced by a line saying what would have been run. Where the
# system lacks tcmalloc (CI installs libgoogle-perftools4) a stand-in path plays the library: it is never loaded.
REEXEC = """
import os, sys
from tunesmith import cli, runtime

if runtime.tcmalloc_library() is None:
    runtime.TCMALLOC = (sys.executable,)
os.execve = lambda path, argv, env: sys.exit(print("re-exec", argv[3:], env["LD_PRELOAD"]))
sys.argv = ["tunesmith", *sys.argv[1:]]
cli.main()
"""


def cli_reexec(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "TUNESMITH_NO_TCMALLOC")}
    return subprocess.run([sys.executable, "-c", REEXEC, *args], capture_output=True, text=True, timeout=120,
                          env={**base, **env})


def test_only_the_training_verbs_re_exec_with_tcmalloc(tmp_path):
    # A run named "demo" or "train" is an argument, not a verb: no re-exec (the argv scan used to do one).
    for args in (["eval", "demo"], ["report", "train"], ["inspect", "demo"]):
        res = cli_reexec(*args)
        assert res.returncode == 2 and "re-exec" not in res.stdout, (args, res.stdout, res.stderr)
    res = cli_reexec("train", "--data", "mine.jsonl")
    assert res.returncode == 0 and res.stdout.startswith("re-exec ['train', '--data', 'mine.jsonl'] "), res.stderr
    assert cli_reexec("demo", "--name", "x").stdout.startswith("re-exec ['demo', '--name', 'x'] ")
    opted_out = cli_reexec("train", "--data", "mine.jsonl", TUNESMITH_NO_TCMALLOC="1")
    assert opted_out.returncode == 2 and "re-exec" not in opted_out.stdout and "mine.jsonl" in opted_out.stderr
