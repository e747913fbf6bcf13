"""Files are whole or, when appended and torn by a crash, read back without the torn line (issue 10)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunesmith import diskio
from tunesmith.errors import TunesmithError


def test_a_torn_last_line_is_left_out_and_reported_a_damaged_middle_line_is_an_error(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    said: list[str] = []
    assert diskio.read_jsonl(path, said.append) == [{"step": 1}, {"step": 2}]
    assert said == [f"notice: {path}: left out a half-written last line (line 3; the writer was stopped while "
                    "writing it)"]
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(TunesmithError, match="line 2 is not valid JSON"):
        diskio.read_jsonl(path)


def test_jsonl_rows_keep_unicode_line_separators(tmp_path: Path):
    rows = [{"text": "a\u2028b\x85c"}, {"text": "d"}]
    diskio.write_jsonl(tmp_path / "x.jsonl", rows)
    assert diskio.read_jsonl(tmp_path / "x.jsonl") == rows


def test_whole_files_are_replaced_atomically(tmp_path: Path):
    path = tmp_path / "plan.json"
    diskio.write_json(path, {"a": 1})
    diskio.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["plan.json"]  # no temporary file left behind


def test_a_torn_tail_is_cut_before_the_next_append_so_rows_are_not_glued(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "b')
    assert diskio.cut_torn_tail(path) and not diskio.cut_torn_tail(path)
    diskio.append_jsonl(path, [{"a": 3}])
    assert diskio.read_jsonl(path) == [{"a": 1}, {"a": 3}]
    assert not diskio.cut_torn_tail(tmp_path / "missing.jsonl")
