"""Whether the Hugging Face hub answers at all: the one network probe, below both model loading and data reading.

huggingface_hub retries an unreachable host for ~50 s before giving up, so loaders ask this first (3 s at most)
and read only from the local cache when it says no. HF_HUB_OFFLINE=1 answers no without a connection.
"""

from __future__ import annotations

import os


def reachable(timeout: float = 3.0) -> bool:
    """True when HF_HUB_OFFLINE is unset and huggingface.co:443 accepts a connection within `timeout` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "false", ""):
        return False
    import socket

    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False
