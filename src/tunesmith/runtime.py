"""Facts about the process a run is in: its rank, the precision its hardware runs fast, its allocator.

Light at import (no torch): the CLI imports it for every verb, and `tunesmith --help` must stay fast.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

TCMALLOC = ("/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4", "/usr/lib/aarch64-linux-gnu/libtcmalloc.so.4",
            "/usr/lib64/libtcmalloc.so.4")


def _launcher_env(names: tuple[str, ...], default: str) -> int:
    return int(next((os.environ[n] for n in names if n in os.environ), default))


def rank() -> int:
    """This process's rank under torchrun / accelerate / mpirun (0 when run alone); only rank 0 writes files."""
    return _launcher_env(("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK"), "0")


def world_size() -> int:
    return _launcher_env(("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"), "1")


# --- precision -----------------------------------------------------------------------------------------------

def cpu_has_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX); elsewhere autocast is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(precision: str) -> str:
    """The one precision decision: 'bf16', 'fp16' or 'fp32' (bf16/fp16 as autocast over fp32 weights).

    auto = bf16 where the hardware runs it natively: it halves LoRA step time on this project's CPUs
    (bench/train_throughput.py measures the ratio); fp16 on CUDA cards without bf16; fp32 otherwise.
    """
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def choose_padding_free(setting: str) -> bool:
    """train.padding_free resolved: auto = on (a CUDA GPU, and a CPU in bf16 or fp32; fp16 trains on CUDA only).

    Measured (bench/train_contestants.py, docs/benchmarks.md): on an H100 packed rows were 1.32x faster on the
    demo rows (2,962 vs 2,252 tokens/s) and 1.16x on long rows (9,657 vs 8,321). On the CPU they were 2x slower
    on long rows while SDPA got their block-diagonal mask (133.7 vs 265.8); attention.py pads the rows again for
    attention alone, so the projections and the MLP run on real tokens only. bf16: 307.8 vs 279.9 tokens/s on
    the demo rows (16% of a padded epoch is padding), 292.3 vs 285.5 on long rows, the same losses. fp32 (an
    AVX2-only EPYC, 8 demo steps): 116.6 vs 117.2 tokens/s against length-grouped padded rows, and with random
    batches the held-out loss 2.046 vs 2.084 and the peak RSS 4.41 vs 6.22 GiB (no step of the longest rows).
    """
    return setting != "off"


def choose_group_by_length(setting: bool | str, padding_free: str) -> bool:
    """train.group_by_length resolved: auto = on only where a step's rows are padded (train.padding_free off).

    Length-grouped batches save the padding of padded rows (up to 2x in fp32 on the CPU), but TRL's loss is a mean
    over each step's tokens, so a step of 8 short rows weighs each token more than a step of 8 long ones: on the
    demo rows (English ~85 tokens, Korean ~300), 8 steps, seeds 42/1/2, the held-out loss was 2.088 / 2.105 /
    2.100 grouped and 2.052 / 2.077 / 2.069 random, TRL tuned's 2.050 / 2.070 / 2.066 (sd 0.010). Padding-free
    rows have no padding to save, and attention.py pads them in groups of similar length itself: random batches
    ran as fast there (365 vs 369 tokens/s, three pairs) and peaked 1.3 GiB lower (no step of the 8 longest rows).
    """
    if setting != "auto":
        return bool(setting)
    return not choose_padding_free(padding_free)


def precision_reason(precision: str) -> str:
    """What `choose_precision` chose and why, for the plan."""
    import torch

    chosen = choose_precision(precision)
    name = "fp32" if chosen == "fp32" else f"{chosen} autocast"
    if precision != "auto":
        return f"{name} (set in train.precision)"
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        return f"{name} on {gpu} ({'supports' if chosen == 'bf16' else 'lacks'} bf16)"
    return f"{name} on CPU ({'has' if cpu_has_bf16() else 'lacks'} native bf16: avx512_bf16/amx_bf16)"


# --- allocator -----------------------------------------------------------------------------------------------

def tcmalloc_library() -> str | None:
    """tcmalloc's path where the system has it (Debian: libgoogle-perftools4); the training verbs preload it."""
    return next((p for p in TCMALLOC if os.path.exists(p)), None)


def tcmalloc_preloaded(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs with tcmalloc (it must be preloaded: it replaces malloc before Python starts)."""
    return "tcmalloc" in environ.get("LD_PRELOAD", "")


def tcmalloc_env(environ: Mapping[str, str] = os.environ) -> dict[str, str] | None:
    """The environment to re-run a training verb with tcmalloc preloaded, or None where there is nothing to do
    (opted out with TUNESMITH_NO_TCMALLOC=1, already preloaded, or not installed)."""
    if environ.get("TUNESMITH_NO_TCMALLOC") or tcmalloc_preloaded(environ):
        return None
    lib = tcmalloc_library()
    if lib is None:
        return None
    return {**environ, "LD_PRELOAD": ":".join(filter(None, [lib, environ.get("LD_PRELOAD")]))}


def training_allocator(environ: Mapping[str, str] = os.environ) -> str:
    """The allocator a training run will have: tcmalloc when preloaded or `train` will preload it, else glibc.
    The plan's memory estimate depends on it (glibc keeps freed activations' pages: a higher peak RSS)."""
    return "tcmalloc" if tcmalloc_preloaded(environ) or tcmalloc_env(environ) is not None else "glibc"


def preload_tcmalloc() -> None:
    """Re-run this command with tcmalloc preloaded; the training verbs (`train`, `demo`) call it first.

    PyTorch's CPU training allocates and frees large tensors every step; glibc malloc makes that the
    bottleneck here: bench/train_throughput.py measured 106 -> 163 tokens/s (1.55x) on the demo's LoRA.
    Set TUNESMITH_NO_TCMALLOC=1 to opt out.
    """
    env = tcmalloc_env()
    if env is not None:
        os.execve(sys.executable, [sys.executable, "-m", "tunesmith", *sys.argv[1:]], env)


# --- the machine ---------------------------------------------------------------------------------------------

def hardware() -> dict[str, Any]:
    """What the numbers in a report were measured on."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    info = {"cpu": cpu, "cpu cores": os.cpu_count(), "torch threads": torch.get_num_threads(),
            "native bf16 on CPU": cpu_has_bf16(), "tcmalloc": tcmalloc_preloaded()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# The plan's CPU time estimate (plan.py) scales its measured rates by this machine's matmul rate in the precision that
# runs: a 2048^3 matmul (512^3 where bf16 is emulated: 2048^3 took 14 s there), the best of 4 (the first warms up).
PROBE_SIZE = 2048


def matmul_flops(precision: str, cache: Path) -> float:
    """This machine's matmul FLOP/s in `precision` ('fp32', or 'bf16' as autocast runs it), measured once (~0.5 s)
    and kept in `cache`/machine.json under the CPU, its core count and torch's version: a VM of the same name
    can still be slower or faster (2048^3 fp32: 0.07-0.12 TFLOP/s on one AVX2 EPYC in one day)."""
    import json

    import torch

    machine = hardware()
    key = f"{machine['cpu']} | {os.cpu_count()} cores | {machine['torch threads']} threads | torch {torch.__version__}"
    path = cache / "machine.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if precision not in known.get(key, {}):
        known.setdefault(key, {})[precision] = _probe(precision)
        with contextlib.suppress(OSError):  # a read-only home: measured again next time
            cache.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(known, indent=1), encoding="utf-8")
    return float(known[key][precision])


def _probe(precision: str) -> float:
    import time

    import torch

    n = PROBE_SIZE if precision == "fp32" or cpu_has_bf16() else 512
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(4):  # the first is a warm-up (the pages, the kernel's choice)
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


CGROUP = Path("/sys/fs/cgroup")
MEMINFO = Path("/proc/meminfo")
# cgroup v1 writes "no limit" as a page-rounded 2**63 - 1; anything this large is no limit.
NO_LIMIT = 2**60


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _cgroup_room(cgroup: Path) -> tuple[int, str] | None:
    """(bytes left under this container's memory limit, which file set it), or None where no limit is set."""
    for limit_file, usage_file in (("memory.max", "memory.current"),  # cgroup v2
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):  # v1
        limit = _read_int(cgroup / limit_file)
        if limit is not None and limit < NO_LIMIT:
            used = _read_int(cgroup / usage_file) or 0
            return max(limit - used, 0), f"cgroup limit {limit / 2**30:.1f} GiB in {cgroup / limit_file}"
    return None


def _mem_available(meminfo: Path) -> int | None:
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    kib = next((line.split()[1] for line in lines if line.startswith("MemAvailable:")), None)
    return int(kib) * 1024 if kib is not None else None


def _own_rss() -> int:
    """This process's resident memory now: it counts towards the budget, so it is part of what it may use."""
    kib = next((line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmRSS:")), "0") if Path("/proc/self/status").exists() else "0"
    return int(kib) * 1024


def available_memory_bytes(cgroup: Path = CGROUP, meminfo: Path = MEMINFO) -> tuple[int, str]:
    """Memory this process may grow to, and where the number came from (for the plan's lines).

    On CUDA the free memory of GPU 0 (training's tensors live there). Otherwise what the kernel would give
    before swapping or the OOM killer: MemAvailable, or less where a cgroup limit (a container) leaves less,
    plus what this process already holds. Page cache counts as used under a cgroup (conservative).

    >>> available_memory_bytes()[0] > 0
    True
    """
    import torch

    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return free, f"free memory of {torch.cuda.get_device_name(0)}"
    own = _own_rss()
    available = _mem_available(meminfo)
    room = _cgroup_room(cgroup)
    if room is not None and (available is None or room[0] < available):
        return room[0] + own, room[1]
    if available is None:  # not Linux: total memory, as a last resort
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "total memory (no /proc/meminfo)"
    return available + own, "MemAvailable in /proc/meminfo"


@contextlib.contextmanager
def scoped_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the length of a `with` block, then put back what was there before.

    >>> with scoped_env({"TUNESMITH_EXAMPLE": "1"}): print(os.environ["TUNESMITH_EXAMPLE"])
    1
    >>> "TUNESMITH_EXAMPLE" in os.environ
    False
    """
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
