"""The Gradio Blocks of `tunesmith ui`, mounted on a FastAPI app (the framework `tunesmith serve` runs on).

Why Gradio: it is what the peer toolkits' users already know (LLaMA-Factory's board), it ships its front end in
the wheel (no CDN: it works offline), streams, and has translations built in (gr.I18n picks English or Korean
from the browser's language; the language menu switches it). Every button calls the library function the CLI
verb calls: the Data tab is `tunesmith inspect` and `tunesmith preview`, the Runs tab is `tunesmith report`.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from tunesmith.config import DataConfig, TemplateConfig
from tunesmith.errors import TunesmithError
from tunesmith.ui import files

# key -> (English, Korean): one row per label, so a missing translation shows as a short tuple.
TEXT = {
    "data": ("Data", "데이터"),
    "runs": ("Runs", "실행 기록"),
    "upload": ("Upload a data file (JSON, JSONL, CSV, Parquet, TXT)", "데이터 파일 올리기 (JSON, JSONL, CSV, Parquet, TXT)"),
    "pick": ("or pick a file under the runs folder", "또는 runs 폴더 안의 파일 고르기"),
    "roles": ("Role mapping (NAME=ROLE, comma-separated)", "역할 매핑 (이름=역할, 쉼표로 구분)"),
    "inspect": ("Inspect", "검사"),
    "apply": ("Apply the suggested role mapping", "제안된 역할 매핑 적용"),
    "model": ("Model for the preview", "미리보기 모델"),
    "summary": ("What tunesmith read", "tunesmith가 읽은 내용"),
    "preview": ("Rows as training sees them (supervised tokens highlighted)", "학습에 들어가는 모습 (학습 대상 토큰 강조)"),
    "refresh": ("Refresh", "새로 고침"),
    "report": ("Report", "보고서"),
    "run": ("Run folder", "실행 폴더"),
    "columns": ("run|state|chrF base → tuned|retention", "실행|상태|chrF 기본 → 튜닝|기억 유지"),
}
LANGS = ("en", "ko")


def parse_roles(text: str) -> dict[str, str]:
    """'therapist=assistant, client=user' -> {'therapist': 'assistant', 'client': 'user'}.

    >>> parse_roles("therapist=assistant, client = user")
    {'therapist': 'assistant', 'client': 'user'}
    """
    out = {}
    for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
        name, sep, role = part.partition("=")
        if not sep or not name.strip() or not role.strip():
            raise TunesmithError(f"role mapping {part!r} is not NAME=ROLE", where="ui",
                                 fix="write it as therapist=assistant")
        out[name.strip()] = role.strip()
    return out


def inspect_file(root: Path, name: str, roles_text: str) -> tuple[str, str, str]:
    """(inspect's text, a suggested role mapping or '', the file's path under root) for a file the UI may read."""
    from tunesmith.data.summary import render, summarize

    path = files.inside(root, name)
    try:
        summary = summarize([path], DataConfig(train=[path], roles=parse_roles(roles_text)))
    except TunesmithError as err:
        roles = (err.suggest or {}).get("roles")
        return err.render(), ", ".join(f"{k}={v}" for k, v in roles.items()) if roles else "", str(path)
    return render(summary), "", str(path)


def preview_html(root: Path, name: str, roles_text: str, model: str, n: int = 3) -> str:
    """The first `n` rows rendered with `model`'s template: supervised runs highlighted, the checks below."""
    from tunesmith import preview as pv

    path = files.inside(root, name)
    try:
        p = pv.preview([path], DataConfig(train=[path], roles=parse_roles(roles_text)), TemplateConfig(), model, n)
    except TunesmithError as err:
        return f"<pre>{html.escape(err.render())}</pre>"
    parts = []
    for ex, runs in p.rows:
        body = "".join(f"<mark>{html.escape(t)}</mark>" if sup else html.escape(t) for t, sup in runs)
        parts.append(f"<p><b>{html.escape(ex.source)}</b> ({ex.supervised_tokens} of {len(ex.input_ids)} tokens "
                     f"supervised)</p><pre class='ts-row' style='white-space:pre-wrap'>{body}</pre>")
    c = p.checks
    parts.append(f"<p>supervised share per row: min {c.share_min:.0%}, median {c.share_median:.0%}; rows with "
                 f"nothing supervised: {len(c.zero_supervised)}; end-of-turn token missing: "
                 f"{len(c.end_of_turn_missing)}; prompt differs from inference: {len(c.parity_failures)}</p>")
    return "".join(parts)


def build(root: Path, lang: str = "en") -> Any:
    """The Blocks: one tab per step, every handler a library call."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    import gradio as gr

    t = gr.I18n(**{code: {key: words[i] for key, words in TEXT.items()} for i, code in enumerate(LANGS)})
    with gr.Blocks(title="tunesmith") as blocks:
        gr.Markdown("# tunesmith")
        with gr.Tab(t("data"), elem_id="tab-data"):
            upload = gr.File(label=t("upload"), type="filepath", elem_id="upload")
            with gr.Row():
                picked = gr.Dropdown(choices=files.data_files(root), label=t("pick"), allow_custom_value=False,
                                     elem_id="picked")
                model = gr.Textbox("default", label=t("model"), elem_id="model")
            roles = gr.Textbox("", label=t("roles"), elem_id="roles")
            with gr.Row():
                go = gr.Button(t("inspect"), variant="primary", elem_id="inspect")
                apply = gr.Button(t("apply"), visible=False, elem_id="apply")
            suggestion = gr.State("")
            summary = gr.Textbox(label=t("summary"), lines=14, max_lines=40, elem_id="summary")
            shown = gr.HTML(elem_id="preview")

            def uploaded(path: str | None) -> Any:
                if not path:
                    return gr.update()
                kept = files.save_upload(root, Path(path))
                return gr.update(choices=files.data_files(root), value=str(kept.relative_to(root)))

            def inspect(name: str | None, roles_text: str, model_spec: str) -> tuple[Any, ...]:
                if not name:
                    return "", "", gr.update(visible=False), ""
                text, suggested, _ = inspect_file(root, name, roles_text)
                page = "" if suggested else preview_html(root, name, roles_text, model_spec or "default")
                return text, suggested, gr.update(visible=bool(suggested)), page

            upload.upload(uploaded, upload, picked)
            go.click(inspect, [picked, roles, model], [summary, suggestion, apply, shown])
            picked.change(inspect, [picked, roles, model], [summary, suggestion, apply, shown])
            apply.click(lambda s: s, suggestion, roles).then(inspect, [picked, roles, model],
                                                              [summary, suggestion, apply, shown])
        with gr.Tab(t("runs"), elem_id="tab-runs"):
            header = TEXT["columns"][LANGS.index(lang)].split("|")
            rows = files.runs_table(root)
            table = gr.Dataframe(value=rows, headers=header, interactive=False, elem_id="runs")
            with gr.Row():
                refresh = gr.Button(t("refresh"), elem_id="refresh")
                which = gr.Dropdown(choices=[r[0] for r in rows], label=t("run"), elem_id="which")

            def refreshed() -> tuple[Any, Any]:
                rows = files.runs_table(root)  # read the run folders once for the table and the menu
                return rows, gr.update(choices=[r[0] for r in rows])

            report = gr.HTML(elem_id="report")
            refresh.click(refreshed, None, [table, which])
            which.change(lambda name: files.report_frame(root, name or ""), which, report)
            # The menu opens on the newest run (Gradio preselects the first choice, and choosing it again is no
            # change): its report is shown when the page loads.
            blocks.load(lambda name: files.report_frame(root, name or ""), which, report)
    blocks.i18n_instance = t
    return blocks


def app(root: Path, *, token: str | None = None) -> Any:
    """FastAPI with the UI at /; with `token`, every request must carry it (?token= once, then a cookie)."""
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

    blocks = build(root)
    return gr.mount_gradio_app(api, blocks, path="/", i18n=blocks.i18n_instance, allowed_paths=[str(root.resolve())],
                               footer_links=["settings"])  # settings holds the language menu
