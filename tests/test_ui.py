"""tunesmith ui: the pieces that are not UI (paths, uploads, run states, role suggestions), then the app in a real
headless Chromium (Playwright driving the system browser) against a UI this test starts on a free port."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLE


def test_paths_outside_the_runs_folder_are_refused(tmp_path: Path):
    from tunesmith.errors import TunesmithError
    from tunesmith.ui.files import inside

    root = tmp_path / "runs"
    (root / "a").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("no", encoding="utf-8")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    assert inside(root, "a") == (root / "a").resolve()
    for bad in ("../secret.txt", "a/../../secret.txt", str(tmp_path / "secret.txt"), "/etc/passwd", "link"):
        with pytest.raises(TunesmithError, match="outside"):
            inside(root, bad)


def test_uploads_are_kept_under_their_sha256_and_offered_for_picking(tmp_path: Path):
    import hashlib

    from tunesmith.ui.files import data_files, save_upload

    root = tmp_path / "runs"
    src = tmp_path / "mine.jsonl"
    src.write_text((SAMPLE / "counsel_en.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    kept = save_upload(root, src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert kept == root / "uploads" / digest[:16] / "mine.jsonl" and kept.read_bytes() == src.read_bytes()
    assert (root / "uploads" / f"{digest[:16]}.sha256").read_text(encoding="utf-8") == f"{digest}  mine.jsonl\n"
    assert save_upload(root, src) == kept  # the same bytes land in the same place
    run = root / "demo"  # a run folder's own JSON files are not offered as data
    (run / "eval").mkdir(parents=True)
    (run / ".tunesmith-run").write_text("a tunesmith run folder\n", encoding="utf-8")
    (run / "eval" / "summary.json").write_text("{}", encoding="utf-8")
    (root / "other.csv").write_text("prompt,completion\nhi,hello\n", encoding="utf-8")
    assert data_files(root) == ["other.csv", f"uploads/{digest[:16]}/mine.jsonl"]


def test_a_file_that_needs_a_role_map_gets_the_clis_suggestion_as_one_click(tmp_path: Path):
    from tunesmith.ui.data import inspect_file

    root = tmp_path / "runs"
    root.mkdir()
    # The shape of the shared therapist corpus: one flat list of turns, the answers under "therapist".
    turns = [t for i in range(4) for t in ({"role": "user", "content": f"I cannot sleep {i}"},
                                            {"role": "therapist", "content": "That sounds exhausting. What keeps "
                                                                             "you up at night?"})]
    (root / "therapy.json").write_text(json.dumps(turns), encoding="utf-8")
    text, suggested, _ = inspect_file(root, "therapy.json", "")
    assert "unknown role name(s) 'therapist'" in text and "roles:" in text
    assert suggested == {"roles": "therapist=assistant"}
    text, suggested, _ = inspect_file(root, "therapy.json", suggested["roles"])
    assert suggested == {} and "4 usable conversations" in text and "therapist -> assistant" in text


def test_a_file_that_needs_a_field_map_gets_it_as_one_click_and_trains_with_it(tmp_path: Path):
    """Fields no format names (synth's seed_word/answer): the suggested field map, then a clean read; the Train
    tab's config carries it as data.columns."""
    from tunesmith.errors import TunesmithError
    from tunesmith.ui import form
    from tunesmith.ui.data import inspect_file, parse_columns

    root = tmp_path / "runs"
    root.mkdir()
    rows = [{"seed_word": f"불면 {i}", "answer": "잠이 오지 않으면 많이 지치지요."} for i in range(3)]
    (root / "seeds.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    text, suggested, _ = inspect_file(root, "seeds.jsonl", "")
    assert "cannot tell the data format" in text and suggested == {"columns": "prompt=seed_word, completion=answer"}
    text, suggested, _ = inspect_file(root, "seeds.jsonl", "", suggested["columns"])
    assert suggested == {} and "3 usable conversations" in text
    sets = form.roles_overrides(parse_columns("prompt=seed_word, completion=answer"), "data.columns")
    cfg = form.build(root, root / "seeds.jsonl", "mine", sets)
    assert cfg.data.columns == {"prompt": "seed_word", "completion": "answer"}
    with pytest.raises(TunesmithError, match="field mapping 'seed_word' is not PROMPT=..."):
        parse_columns("seed_word")


def test_the_train_form_is_the_config_schema_and_its_command_means_the_same_config(tmp_path: Path):
    """Every config key is in the form with its description (but the ones the UI sets itself); the values typed
    become the config the UI trains with, and "Copy as command", parsed by the CLI itself, builds the same one."""
    import shlex

    import typer

    from tunesmith import cli, config_docs
    from tunesmith.ui import form

    fields = form.fields()
    keys = [f.key for f in fields]
    every = [line.split("`")[1] for line in config_docs.reference_markdown().split("## `tunesmith synth`")[0].splitlines()
             if line.startswith("- `")]
    assert sorted(keys) == sorted(k for k in every if k not in form.NOT_IN_FORM)
    assert all(f.description for f in fields), [f.key for f in fields if not f.description]
    assert keys[: len(form.BASIC)] == [k for k in keys if k in form.BASIC]  # the basic ones come first
    assert form.overrides(fields, [f.shown() for f in fields]) == []  # an untouched form changes nothing

    typed = {"train.epochs": 1, "train.learning_rate": 5e-4, "lora.target_modules": "[q_proj, v_proj]",
             "template.max_length": "256", "data.max_rows": "40", "data.system": "Be kind: always.",
             "train.report_to": "[]", "eval.retention": "off", "lora.dora": True}
    values = [typed.get(f.key, f.shown()) for f in fields]
    sets = form.overrides(fields, values) + form.roles_overrides({"therapist": "assistant"})
    assert len(sets) == len(typed) + 1
    root, data = tmp_path / "runs", tmp_path / "my data.jsonl"
    cfg = form.build(root, data, "mine", sets)
    assert (cfg.train.epochs, cfg.lora.target_modules, cfg.template.max_length, cfg.data.max_rows) == (
        1, ["q_proj", "v_proj"], 256, 40)
    assert cfg.data.system == "Be kind: always." and cfg.train.report_to == [] and cfg.data.roles == {
        "therapist": "assistant"} and cfg.output_dir == root.resolve() and cfg.data.train == [data]

    argv = shlex.split(form.command(root, data, "mine", sets))
    assert argv[:2] == ["tunesmith", "train"]
    group = typer.main.get_command(cli.app)
    train = group.get_command(group.make_context("tunesmith", argv[1:], resilient_parsing=True), "train")
    p = train.make_context("train", argv[2:]).params
    flags = {k: p[k] for k in ("name", "output_dir")}
    assert cli._config(p["config_path"], p["set_"], p["data"], **flags) == cfg

    bad = [("oops: [" if f.key == "lora.target_modules" else v) for f, v in zip(fields, values)]
    with pytest.raises(Exception, match="lora.target_modules"):
        form.overrides(fields, bad)


def test_run_states_and_the_inline_report(tiny_run: Path, tmp_path: Path):
    from tunesmith.ui.files import report_frame, runs_table

    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "done")
    (root / "done" / ".lock").write_text("")
    unfinished = root / "half"
    shutil.copytree(tiny_run, unfinished)
    (unfinished / "report.html").unlink()
    (unfinished / ".lock").write_text("")
    failed = root / "broke"
    shutil.copytree(unfinished, failed)
    (failed / "failed.txt").write_text("error: out of memory while training\n", encoding="utf-8")
    rows = {r[0]: r for r in runs_table(root)}
    assert rows["done"][1] == "finished" and "→" in rows["done"][2] and rows["done"][3] in ("ok", "forgetting")
    assert rows["half"][1] == "stopped" and rows["broke"][1] == "failed"
    assert "out of memory while training" in report_frame(root, "broke")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               str(unfinished / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert {r[0]: r[1] for r in runs_table(root)}["half"] == "running"
    finally:
        holder.kill()
        holder.wait()
    frame = report_frame(root, "done")
    assert frame.startswith("<div class='ts-report'") and "<h2>Did tuning help?</h2>" in frame
    assert "data:image/png;base64," in frame and "<body>" not in frame
    assert "no report yet (stopped)" in report_frame(root, "half")


# --- Hostile use (issue 26): the board's own HTTP API, as a script would call it ---------------------------------

@pytest.fixture
def board(tiny_run: Path, tmp_path: Path):  # noqa: ANN201
    """The UI app in this process on a free loopback port (uploads capped at 1 MB), over a runs folder holding
    one finished run; yields (base url, runs folder, call(api_name, *data) -> (how it ended, data)): 'complete',
    'error' (the handler refused), or 'refused 400' (the request itself, before Gradio saw it)."""
    import threading

    import httpx
    import uvicorn

    from tunesmith.ui.app import app

    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "tiny")
    (root / "tiny" / ".lock").write_text("")
    server = uvicorn.Server(uvicorn.Config(app(root, max_upload_mb=1), host="127.0.0.1", port=_free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.config.port}"

    def call(name: str, *data: object) -> tuple[str, object]:
        res = httpx.post(f"{base}/gradio_api/call/{name}", json={"data": list(data)}, timeout=60)
        if res.status_code != 200:
            return f"refused {res.status_code}", res.json()
        text = httpx.get(f"{base}/gradio_api/call/{name}/{res.json()['event_id']}", timeout=300).text
        kind = re.findall(r"^event: (\w+)", text, re.M)[-1]
        body = re.findall(r"^data: (.*)$", text, re.M)[-1]
        return kind, json.loads(body) if body.strip() not in ("", "null") else None

    yield base, root, call
    server.should_exit = True
    thread.join(timeout=30)


def _file(path: str | Path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def test_the_board_takes_only_files_it_received_and_serves_only_the_runs_folder(board, tmp_path: Path):
    import httpx

    base, root, call = board
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:secret\n", encoding="utf-8")
    for named in ("/etc/passwd", str(secret), str(root / "tiny" / "config.yaml"), "http://127.0.0.1:9/x"):
        kind, data = call("upload", _file(named))  # the client names a path (or a URL for Gradio to fetch)
        assert kind == "refused 400" and "was not uploaded to this UI" in data["error"], (named, data)
    kind, data = call("chat", "tiny", "", 0, 8, "hi", [{"role": "user", "content": _file("/etc/passwd")}], [])
    assert kind == "refused 400"
    assert not (root / "uploads").exists() and not [p for p in root.rglob("*") if p.name == "passwd"]
    for path in ("/etc/passwd", str(secret)):  # and nothing outside the runs folder is served
        res = httpx.get(f"{base}/gradio_api/file={path}", timeout=30)
        assert res.status_code >= 400 and "root:x" not in res.text
    # a real upload (Gradio's upload route, then the event naming what it returned) is kept and picked
    sent = httpx.post(f"{base}/gradio_api/upload", timeout=60,
                      files={"files": ("sha256", (SAMPLE / "counsel_en.jsonl").read_bytes())}).json()
    received = Path(sent[0])
    assert root.resolve() in received.parents  # Gradio wrote it under the runs folder (.ui/received-*)
    kind, data = call("upload", _file(received))
    assert kind == "complete" and data[0]["value"].endswith("/sha256"), data
    kept = root / data[0]["value"]
    assert kept.read_bytes() == (SAMPLE / "counsel_en.jsonl").read_bytes()  # an upload named sha256 stays itself
    assert not received.exists()  # moved out of Gradio's folder, not left twice
    big = httpx.post(f"{base}/gradio_api/upload", timeout=60, files={"files": ("big.jsonl", b"x" * 1_500_000)})
    assert big.status_code == 413  # over --max-upload-mb (1 here)


def test_the_board_export_never_replaces_without_that_clicks_consent(board):
    base, root, call = board
    kind, data = call("export", "tiny", "merged", "f16", False)
    assert kind == "complete" and "**passed**" in data[0] and data[1] is False, data
    out = root / "exports" / "tiny-merged"
    (out / "my_notes.txt").write_text("mine", encoding="utf-8")
    kind, data = call("export", "tiny", "merged", "f16", False)  # the box is unticked: refused
    assert "exists and is not empty" in data[0] and data[1] is False
    kind, data = call("export", "tiny", "merged", "f16", True)  # ticked: still refused, the notes are not ours
    assert "my_notes.txt" in data[0] and "nothing is replaced" in data[0] and data[1] is False
    assert (out / "my_notes.txt").read_text(encoding="utf-8") == "mine" and (out / "model.safetensors").is_file()


def test_the_chat_tabs_buttons_write_preferences_that_train(board):
    """Base vs tuned side by side, then a click: a pair (or two KTO rows) in ROOT/preferences/<run>.jsonl."""
    from tunesmith.data import preference
    from tunesmith.ui import duo

    base, root, call = board
    kind, data = call("prefer_tuned", "tiny", "", [], [], "")
    assert kind == "complete" and "nothing to record yet" in data[0]
    kind, data = call("chat", "tiny", "", 1.0, 8, "I cannot sleep before exams.", [], [])
    assert kind == "complete", data
    hb, ht = data[0], data[1]
    kind, data = call("prefer_tuned", "tiny", "", hb, ht, "")
    assert kind == "complete" and data[0].startswith("saved: tiny.jsonl"), data
    kind, data = call("prefer_mine", "tiny", "", hb, ht, "That sounds stressful. What keeps you awake?")
    assert data[0].startswith("saved"), data
    kind, data = call("prefer_tuned", "tiny", "", hb, ht, "")  # the same click twice: not written again
    assert data[0].startswith("already saved"), data
    kind, data = call("prefer_both_bad", "tiny", "", hb, ht, "")
    assert data[0].startswith("saved: tiny.kto.jsonl"), data
    kind, data = call("prefer_tuned_good", "tiny", "", hb, ht, "")  # thumbs up on the tuned answer: one KTO row
    assert data[0].startswith("saved: tiny.kto.jsonl"), data
    pairs = preference.load(root / "preferences" / "tiny.jsonl")
    answer = lambda h: duo.turns(h)[-1].content.removesuffix(" [cut at max_new_tokens]").strip()  # noqa: E731
    assert [(p.chosen, p.rejected) for p in pairs.pairs] == [
        (answer(ht), answer(hb)), ("That sounds stressful. What keeps you awake?", answer(ht))]
    assert [r.good for r in preference.load(root / "preferences" / "tiny.kto.jsonl").rated] == [False, False, True]
    kind, data = call("prefer_tuned", "../../etc", "", hb, ht, "")  # a run outside the runs folder: refused
    assert kind == "error" and "not in the list of choices" in data["error"], (kind, data)  # the dropdown's own check
    assert sorted(p.name for p in (root / "preferences").iterdir()) == ["tiny.jsonl", "tiny.kto.jsonl"]


def test_the_model_box_cannot_tell_which_folders_exist_outside_the_runs_folder(tiny_model_dir: Path,
                                                                              tmp_path: Path):
    from tunesmith.ui.data import preview_html

    root = tmp_path / "runs"
    root.mkdir()
    (root / "rows.jsonl").write_text((SAMPLE / "counsel_en.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "real-folder").mkdir()
    pages = {spec: preview_html(root, "rows.jsonl", "", spec).replace(spec, "SPEC")
             for spec in (str(tmp_path / "real-folder"), str(tmp_path / "no-such-folder"), "/etc", "/nowhere",
                          "../real-folder", "../no-such", "owner/not-cached")}
    assert len(set(pages.values())) == 1 and "is not the default model" in next(iter(pages.values())), pages
    shutil.copytree(tiny_model_dir, root / "models" / "tiny")  # a model folder under the runs folder loads
    assert "tokens supervised" in preview_html(root, "rows.jsonl", "", "models/tiny")


def test_the_train_tab_refuses_run_name_dot_and_keeps_a_refusal_on_its_status_line(tmp_path: Path):
    from tunesmith.ui import form, jobs, tabs

    root = tmp_path / "runs"
    root.mkdir()
    (root / "rows.jsonl").write_text((SAMPLE / "counsel_en.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    fields = form.fields()
    defaults = [f.shown() for f in fields]
    for name in (".", ".."):
        planned, *_, start = tabs._on_plan(root, fields, "rows.jsonl", "", "", name, *defaults)
        assert planned.startswith("error:") and "folder name" in planned and start["interactive"] is False
    status, refused, overwrite = tabs._on_start(root, fields, "rows.jsonl", "", "", ".", True, *defaults)
    assert status.startswith("error:") and refused == status and overwrite is False  # the box unticks
    (root / ".ui").mkdir(exist_ok=True)
    jobs._job_file(root).write_text(json.dumps({"name": "earlier", "pid": 0, "config": "", "log": "", "started": 0}),
                                    encoding="utf-8")  # an earlier job that finished
    assert tabs._progress(root, refused)[0] == refused  # not the earlier job's "finished"


def test_a_non_loopback_host_needs_allow_remote(tmp_path: Path):
    from tests.conftest import fails, tunesmith

    res = tunesmith("ui", "--host", "0.0.0.0", "--runs", str(tmp_path / "runs"))
    fails(res, "would let other machines reach the UI", "--allow-remote")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ui_server(tiny_run: Path, tmp_path: Path):  # noqa: ANN201
    """`tunesmith ui` as a user starts it, on a free port, over a runs folder holding one finished run."""
    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "tiny")
    (root / "tiny" / ".lock").write_text("")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith", "ui", "--port", str(port), "--runs", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ})
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read())
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/", root
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.skipif(_chromium() is None and not os.environ.get("TUNESMITH_REQUIRE_CHROMIUM"),
                    reason="no chromium here (.ci/run installs it and sets TUNESMITH_REQUIRE_CHROMIUM=1)")
def test_in_chromium_from_a_data_file_to_a_trained_reported_chatted_exported_run(ui_server, tiny_model_dir: Path,
                                                                                 tmp_path: Path):
    """A person's whole path in the browser: upload a file and see its counts; plan and start a short training
    and see the loss chart gain points until the run finishes; open its report and compare it with another run;
    chat with base and tuned side by side; export it with the reload check. A screenshot of each tab."""
    from playwright.sync_api import expect, sync_playwright

    url, root = ui_server
    shutil.copytree(tiny_model_dir, root / "models" / "tiny")  # the UI loads models from under its runs folder
    model = Path("models/tiny")
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join((SAMPLE / "counsel_en.jsonl").read_text(encoding="utf-8").splitlines()[:12]) + "\n",
                    encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1400}, locale="en-US")
        page.goto(url)
        _data_tab(page, model, data, tmp_path)
        _train_tab(page, model, tmp_path)
        _runs_tab(page, tmp_path)
        _chat_tab(page, tmp_path)
        _export_tab(page, tmp_path)
        ko = browser.new_page(viewport={"width": 1280, "height": 900}, locale="ko-KR")  # a Korean browser
        ko.goto(url)
        for tab in ("데이터", "학습", "실행 기록", "대화", "내보내기"):
            expect(ko.get_by_role("tab", name=tab)).to_be_visible(timeout=30_000)
        ko.get_by_role("tab", name="실행 기록").click()
        expect(ko.locator("#runs")).to_contain_text("상태", timeout=30_000)  # the table's header too
        ko.screenshot(path=str(tmp_path / "data_ko.png"))
        browser.close()
    if os.environ.get("TUNESMITH_UI_SHOTS"):  # refresh the screenshots under docs/ui (a developer's run)
        shots = Path(os.environ["TUNESMITH_UI_SHOTS"])
        shots.mkdir(parents=True, exist_ok=True)
        for name in ("data", "train", "runs", "chat", "export", "data_ko"):
            shutil.copy(tmp_path / f"{name}.png", shots / f"{name}.png")
    uploads = list((root / "uploads").glob("*/mine.jsonl"))
    assert len(uploads) == 1 and uploads[0].read_bytes() == data.read_bytes()
    assert (root / "mine" / "report.html").is_file() and (root / "exports" / "mine-merged" / "model.safetensors").is_file()
    log = (root / ".ui" / "mine.log").read_text(encoding="utf-8")  # Stop, then Resume from its checkpoint
    assert "stopped on request at step" in log and "resuming training from checkpoint-" in log
    rows = [json.loads(line) for line in (root / "mine" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 151))  # each step once across the stop
    assert [r["step"] for r in rows if "eval_loss" in r] == [0, 75, 150]


def _fill(page, key: str, value: object) -> None:  # noqa: ANN001
    box = page.locator(f"#cfg-{key} textarea, #cfg-{key} input").first
    box.fill(str(value))
    box.press("Tab")


def _pick(page, menu: str, option: str) -> None:  # noqa: ANN001
    page.locator(f"#{menu} input").click()
    page.locator(f"#{menu}").get_by_role("option", name=option, exact=True).click()


def _data_tab(page, model: Path, data: Path, shots: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.locator("#model textarea, #model input").first.fill(str(model))
    # A file whose answers are under "therapist": the CLI's role-map suggestion, applied in one click.
    therapy = shots / "therapy.json"
    therapy.write_text(json.dumps([t for i in range(3) for t in ({"role": "user", "content": f"I cannot sleep {i}"},
                                                                 {"role": "therapist", "content": "What keeps you "
                                                                                                  "up at night?"})]),
                       encoding="utf-8")
    page.locator("#upload input[type=file]").set_input_files(str(therapy))
    expect(page.locator("#summary textarea")).to_have_value(re.compile("unknown role name"), timeout=60_000)
    page.locator("#apply").click()
    expect(page.locator("#roles textarea, #roles input").first).to_have_value("therapist=assistant")
    expect(page.locator("#summary textarea")).to_have_value(re.compile("3 usable conversations"), timeout=60_000)
    page.locator("#roles textarea, #roles input").first.fill("")
    page.locator("#upload input[type=file]").set_input_files(str(data))
    summary = page.locator("#summary textarea")
    expect(summary).to_have_value(re.compile("12 usable conversations"), timeout=60_000)
    expect(page.locator("#preview mark").first).to_be_visible(timeout=60_000)  # supervised tokens
    assert "0 rows skipped" in summary.input_value()
    page.screenshot(path=str(shots / "data.png"), full_page=True)


def _train_tab(page, model: Path, shots: Path) -> None:  # noqa: ANN001
    """Plan, start, reload the page, Stop (a checkpoint), Resume to the end: the chart gains points each time."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-data textarea, #train-data input").first).to_have_value(re.compile("mine.jsonl$"))
    expect(page.locator("#run-name textarea, #run-name input").first).to_have_value("mine")
    _fill_train_form(page, model)
    expect(page.locator("#start")).to_be_disabled()  # nothing starts before the plan was shown
    page.locator("#plan-button").click()
    plan = page.locator("#plan textarea")
    expect(plan).to_have_value(re.compile("plan: steps: 2 per epoch, 150 in total"), timeout=120_000)
    assert "trainable 8,192 of" in plan.input_value() and "estimated peak memory" in plan.input_value()
    expect(page.locator("#command")).to_contain_text("tunesmith train --data")
    # CodeMirror draws only the lines in the window: bring the config's middle (the train section) into view
    page.locator("#yaml").evaluate("el => el.scrollIntoView({block: 'center'})")
    expect(page.locator("#yaml")).to_contain_text("max_steps: 150")
    page.locator("#start").click()
    points, status = page.locator("#chart [aria-roledescription='point']"), page.locator("#status")
    expect(status).to_contain_text("mine", timeout=30_000)
    page.reload()  # the job lives on the server: a reloaded page finds it
    page.get_by_role("tab", name="Train").click()
    _wait(lambda: points.count() > 2, seconds=120)
    page.locator("#stop").click()
    expect(status).to_contain_text("stopped", timeout=60_000)
    time.sleep(3)  # a tick after the stop
    at_stop = points.count()
    page.locator("#resume").click()
    expect(status).to_contain_text("running", timeout=120_000)
    expect(status).to_contain_text("left", timeout=60_000)  # the ETA
    expect(status).to_contain_text("finished", timeout=300_000)
    expect(status).to_contain_text("step 150 of 150")
    time.sleep(3)
    final = points.count()
    assert 2 < at_stop < final and final >= 150, (at_stop, final)  # the chart gained points before and after
    assert "eval loss" in page.locator("#log textarea").input_value()  # the output's last lines: the summary
    lines = page.locator("#chart [aria-roledescription='line mark']")
    expect(lines).to_have_count(2)  # train and eval, each drawn in a colour of its own
    assert len({line.get_attribute("stroke") for line in lines.all()} - {None}) == 2
    page.screenshot(path=str(shots / "train.png"), full_page=True)


def _fill_train_form(page, model: Path) -> None:  # noqa: ANN001
    """150 steps of the tiny model (~0.1 s each), eval loss every 75: long enough to stop in the middle."""
    from playwright.sync_api import expect

    typed = {"model": model, "template-max_length": 128, "lora-r": 4, "train-max_steps": 150, "train-batch_size": 4,
             "train-learning_rate": 0.005, "data-min_eval": 4, "eval-max_rows": 4, "eval-max_new_tokens": 8,
             "train-logging_steps": 1, "train-eval_steps": 75, "train-report_to": "[]"}
    page.locator("#advanced").get_by_text("Advanced settings").click()
    # The folded fields mount when first opened; a value typed while they mount can be reset (seen once).
    expect(page.locator("#cfg-train-report_to textarea, #cfg-train-report_to input").first).to_be_visible()
    time.sleep(1)
    _pick(page, "cfg-train-eval_strategy", "steps")
    for key, value in typed.items():
        _fill(page, key, value)
    for key, value in typed.items():
        expect(page.locator(f"#cfg-{key} textarea, #cfg-{key} input").first).to_have_value(str(value))


def _runs_tab(page, shots: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Runs").click()
    expect(page.locator("#runs")).to_contain_text("mine", timeout=30_000)
    _pick(page, "which", "mine")
    expect(page.locator("#report h2").first).to_have_text("Did tuning help?", timeout=30_000)
    expect(page.locator("#report img").first).to_be_visible()  # the loss chart, a data: image
    _pick(page, "other", "tiny")
    expect(page.locator("#side")).to_contain_text("chrF", timeout=30_000)
    expect(page.locator("#side")).to_contain_text("r=4")
    page.screenshot(path=str(shots / "runs.png"), full_page=True)


def _chat_tab(page, shots: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Chat").click()
    _pick(page, "chat-run", "mine")
    temperature = page.locator("#chat-temperature input[type=number]")  # the tiny model's greedy answer is blank
    temperature.fill("1")
    temperature.press("Tab")
    page.locator("#chat-message textarea").fill("I cannot sleep before exams. What should I do?")
    page.locator("#chat-send").click()
    for side in ("#chat-base", "#chat-tuned"):
        expect(page.locator(f"{side} [data-testid=user]")).to_contain_text("I cannot sleep", timeout=60_000)
        expect(page.locator(f"{side} [data-testid=bot]")).to_contain_text(re.compile(r"\w{3}"), timeout=60_000)
    page.screenshot(path=str(shots / "chat.png"), full_page=True)


def _export_tab(page, shots: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Export").click()
    _pick(page, "export-run", "mine")
    page.locator("#export-go").click()
    result = page.locator("#export-result")
    expect(result).to_contain_text("passed", timeout=120_000)
    expect(result).to_contain_text("greedy generations identical")
    expect(result).to_contain_text("model.safetensors")
    page.screenshot(path=str(shots / "export.png"), full_page=True)


def _wait(what, seconds: float = 180, every: float = 0.2):  # noqa: ANN001, ANN202
    deadline = time.time() + seconds
    while time.time() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"waited {seconds} s for {what}")


def test_one_job_at_a_time_and_a_stop_while_loading_interrupts_it(tiny_model_dir: Path, small_jsonl: Path,
                                                                   tmp_path: Path):
    """A second Start is refused while the first child runs; Stop before the run folder is locked (the child is
    still loading) interrupts it: nothing was trained, so nothing is lost. (Stop during training, which saves a
    checkpoint, and Resume are driven from the browser test, which also checks each step's loss is logged once.)
    This also holds when pytest itself runs in the background with SIGINT ignored (jobs._default_sigint)."""
    from tests.conftest import tiny_config
    from tunesmith.ui import jobs

    root = tmp_path / "runs"
    cfg = tiny_config(tiny_model_dir, small_jsonl, root.resolve())
    job = jobs.start(root, cfg)
    with pytest.raises(Exception, match="still training"):
        jobs.start(root, cfg)
    assert jobs.progress(root, "tiny").state == "starting"
    # A signal that lands between the UI's fork and the child's exec is lost (the parent's handler runs in the
    # copy): a person cannot click that fast; the test waits for the exec.
    _wait(lambda: b"-m\x00tunesmith\x00train\x00" in Path(f"/proc/{job.pid}/cmdline").read_bytes())
    assert jobs.stop(root) == "tiny: interrupted while starting; Resume continues it"
    _wait(lambda: not job.alive(), seconds=60)
    assert jobs.progress(root, "tiny").state == "stopped" and not (root / "tiny" / "adapter").exists()


def test_a_job_that_fails_before_its_run_folder_exists_shows_failed_with_the_cli_error(tiny_model_dir: Path,
                                                                                        tmp_path: Path):
    from tests.conftest import tiny_config
    from tunesmith.ui import jobs

    root = tmp_path / "runs"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"oops": \n', encoding="utf-8")
    job = jobs.start(root, tiny_config(tiny_model_dir, bad, root.resolve()))
    _wait(lambda: not job.alive(), seconds=120)
    p = jobs.progress(root, "tiny")
    assert p.state == "failed" and p.step == 0 and p.losses == ()
    assert "error:" in p.log_tail and "bad.jsonl" in p.log_tail and "Traceback" not in p.log_tail
    assert "nothing is training" == jobs.stop(root)


def test_every_label_has_both_languages():
    from tunesmith.ui.words import LANGS, TEXT

    assert all(len(pair) == len(LANGS) and all(w.strip() for w in pair) for pair in TEXT.values())
    assert all(any("\uac00" <= ch <= "\ud7a3" for ch in pair[1]) for pair in TEXT.values())  # the Korean has Hangul


def test_the_board_takes_only_the_built_in_rewards_a_function_of_yours_is_code(tmp_path: Path):
    from tunesmith.errors import TunesmithError
    from tunesmith.ui import form

    root = tmp_path / "runs"
    cfg = form.build(root, root / "d.jsonl", "mine", ["train.objective=grpo", "grpo.rewards=[answer, number]"])
    assert cfg.grpo.rewards == ["answer", "number"]
    (root / "evil.py").parent.mkdir()
    (root / "evil.py").write_text("def f(completions, **kw):\n    return [0.0] * len(completions)\n", "utf-8")
    with pytest.raises(TunesmithError, match="the board takes the built-in rewards only") as err:
        form.build(root, root / "d.jsonl", "mine", ["train.objective=grpo", f"grpo.rewards=[{root}/evil.py:f]"])
    assert "--trust-code" in err.value.render()
