"""The run folder's lock: one process writes a run at a time.

An flock on RUN/.lock is released by the kernel when its holder dies, so a lock left by a killed run never
blocks; the file keeps the last owner's pid and host, which the refusal message names.
"""

from __future__ import annotations

import atexit
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from tunesmith.errors import TunesmithError

LOCK = ".lock"  # flock'ed by the process writing the run; holds its pid and host
_HELD: dict[Path, int] = {}  # run folder -> the open, locked file descriptor (kept for the process's life)


def acquire(root: Path, say: Callable[[str], None] | None = None) -> None:
    """Hold the lock on `root` until the process exits (or `release`); refuse if another process holds it."""
    import fcntl

    key = root.resolve()
    if key in _HELD:
        return
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    owner = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise TunesmithError(f"run folder {root} is in use by another tunesmith process "
                             f"({owner or 'owner unknown'})",
                             fix="wait for it to finish (or stop it), or pick another --name to run both "
                                 "at once") from None
    if owner and say is not None:
        say(f"notice: took over the lock of {root}: its last holder ({owner}) is no longer running")
    me = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, me.encode() + b"\n", 0)
    if not _HELD:
        atexit.register(_release_all)  # a clean exit empties the file; a crash leaves its owner to report
    _HELD[key] = fd


def release(root: Path) -> None:
    """Let the lock go; the file is emptied (a no-op when this process does not hold it)."""
    fd = _HELD.pop(root.resolve(), None)
    if fd is not None:
        os.ftruncate(fd, 0)
        os.close(fd)


def held_elsewhere(root: Path) -> bool:
    """Another process holds the lock on `root` (a run being written now)."""
    import fcntl

    if root.resolve() in _HELD or not (root / LOCK).is_file():
        return False
    fd = os.open(root / LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # only fails while a writer holds LOCK_EX
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's own lock
    return False


def _release_all() -> None:
    for root in list(_HELD):
        release(root)
