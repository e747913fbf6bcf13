"""Start the UI: loopback by default; any other address needs --allow-remote and then always a token."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.serve import is_loopback


def run(root: Path, *, host: str = "127.0.0.1", port: int = 7860, allow_remote: bool = False,
        max_upload_mb: int = 100, say: Callable[[str], None] = print) -> None:
    import uvicorn

    from tunesmith.ui.app import app

    token = None
    if not is_loopback(host):
        if not allow_remote:
            raise TunesmithError(f"--host {host} would let other machines reach the UI", where="ui",
                                 fix="keep the default 127.0.0.1, or add --allow-remote (an access token is then "
                                 "printed and required)")
        token = secrets.token_urlsafe(24)
    root.mkdir(parents=True, exist_ok=True)
    say(f"tunesmith ui on http://{host}:{port}/" + (f"?token={token}" if token else "") + f" (runs: {root})")
    uvicorn.run(app(root, token=token, max_upload_mb=max_upload_mb), host=host, port=port, log_level="warning")
