"""Remake the screenshots in docs/ui/ on the demo data (a developer's script, not part of `make test`).

    cd /tmp/shots && tunesmith demo                  # runs/demo: the finished demo run
    .venv/bin/python docs/ui/screenshots.py --runs /tmp/shots/runs --out docs/ui

Starts `tunesmith ui` on the runs folder, then in headless Chromium: Data (the demo's Korean file uploaded and
inspected), Train (a short run of the embedded SmolLM2 on it, captured while the chart grows, then to its end),
Runs (the demo's report, side by side with the short run), Chat (the demo's base and tuned models answering the
same message), Export (the demo merged, with its reload check), and the Train tab in a Korean browser.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "src" / "tunesmith" / "sample_data"
sys.path.insert(0, str(REPO))
from tests.test_ui import _fill, _pick  # noqa: E402  (the browser test's own ways to type into the form)


def _serve(runs: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith", "ui", "--port", str(port), "--runs", str(runs)])
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the UI did not start")


def _settled(page, *selectors: str, quiet: float = 4.0) -> None:  # noqa: ANN001
    """Wait until the texts under `selectors` stop changing (streamed answers written out)."""
    last, since = None, time.time()
    while time.time() - since < quiet:
        now = [page.locator(s).all_inner_texts() for s in selectors]
        if now != last:
            last, since = now, time.time()
        time.sleep(0.5)


def data(page, out: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.locator("#upload input[type=file]").set_input_files(str(SAMPLE / "counsel_ko.json"))
    expect(page.locator("#preview mark").first).to_be_visible(timeout=120_000)
    page.screenshot(path=str(out / "data.png"), full_page=True)


def train(page, out: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.locator("#upload input[type=file]").set_input_files(str(SAMPLE / "counsel_ko.json"))
    page.get_by_role("tab", name="Train").click()
    for key, value in {"train-max_steps": 12, "train-batch_size": 4}.items():
        _fill(page, key, value)
    page.locator("#advanced").get_by_text("Advanced settings").click()
    _fill(page, "eval-max_rows", 8)
    _fill(page, "train-logging_steps", 1)
    page.locator("#plan-button").click()
    expect(page.locator("#plan textarea")).to_have_value(re.compile("plan: steps"), timeout=120_000)
    page.locator("#start").click()
    expect(page.locator("#status")).to_contain_text("step 6 of 12", timeout=600_000)
    page.screenshot(path=str(out / "train.png"), full_page=False)
    expect(page.locator("#status")).to_contain_text("finished", timeout=900_000)


def runs(page, out: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Runs").click()
    _pick(page, "which", "demo")
    _pick(page, "other", "counsel_ko")
    expect(page.locator("#side")).to_contain_text("chrF", timeout=60_000)
    time.sleep(5)  # the report below it loads too
    page.screenshot(path=str(out / "runs.png"), full_page=False)


def chat(page, out: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Chat").click()
    _pick(page, "chat-run", "demo")
    page.locator("#chat-message textarea").fill("I have exams next week and I lie awake every night.")
    page.locator("#chat-send").click()
    for side in ("#chat-base", "#chat-tuned"):  # \S: JavaScript's \w is ASCII only
        expect(page.locator(f"{side} [data-testid=bot]")).to_contain_text(re.compile(r"\S"), timeout=300_000)
    _settled(page, "#chat-base [data-testid=bot]", "#chat-tuned [data-testid=bot]")
    page.screenshot(path=str(out / "chat.png"), full_page=False)


def export(page, out: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Export").click()
    _pick(page, "export-run", "demo")
    page.locator("#export-go").click()
    expect(page.locator("#export-result")).to_contain_text("greedy", timeout=600_000)
    page.screenshot(path=str(out / "export.png"), full_page=False)


STEPS = {"data": data, "train": train, "runs": runs, "chat": chat, "export": export}


def shots(url: str, out: Path, only: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale="en-US")
        page.goto(url)
        for name in only:
            if name in STEPS:
                STEPS[name](page, out)
        if "train_ko" in only:
            ko = browser.new_page(viewport={"width": 1280, "height": 1000}, locale="ko-KR")
            ko.goto(url)
            ko.get_by_role("tab", name="학습").click()
            time.sleep(4)
            ko.screenshot(path=str(out / "train_ko.png"), full_page=False)
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=Path, required=True, help="a runs folder holding the finished demo run")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--port", type=int, default=7870)
    ap.add_argument("--only", default=",".join([*STEPS, "train_ko"]), help="comma-separated: " + ", ".join(STEPS))
    args = ap.parse_args()
    proc = _serve(args.runs, args.port)
    try:
        shots(f"http://127.0.0.1:{args.port}/", args.out, args.only.split(","))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
