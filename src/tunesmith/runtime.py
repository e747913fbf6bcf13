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
