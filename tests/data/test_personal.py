"""Personal data in the rows (data/personal.py): counted and shown by inspect, never changed; narrow enough that
version strings, dates and bare long numbers are not counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_json
from tunesmith.config import DataConfig
from tunesmith.data import personal, summary
from tunesmith.records import Conversation, Message


def _row(prompt: str, answer: str, source: str = "f.jsonl:1") -> Conversation:
    return Conversation((Message("user", prompt), Message("assistant", answer)), source)


@pytest.mark.parametrize(("text", "kind"), [
    ("제 번호는 010-1234-5678 이에요", "phone number"), ("call +82 10-1234-5678", "phone number"),
    ("010 1234 5678", "phone number"), ("서울 02-123-4567", "phone number"),
    ("minji.kim+ai@example.co.kr 로 보내요", "e-mail address"),
    ("900101-1234567", "resident registration number"), ("1234-5678-9012-3456", "card number"),
    ("1234 5678 9012 3456", "card number")])
def test_each_kind_is_found(text: str, kind: str):
    [found] = personal.scan([_row("q", text)])
    assert (found.kind, found.rows, found.in_answers, found.where) == (kind, 1, 1, ("f.jsonl:1",))


@pytest.mark.parametrize("text", ["version 2024-01-01-12345", "3.14 and 20240101", "id 1234567890123",
                                  "999999-1234567 (no 99th month)", "0101234567", "a@b", "1234-5678 9012-3456",
                                  "2026. 12. 7. 오후 3:04"])
def test_look_alikes_are_not_counted(text: str):
    assert personal.scan([_row(text, text)]) == ()


def test_inspect_says_where_and_keeps_the_rows(tmp_path: Path):
    rows = [{"prompt": "연락처?", "completion": "010-1234-5678 입니다"},
            {"prompt": "제 번호 010-9876-5432 로 연락 주세요", "completion": "네"},
            {"prompt": "안녕", "completion": "안녕하세요"}]
    path = write_json(tmp_path / "rows.json", rows)
    s = summary.summarize([path], DataConfig(train=[path]))
    assert len(s.usable) == 3 and "010-1234-5678" in s.usable[0].messages[1].content  # kept as it is
    assert summary.to_json(s)["personal"] == [{"kind": "phone number", "rows": 2, "in_answers": 1,
                                               "where": ["rows.json[0]", "rows.json[1]"]}]
    shown = summary.render(s)
    assert ("privacy: 2 rows hold what looks like a phone number (1 in an answer the model learns to write), "
            "e.g. rows.json[0], rows.json[1]") in shown and "mask or remove them before training" in shown


def test_train_and_plan_warn_in_one_line_through_the_prepared_data(tmp_path: Path):
    """PreparedData.warnings: what train and plan print as "warning: ..." and the report shows."""
    from tunesmith.data.prepare import prepare

    rows = [{"prompt": f"질문 {i}", "completion": f"답변 {i}" + (" minji@example.com" if i < 2 else "")}
            for i in range(12)]
    path = write_json(tmp_path / "rows.json", rows)
    data = prepare(DataConfig(train=[path]))
    [line] = [w for w in data.warnings if w.startswith("privacy:")]
    assert line == ("privacy: 2 rows with what looks like an e-mail address (2 in an answer): a tuned model can "
                    "repeat what it was trained on; `tunesmith inspect` shows where")
