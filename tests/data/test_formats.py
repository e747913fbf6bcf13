"""Readers + formats on real-shaped files: detection over all rows, skips counted with their locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REALDATA, SAMPLE, write_json
from tunesmith.data import formats
from tunesmith.errors import TunesmithError


def test_bundled_samples_read_completely():
    en = formats.load(SAMPLE / "counsel_en.jsonl")
    ko = formats.load(SAMPLE / "counsel_ko.json")
    assert (en.format, en.rows_read, len(en.conversations), en.skipped) == ("messages", 160, 160, ())
    assert (ko.format, ko.rows_read, len(ko.conversations), ko.skipped) == ("alpaca", 64, 64, ())
    first = ko.conversations[0].messages
    assert [m.role for m in first] == ["user", "assistant"] and first[0].content.startswith("내담자의 말에")


def test_bad_rows_are_skipped_with_location_and_counted(tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n'
                    '\n'
                    '{"prompt": "c", "completion": ""}\n'
                    'not json\n'
                    '{"prompt": "e", "completion": 5}\n'
                    '{"other": 1}\n'
                    '"{\\"prompt\\": \\"f\\", \\"completion\\": \\"g\\"}"', encoding="utf-8")
    res = formats.load(path)
    assert res.format == "prompt_completion"
    assert len(res.conversations) == 2  # line 1 and the JSON-encoded string on line 7
    reasons = {s.location: s.reason for s in res.skipped}
    assert set(reasons) == {"mixed.jsonl:3", "mixed.jsonl:4", "mixed.jsonl:5", "mixed.jsonl:6"}
    assert "empty content" in reasons["mixed.jsonl:3"] and "not valid JSON" in reasons["mixed.jsonl:4"]
    assert "int" in reasons["mixed.jsonl:5"] and "prompt_completion" in reasons["mixed.jsonl:6"]
    assert res.rows_read == len(res.conversations) + len(res.skipped)


def test_format_is_detected_over_all_rows_not_the_first(tmp_path: Path):
    rows = [{"text": "odd first row"}] + [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(5)]
    res = formats.load(write_json(tmp_path / "a.json", rows))
    assert res.format == "alpaca" and len(res.conversations) == 5 and res.skipped[0].location == "a.json[0]"


def test_consecutive_same_role_turns_are_skipped(tmp_path: Path):
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                          {"role": "assistant", "content": "c"}]}]
    res = formats.load(write_json(tmp_path / "m.json", rows))
    assert not res.conversations and "alternate" in res.skipped[0].reason


def test_cp949_csv_is_decoded(tmp_path: Path):
    path = tmp_path / "ko.csv"
    path.write_bytes("question,answer\n요즘 잠이 안 와요,많이 지치셨군요\n".encode("cp949"))
    res = formats.load(path)
    assert res.encoding == "cp949" and res.conversations[0].messages[1].content == "많이 지치셨군요"


def test_unknown_shape_is_a_clear_error(tmp_path: Path):
    with pytest.raises(TunesmithError, match="cannot tell the data format"):
        formats.load(write_json(tmp_path / "x.json", [{"foo": 1}]))


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(TunesmithError, match="not found"):
        formats.load(tmp_path / "nope.jsonl")


@pytest.mark.skipif(not REALDATA.exists(), reason="../shared/realdata is not beside this checkout")
@pytest.mark.parametrize("rel, fmt, n", [
    ("hanghae-plus-AI__AI-1-tolluset/week6__advance__corpus.json", "turns", 100),
    ("hanghae-plus-AI__AI-1-tolluset/week6__advance__corpus.jsonl", "prompt_completion", 100),
    ("cyoon-kim__hanghae_ai_study/week7__advanced__corpus.json", "alpaca", 140),
    ("dh5473__llm-from-scratch/fine_tuning_llms__sample_conversations.EXTRACTED_FROM_CODE.jsonl", "messages", 2),
])
def test_real_user_files(rel: str, fmt: str, n: int):
    res = formats.load(REALDATA / rel)
    assert res.format == fmt and len(res.conversations) + len(res.skipped) == res.rows_read
    assert len(res.conversations) == n


def test_bare_string_pairs(tmp_path: Path):
    res = formats.load(write_json(tmp_path / "p.json", [["hi", "hello"], ["a", "b", "c"]]))
    assert res.format == "pairs" and len(res.conversations) == 1 and res.skipped[0].location == "p.json[1]"
