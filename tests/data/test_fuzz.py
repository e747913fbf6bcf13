"""Property tests: whatever bytes or JSON a user has, tunesmith answers with a report or a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.config import DataConfig
from tunesmith.data import formats
from tunesmith.data.summary import summarize
from tunesmith.errors import TunesmithError

KEYS = ["role", "content", "messages", "prompt", "completion", "instruction", "output", "input", "from", "value",
        "conversations", "text", "segments", "label", "사람문장1", "시스템응답1", "x",
        # function calling (data/calls.py): OpenAI's, TRL's, LLaMA-Factory's and xLAM's keys
        "tool_calls", "function_call", "tools", "functions", "function", "name", "arguments", "query", "answers"]
# words that steer the values into the role names and call shapes the readers look for
WORDS = st.sampled_from(["user", "assistant", "tool", "function_call", "observation", "gpt", "human", "[]", "{}",
                         '{"name": "f", "arguments": {"a": 1}}', '[{"name": "f", "arguments": {}}]',
                         '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', "<tool_call>{'name': 'f'}"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | WORDS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12)

SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".txt")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes that steer the readers into their edge cases: BOMs, Latin-1 that may pass for cp949, deep nesting,
# the line breaks str.splitlines knows and "\n" does not, CSV quoting and delimiters.
BOMS = st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])
FIELD = st.text(alphabet=st.sampled_from(list('ab가나"\',\t\r\n \u2028\x85\x0cÄé')), max_size=8)
csv_text = st.tuples(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4),
                     st.lists(st.lists(FIELD, max_size=5), max_size=6), st.sampled_from([",", "\t"]),
                     st.sampled_from(["\n", "\r\n"]))


def _read(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{suffix}"
        path.write_bytes(data)
        try:
            res = formats.load(path)
        except TunesmithError as err:
            assert err.what  # a clear message, not a traceback
            return
        assert res.rows_read == len(res.conversations) + len(res.skipped)


def _inspect(data: bytes, suffix: str) -> None:
    """What `tunesmith inspect FILE` runs: a summary whose counts add up, or a TunesmithError; nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{suffix}"
        path.write_bytes(data)
        try:
            s = summarize([path], DataConfig(train=[path]))
        except TunesmithError as err:
            assert err.what and str(path) in err.render()  # says which file
            return
        assert sum(f.rows_read for f in s.files) == len(s.usable) + len(s.skipped) + len(s.duplicates)


@FAST
@given(st.binary(max_size=300), st.sampled_from(SUFFIXES))
def test_random_bytes_never_crash(data: bytes, suffix: str):
    _read(data, suffix)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=6), st.sampled_from((".json", ".jsonl")))
def test_random_json_rows_never_crash(rows: list, suffix: str):
    text = json.dumps(rows) if suffix == ".json" else "\n".join(json.dumps(r) for r in rows)
    _read(text.encode(), suffix)


@FAST
@given(BOMS, st.binary(max_size=200), st.sampled_from(SUFFIXES))
def test_inspect_of_random_bytes_is_a_summary_or_a_clear_error(bom: bytes, data: bytes, suffix: str):
    _inspect(bom + data, suffix)


@FAST
@given(st.lists(json_values, max_size=6), st.sampled_from((".json", ".jsonl")), st.integers(0, 3000),
       st.sampled_from(["utf-8", "utf-16", "cp949", "latin-1"]), st.sampled_from([False, True]))
def test_inspect_of_random_json_is_a_summary_or_a_clear_error(rows: list, suffix: str, depth: int, encoding: str,
                                                               raw_separators: bool):
    lines = [json.dumps(r, ensure_ascii=not raw_separators) for r in rows] + ["[" * depth + "]" * depth]
    text = json.dumps(rows) if suffix == ".json" else "\n".join(lines)
    _inspect(text.encode(encoding, errors="replace"), suffix)


@FAST
@given(csv_text, st.sampled_from(["utf-8", "cp949", "latin-1"]))
def test_inspect_of_random_csv_is_a_summary_or_a_clear_error(table: tuple, encoding: str):
    header, rows, sep, newline = table
    text = newline.join(sep.join(row) for row in [header, *rows])
    _inspect(text.encode(encoding, errors="replace"), ".csv" if sep == "," else ".tsv")


# KakaoTalk export lines (data/chatlog.py) with any numbers in their stamps (a 13th month, a 99th minute), names
# and texts that are notices or placeholders, lines that go on a message, and lines that are none of these.
_NUM = st.integers(0, 99).map(str)
_WORD = st.sampled_from(["a", "b", "나", "사진", "이모티콘", "a님이 나갔습니다.", "", " : ", "[x]"])
kakao_line = st.one_of(
    st.tuples(_WORD, st.sampled_from(["오전", "오후"]), _NUM, _NUM, _WORD).map(
        lambda t: f"[{t[0]}] [{t[1]} {t[2]}:{t[3]:0>2}] {t[4]}"),
    st.tuples(_NUM, _NUM, _NUM).map(lambda t: f"--------------- 20{t[0]:0>2}년 {t[1]}월 {t[2]}일 월요일 ---------------"),
    st.tuples(_NUM, _NUM, _NUM, _NUM, _WORD, _WORD).map(
        lambda t: f"20{t[0]:0>2}년 {t[1]}월 {t[2]}일 오후 {t[3]}:30, {t[4]} : {t[5]}"),
    st.tuples(_NUM, _NUM, _WORD).map(lambda t: f"2024. {t[0]}. {t[1]}. 오전 1:00: {t[2]}"),
    _WORD)


@FAST
@given(st.lists(kakao_line, max_size=12), st.sampled_from([{}, {"a": "assistant"}, {"b": "assistant", "a": "user"}]))
def test_random_kakaotalk_logs_read_or_stop_clearly(lines: list[str], roles: dict):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "talk.txt"
        path.write_text("\n".join(lines), encoding="utf-8")
        try:
            res = formats.load(path, roles=roles)
        except TunesmithError as err:
            assert err.what
            return
        assert res.rows_read == len(res.conversations) + len(res.skipped)


NASTY = {  # one file each for the cases that once ended in a traceback (issue 10)
    "deep.json": b"[" * 100000,
    "deep.jsonl": b'{"prompt": "a", "completion": "b"}\n' + b"[" * 100000 + b"\n",
    "bom.jsonl": b"\xef\xbb\xbf\xff\xfe\xfa",
    "latin1.csv": "prompt,completion\nDie Äpfel,Ärger im Garten\n".encode("latin-1"),
    "ragged.csv": b"prompt,completion\nq,a,extra\nq2\n",
    "empty.jsonl": b"\n\n",
    "corrupt.parquet": bytes(range(256)) * 2,
    "corrupt.arrow": b"ARROW1\x00\x00" + bytes(range(256)) * 2,
    "u2028.jsonl": '{"prompt": "a\u2028b", "completion": "c\x85d"}\n'.encode(),
    "nul.txt": b"\x00\x01\x02",
}


@pytest.mark.parametrize("name", sorted(NASTY))
def test_cli_inspect_of_a_nasty_file_exits_0_or_2_without_a_traceback(tmp_path: Path, name: str):
    path = tmp_path / name
    path.write_bytes(NASTY[name])
    res = subprocess.run([sys.executable, "-m", "tunesmith", "inspect", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode in (0, 2), res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    assert name in res.stderr + res.stdout  # whatever it says, it says which file
