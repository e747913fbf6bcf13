"""Process facts (runtime.py): rank and world size, precision, the allocator and the tcmalloc re-exec."""

from __future__ import annotations

import json
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


def test_rows_are_grouped_by_length_only_where_they_are_padded():
    # auto: padding-free rows in random batches (a GPU, and a CPU in bf16 or fp32); grouped where a step's rows are
    # padded (padding_free off); a choice made by hand is kept either way
    assert runtime.choose_padding_free("auto") is True and runtime.choose_padding_free("off") is False
    assert runtime.choose_group_by_length("auto", "off") is True
    assert runtime.choose_group_by_length("auto", "on") is False
    assert runtime.choose_group_by_length("auto", "auto") is False
    assert runtime.choose_group_by_length(True, "on") is True
    assert runtime.choose_group_by_length(False, "off") is False


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


def fake_machine(tmp_path, files: dict[str, str], available_kib: int = 16 * 2**20):
    """A cgroup folder holding `files` and a /proc/meminfo with MemAvailable of `available_kib`."""
    cgroup = tmp_path / "cgroup"
    for name, text in files.items():
        (cgroup / name).parent.mkdir(parents=True, exist_ok=True)
        (cgroup / name).write_text(text + "\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       24684084 kB\nMemAvailable:   {available_kib} kB\nBuffers: 1 kB\n")
    return cgroup, meminfo


def test_available_memory_is_the_cgroup_room_or_mem_available(tmp_path):
    import torch

    if torch.cuda.is_available():
        free, source = runtime.available_memory_bytes()
        assert free == torch.cuda.mem_get_info()[0] and source.startswith("free memory of ")
        return
    own = runtime._own_rss()
    assert own > 0
    gib = 2**30
    # cgroup v2: a 4 GiB limit with 1 GiB in use leaves 3 GiB (and what this process holds), below MemAvailable.
    cgroup, meminfo = fake_machine(tmp_path, {"memory.max": str(4 * gib), "memory.current": str(gib)})
    room, source = runtime.available_memory_bytes(cgroup, meminfo)
    assert abs(room - (3 * gib + own)) < 64 * 2**20 and source == f"cgroup limit 4.0 GiB in {cgroup}/memory.max"
    # v2 "max" and v1's page-rounded 2**63 mean no limit: MemAvailable decides.
    for files in ({"memory.max": "max"}, {"memory/memory.limit_in_bytes": "9223372036854771712",
                                          "memory/memory.usage_in_bytes": str(gib)}):
        cgroup, meminfo = fake_machine(tmp_path / str(len(files)), files, available_kib=2 * 2**20)
        room, source = runtime.available_memory_bytes(cgroup, meminfo)
        assert abs(room - (2 * gib + own)) < 64 * 2**20 and source == "MemAvailable in /proc/meminfo"
    # v1 limit above what the machine has free: MemAvailable is the smaller, so it wins.
    cgroup, meminfo = fake_machine(tmp_path / "v1", {"memory/memory.limit_in_bytes": str(64 * gib),
                                                     "memory/memory.usage_in_bytes": str(gib)}, 2 * 2**20)
    assert runtime.available_memory_bytes(cgroup, meminfo)[1] == "MemAvailable in /proc/meminfo"
    # This machine: something positive, no more than its total memory plus this process.
    assert 0 < runtime.available_memory_bytes()[0] <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") + own


def test_the_matmul_rate_is_measured_again_where_the_kept_file_is_unreadable(tmp_path):
    (tmp_path / "machine.json").write_text("{not json")
    rate = runtime.matmul_flops("fp32", tmp_path)
    assert 1e9 < rate < 1e14
    [kept] = json.loads((tmp_path / "machine.json").read_text()).values()
    assert kept == {"fp32": rate}
    blocked = tmp_path / "file"
    blocked.write_text("")  # a cache "folder" that is a file: nothing kept, the rate still measured
    assert 1e9 < runtime.matmul_flops("fp32", blocked / "cache") < 1e14
