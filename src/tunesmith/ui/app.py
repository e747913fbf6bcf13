"""The Gradio Blocks of `tunesmith ui`, mounted on a FastAPI app (the framework `tunesmith serve` runs on).

Why Gradio: it is what the peer toolkits' users already know (LLaMA-Factory's board), it ships its front end in
the wheel (no CDN: it works offline), streams, and has translations built in (gr.I18n picks English or Korean
from the browser's language; the language menu switches it). The tabs are in ui/tabs.py; each calls the library
function its CLI verb calls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tunesmith.ui import tabs
from tunesmith.ui.words import i18n


def _only_received_files(api: Any, received: Path) -> None:
    """Refuse (400) any request whose JSON names a file that is not one Gradio received in this process: Gradio
    preprocesses a FileData path the client names by copying it into its cache (or fetching a URL), before any
    handler of ours runs, and serves its cache. A mounted app never counts as launched, so Gradio's own check
    of upload paths is skipped (gradio 6.31 processing_utils._check_allowed)."""
    import json

    from fastapi import Request
    from fastapi.responses import JSONResponse

    from tunesmith.ui import files

    @api.middleware("http")
    async def _received_only(request: Request, call_next: Any) -> Any:
        if request.method == "POST" and "json" in request.headers.get("content-type", ""):
            try:
                bad = files.foreign_paths(json.loads(await request.body()), received)
            except (ValueError, RecursionError):
                bad = []  # not JSON: Gradio answers that itself
            if bad:
                return JSONResponse({"error": f"tunesmith ui: {bad[0]} was not uploaded to this UI; upload the "
                                     "file with the upload box"}, status_code=400)
        return await call_next(request)


def build(root: Path, received: Path) -> Any:
    """The Blocks: one tab per step. Gradio translates the labels by itself (from the browser or the settings
    menu); the Runs table's column names follow the browser's language when the page loads. Uploads are taken
    only from `received` (where Gradio writes them)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    import gradio as gr

    t = i18n()
    with gr.Blocks(title="tunesmith") as blocks:
        gr.Markdown("# tunesmith")
        picked, roles, columns = tabs.data_tab(root, t, received)
        tabs.train_tab(root, t, picked, roles, columns)
        which, report, table = tabs.runs_tab(root, t)
        tabs.chat_tab(root, t)
        tabs.export_tab(root, t)
        # The Runs menu opens on the newest run (Gradio preselects the first choice, and choosing it again is no
        # change): its report is shown when the page loads.
        from tunesmith.ui import files

        blocks.load(lambda name: files.report_frame(root, name or ""), which, report)
        blocks.load(tabs.table_headers(), None, table)
    blocks.i18n_instance = t
    return blocks


UPLOAD_MB = 100  # a 300 MB upload took the process from 252 to 541 MB; the real users' files are under 1 MB


def app(root: Path, *, token: str | None = None, max_upload_mb: int = UPLOAD_MB) -> Any:
    """FastAPI with the UI at /; with `token`, every request must carry it (?token= once, then a cookie).
    Gradio writes uploads into a new folder under ROOT/.ui (so everything served is under the runs folder),
    at most `max_upload_mb` each."""
    from tunesmith.ui import files

    received = files.received_folder(root)
    os.environ["GRADIO_TEMP_DIR"] = str(received)  # read by Gradio's upload route and cache as they are made
    import gradio as gr
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse

    api = FastAPI(title="tunesmith ui")

    if token is not None:
        import hmac

        @api.middleware("http")
        async def _token(request: Request, call_next: Any) -> Any:
            given = request.query_params.get("token") or request.cookies.get("tunesmith_ui") or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return PlainTextResponse("tunesmith ui: open the address printed at start (it holds the token)",
                                         status_code=401)
            response = await call_next(request)
            if request.query_params.get("token"):
                response.set_cookie("tunesmith_ui", token, httponly=True, samesite="strict")
            return response

    _only_received_files(api, received)
    blocks = build(root, received)
    return gr.mount_gradio_app(api, blocks, path="/", i18n=blocks.i18n_instance, allowed_paths=[str(root.resolve())],
                               max_file_size=f"{max_upload_mb}mb",
                               footer_links=["settings"])  # settings holds the language menu
