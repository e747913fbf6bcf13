"""The tabs of `tunesmith ui`, one function each. Every button calls the library function the CLI verb calls:
Data = inspect + preview, Train = plan + train (a child process: ui/jobs.py), Runs = report, Chat = chat's
render path (ui/duo.py), Export = export with its reload check. Handlers turn a TunesmithError into its text."""

from __future__ import annotations

import shlex
from functools import partial
from pathlib import Path
from typing import Any

from tunesmith import rundir
from tunesmith.errors import TunesmithError
from tunesmith.ui import data, duo, files, form, jobs
from tunesmith.ui.words import browser_language, words


def data_tab(root: Path, t: Any, received: Path) -> tuple[Any, Any, Any]:
    """Upload or pick a file, see what inspect reads and how training renders it. Returns (picked, roles, columns)
    for the Train tab. An upload is taken only from `received`, the folder Gradio wrote this process's uploads to."""
    import gradio as gr

    with gr.Tab(t("data"), elem_id="tab-data"):
        upload = gr.File(label=t("upload"), type="filepath", elem_id="upload")
        with gr.Row():
            offered = files.data_files(root)
            picked = gr.Dropdown(choices=offered, value=offered[0] if offered else None, label=t("pick"),
                                 allow_custom_value=False, elem_id="picked")
            model = gr.Textbox("default", label=t("model"), elem_id="model")
        with gr.Row():
            roles = gr.Textbox("", label=t("roles"), elem_id="roles")
            columns = gr.Textbox("", label=t("fields"), elem_id="columns")
        with gr.Row():
            go = gr.Button(t("inspect"), variant="primary", elem_id="inspect")
            apply = gr.Button(t("apply"), visible=False, elem_id="apply")
        suggestion = gr.State({})
        summary = gr.Textbox(label=t("summary"), lines=14, max_lines=40, elem_id="summary")
        shown = gr.HTML(elem_id="preview")

        def uploaded(sent: dict[str, Any] | None) -> Any:
            """Gradio's FileData as the client sent it (preprocess=False: Gradio copies nothing first)."""
            path = (sent or {}).get("path") if isinstance(sent, dict) else None
            if not path:
                return gr.update(), gr.update()
            try:
                src = files.received(received, path)  # the client names the path: only Gradio's own upload
            except TunesmithError as err:
                raise gr.Error(err.render()) from None
            kept = files.save_upload(root, src)  # kept and picked: the upload box is free for the next file
            src.unlink()
            return gr.update(choices=files.data_files(root), value=str(kept.relative_to(root))), None

        def inspect(name: str | None, roles_text: str, columns_text: str, model_spec: str) -> tuple[Any, ...]:
            if not name:
                return "", {}, gr.update(visible=False), ""
            text, suggested, _ = data.inspect_file(root, name, roles_text, columns_text)
            page = "" if suggested else data.preview_html(root, name, roles_text, model_spec or "default",
                                                          columns_text=columns_text)
            return text, suggested, gr.update(visible=bool(suggested)), page

        def applied(suggested: dict[str, str]) -> tuple[Any, Any]:
            """The suggested mappings into their boxes; a box with none suggested keeps what it has."""
            return tuple(suggested.get(k, gr.update()) for k in ("roles", "columns"))  # type: ignore[return-value]

        seen = [picked, roles, columns, model]
        # An upload of a file already offered leaves the menu's value unchanged (no change event): inspect anyway.
        upload.upload(uploaded, upload, [picked, upload], api_name="upload", preprocess=False).success(
            inspect, seen, [summary, suggestion, apply, shown])
        go.click(inspect, seen, [summary, suggestion, apply, shown], api_name="inspect")
        picked.input(inspect, seen, [summary, suggestion, apply, shown])  # a pick by hand
        apply.click(applied, suggestion, [roles, columns]).then(inspect, seen, [summary, suggestion, apply, shown])
    return picked, roles, columns


def _field(f: form.Field) -> Any:
    import gradio as gr

    common = {"label": f.key, "info": f.description or None, "elem_id": "cfg-" + f.key.replace(".", "-")}
    if f.kind == "choice":
        return gr.Dropdown(list(f.choices), value=str(f.default), **common)
    if f.kind == "bool":
        return gr.Checkbox(value=f.default, **common)
    if f.kind in ("int", "float"):
        return gr.Number(value=f.default, precision=0 if f.kind == "int" else None, **common)
    return gr.Textbox(value=f.shown(), **common)


def _form(t: Any) -> tuple[list[form.Field], list[Any]]:
    """The schema's fields as components: the basic ones open, the rest folded by section."""
    import gradio as gr

    fields = form.fields()
    basic = [f for f in fields if f.key in form.BASIC]
    rest = [f for f in fields if f.key not in form.BASIC]
    comps = []
    for i in range(0, len(basic), 4):
        with gr.Row():
            comps += [_field(f) for f in basic[i:i + 4]]
    with gr.Accordion(t("advanced"), open=False, elem_id="advanced"):
        for section in dict.fromkeys(f.section for f in rest):
            gr.Markdown(f"**{section}**")
            group = [f for f in rest if f.section == section]
            for i in range(0, len(group), 3):
                with gr.Row():
                    comps += [_field(f) for f in group[i:i + 3]]
    return basic + rest, comps


def train_tab(root: Path, t: Any, picked: Any, roles: Any, columns: Any) -> None:
    import gradio as gr

    with gr.Tab(t("train"), elem_id="tab-train"):
        with gr.Row():
            shown = gr.Textbox(picked.value or "", label=t("train_data"), interactive=False, elem_id="train-data")
            name = gr.Textbox(files.safe_run_name(root, picked.value), label=t("run_name"), elem_id="run-name")
        fields, comps = _form(t)
        overwrite = gr.Checkbox(False, label=t("overwrite"), elem_id="overwrite")
        with gr.Row():
            plan = gr.Button(t("plan"), variant="primary", elem_id="plan-button")
            start = gr.Button(t("start"), interactive=False, elem_id="start")
            stop = gr.Button(t("stop"), elem_id="stop")
            resume = gr.Button(t("resume"), elem_id="resume")
        status = gr.Markdown(elem_id="status")
        refused = gr.State("")  # a refused Start's message: the status line keeps it until the next Start
        chart = gr.LinePlot(_points(()), x="step", y="loss", color="series", label=t("losses"), elem_id="chart",
                            height=260)
        log = gr.Textbox(label=t("log"), lines=8, max_lines=8, elem_id="log", autoscroll=True)
        planned = gr.Textbox(label=t("plan_out"), lines=12, max_lines=40, elem_id="plan")
        with gr.Row():
            command = gr.Code(label=t("command"), language="shell", elem_id="command")
            yaml_text = gr.Code(label=t("yaml"), language="yaml", elem_id="yaml")
        timer = gr.Timer(2.0)

        picked.change(lambda p: p or "", picked, shown)
        picked.change(lambda p: files.safe_run_name(root, p), picked, name)
        plan.click(partial(_on_plan, root, fields), [picked, roles, columns, name, *comps],
                   [planned, command, yaml_text, start], api_name="plan")
        for changed in (picked, roles, columns, name, *comps):  # Start runs what the plan shows: a change asks for
            changed.change(lambda: gr.update(interactive=False), None, start)  # a new plan
        # Overwrite is asked for each click: the box unticks itself after every Start.
        start.click(partial(_on_start, root, fields), [picked, roles, columns, name, overwrite, *comps],
                    [status, refused, overwrite], api_name="start")
        stop.click(lambda: jobs.stop(root), None, status)
        resume.click(partial(_on_resume, root), None, status).then(lambda: "", None, refused)
        timer.tick(partial(_progress, root), refused, [status, chart, log])


def _train_config(root: Path, fields: list[form.Field], picked_name: str | None, roles_text: str,
                  columns_text: str, run_name: str, values: tuple[Any, ...]) -> tuple[Any, str]:
    """(the RunConfig, the equivalent command line) of what the Train form says."""
    if not picked_name:
        raise TunesmithError("no data file yet", where="the Train tab", fix="upload or pick a file in the Data tab first")
    path = files.inside(root, picked_name)
    rundir.check_name(run_name.strip())  # the plan refuses '.' as Start would, not only Start
    sets = (form.overrides(fields, list(values)) + form.roles_overrides(data.parse_roles(roles_text))
            + form.roles_overrides(data.parse_columns(columns_text), "data.columns"))
    cfg = form.build(root, path, run_name.strip(), sets)
    model = files.model_spec(root, cfg.model)  # a folder under the runs folder, the default, or a cached hub id
    if model != cfg.model:
        sets.append(f"model={model}")
        cfg = form.build(root, path, run_name.strip(), sets)
    return cfg, form.command(root, path, run_name.strip(), sets)


def _on_plan(root: Path, fields: list[form.Field], picked_name: str | None, roles_text: str, columns_text: str,
             run_name: str, *values: Any) -> tuple[Any, ...]:
    import gradio as gr

    try:
        cfg, line = _train_config(root, fields, picked_name, roles_text, columns_text, run_name, values)
    except TunesmithError as err:
        return "error: " + err.render(), "", "", gr.update(interactive=False)
    text, ok = form.plan_text(cfg)
    return text, line, cfg.to_yaml(), gr.update(interactive=ok)


def _on_start(root: Path, fields: list[form.Field], picked_name: str | None, roles_text: str, columns_text: str,
              run_name: str, replace: bool, *values: Any) -> tuple[str, str, bool]:
    """(status line, the refusal kept for the status line or '', the overwrite box: always unticked again)."""
    try:
        cfg, _ = _train_config(root, fields, picked_name, roles_text, columns_text, run_name, values)
        job = jobs.start(root, cfg, overwrite=replace)
    except TunesmithError as err:
        return "error: " + err.render(), "error: " + err.render(), False
    return f"**{job.name}**: started", "", False


def _on_resume(root: Path) -> str:
    job = jobs.current(root)
    try:
        return f"**{jobs.resume(root, job.name).name}**: resumed" if job else "nothing to resume"
    except TunesmithError as err:
        return "error: " + err.render()


def _progress(root: Path, refused: str = "") -> tuple[str, Any, str]:
    """The current job's status line, loss points and log tail (read from its run folder and log); a refused
    Start's message stays on the status line instead of the previous job's state."""
    job = jobs.current(root)
    if job is None:
        return refused, _points(()), ""
    p = jobs.progress(root, job.name)
    line = refused or f"**{job.name}**: {p.state}"
    if p.total:
        line += f" · step {p.step} of {p.total}"
    if p.eta_seconds is not None:
        line += f" · about {int(p.eta_seconds) // 60} min {int(p.eta_seconds) % 60:02d} s left"
    return line, _points(p.losses), p.log_tail


def _points(losses: Any) -> Any:
    """The chart's frame. Both series are named in every frame, with a point left empty (not drawn): Gradio's
    front end takes the colour domain from the first frame it draws, and an empty first frame left the lines
    without a colour (seen in Chromium)."""
    import pandas as pd

    anchors = [(0, "train", float("nan")), (0, "eval", float("nan"))]
    return pd.DataFrame([*anchors, *losses], columns=["step", "series", "loss"])


def runs_tab(root: Path, t: Any) -> Any:
    import gradio as gr

    with gr.Tab(t("runs"), elem_id="tab-runs") as tab:
        rows = files.runs_table(root)
        table = gr.Dataframe(value=rows, headers=words("columns", "en").split("|"), interactive=False,
                             elem_id="runs")
        with gr.Row():
            refresh = gr.Button(t("refresh"), elem_id="refresh")
            which = gr.Dropdown(choices=[r[0] for r in rows], label=t("run"), elem_id="which")
            other = gr.Dropdown(choices=[r[0] for r in rows], value=None, label=t("compare_with"), elem_id="other")
        side = gr.Dataframe(headers=words("side_columns", "en").split("|"), interactive=False, visible=False,
                            elem_id="side")
        report = gr.HTML(elem_id="report")

        def refreshed() -> tuple[Any, ...]:
            rows = files.runs_table(root)  # read the run folders once for the table and the menus
            names = [r[0] for r in rows]
            return rows, gr.update(choices=names), gr.update(choices=names)

        def compared(first: str | None, second: str | None) -> Any:
            if not first or not second:
                return gr.update(visible=False)
            return gr.update(value=files.side_by_side(root, first, second), visible=True,
                             headers=["", first, second])

        for event in (refresh.click, tab.select):
            event(refreshed, None, [table, which, other])
        which.change(lambda name: files.report_frame(root, name or ""), which, report)
        which.change(compared, [which, other], side)
        other.change(compared, [which, other], side)
    return which, report, table


def table_headers() -> Any:
    """A page-load handler: the Runs table's column names in the browser's language (Gradio translates labels,
    not a table's header). Gradio hands the request to a parameter annotated gr.Request."""
    import gradio as gr

    def headers(request):  # noqa: ANN001, ANN202
        lang = browser_language(request.headers.get("accept-language") if request is not None else None)
        return gr.update(headers=words("columns", lang).split("|"))

    headers.__annotations__ = {"request": gr.Request}  # set here: gradio is imported lazily, in functions
    return headers


def chat_tab(root: Path, t: Any) -> None:
    import gradio as gr

    with gr.Tab(t("chat"), elem_id="tab-chat") as tab:
        with gr.Row():
            run = gr.Dropdown(choices=files.run_names(root, "finished"), value=None, label=t("finished_run"),
                              elem_id="chat-run")
            system = gr.Textbox(label=t("system"), elem_id="chat-system")
            temperature = gr.Slider(0, 1.5, value=0, step=0.1, label=t("temperature"), elem_id="chat-temperature")
            longest = gr.Slider(8, 1024, value=128, step=8, label=t("max_new"), elem_id="chat-max-new")
        with gr.Row():
            base = gr.Chatbot(label=t("base_model"), elem_id="chat-base", height=360)
            tuned = gr.Chatbot(label=t("tuned_model"), elem_id="chat-tuned", height=360)
        message = gr.Textbox(label=t("message"), elem_id="chat-message")
        with gr.Row():
            send = gr.Button(t("send"), variant="primary", elem_id="chat-send")
            clear = gr.Button(t("clear"), elem_id="chat-clear")
        with gr.Row():  # preference collection (collect.py): choices go to ROOT/preferences/<run>.jsonl
            picks = {c: gr.Button(t(f"{c}_better" if c in ("base", "tuned") else c), elem_id=f"chat-{c}", size="sm")
                     for c in ("base", "tuned", "both_bad", "tuned_good", "tuned_bad")}
            mine = gr.Textbox(label=t("my_answer"), elem_id="chat-mine", scale=3)
            picks["mine"] = gr.Button(t("use_mine"), elem_id="chat-use-mine", size="sm")
        saved = gr.Markdown(elem_id="chat-saved")

        def talk(name: str | None, system_text: str, temp: float, most: float, user: str, hb: list[Any],
                 ht: list[Any]) -> Any:
            if not name or not user.strip():
                yield hb, ht, user
                return
            options = {"temperature": float(temp), "max_new_tokens": int(most)}
            pair = duo.pair(files.inside(root, name), system_text.strip() or None, options)
            asked = {"role": "user", "content": user}
            for b, tt, rb, rt in duo.answer_both(pair, hb, ht, user):
                yield ([*hb, asked, {"role": "assistant", "content": b + _cut(rb)}],
                       [*ht, asked, {"role": "assistant", "content": tt + _cut(rt)}], "")

        for event, name in ((send.click, "chat"), (message.submit, "chat_submit")):
            event(talk, [run, system, temperature, longest, message, base, tuned], [base, tuned, message],
                  api_name=name)
        for choice, button in picks.items():
            button.click(lambda name, sys_text, hb, ht, edit, c=choice: duo.record(
                root, files.inside(root, name).name, sys_text.strip() or None, hb, ht, c, edit) if name else "",
                [run, system, base, tuned, mine], saved, api_name=f"prefer_{choice}")
        for event in (clear.click, run.change):
            event(lambda: ([], []), None, [base, tuned])
        tab.select(lambda name: gr.update(choices=files.run_names(root, "finished"), value=name), run, run)


def _cut(reply: Any) -> str:
    return " [cut at max_new_tokens]" if reply is not None and not reply.stopped else ""


def export_tab(root: Path, t: Any) -> None:
    import gradio as gr

    from tunesmith import export

    with gr.Tab(t("export"), elem_id="tab-export") as tab:
        with gr.Row():
            run = gr.Dropdown(choices=files.run_names(root, "finished"), value=None, label=t("finished_run"),
                              elem_id="export-run")
            fmt = gr.Radio(list(export.FORMATS), value="merged", label=t("format"), elem_id="export-format")
            quant = gr.Dropdown(list(export.QUANTS), value="f16", label=t("quant"), elem_id="export-quant")
        replace = gr.Checkbox(False, label=t("export_overwrite"), elem_id="export-overwrite")
        go = gr.Button(t("export_go"), variant="primary", elem_id="export-go")
        result = gr.Markdown(elem_id="export-result")

        def exported(name: str | None, fmt_name: str, quant_name: str, overwrite: bool) -> tuple[str, bool]:
            """(the result, the overwrite box: unticked again, so each replacing export is asked for)."""
            return _export(name, fmt_name, quant_name, overwrite), False

        def _export(name: str | None, fmt_name: str, quant_name: str, overwrite: bool) -> str:
            if not name:
                return "pick a finished run"
            suffix = "" if fmt_name == "merged" else f"-{quant_name}"
            out = root / files.EXPORTS / f"{name}-{fmt_name}{suffix}"
            line = shlex.join(["tunesmith", "export", str(root / name), "--format", fmt_name, "--quant", quant_name,
                               "--out", str(out)] + ["--overwrite"] * overwrite)
            try:
                res = export.export(files.inside(root, name), out, fmt=fmt_name, quant=quant_name,
                                    overwrite=overwrite, say=lambda _: None)
            except TunesmithError as err:
                return f"`{line}`\n\n**failed**: {err.render()}"
            listed = "\n".join(f"- `{f}`" for f in res.files)
            return (f"`{line}`\n\n**{'passed' if res.check.passed else 'failed'}**: {res.check.describe()}\n\n"
                    f"{out}:\n{listed}")

        go.click(exported, [run, fmt, quant, replace], [result, replace], api_name="export")
        tab.select(lambda name: gr.update(choices=files.run_names(root, "finished"), value=name), run, run)
