"""Property tests: whatever bytes or JSON a user has, tunesmith answers with a report or a clear error."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.data import formats
from tunesmith.errors import TunesmithError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["role", "content", "messages", "prompt", "completion", "instruction", "output", "input",
                         "from", "value", "conversations", "text", "사람문장1", "시스템응답1", "x"]), inner, max_size=4),
    max_leaves=12)

SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".txt")


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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(SUFFIXES))
def test_random_bytes_never_crash(data: bytes, suffix: str):
    _read(data, suffix)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=6), st.sampled_from((".json", ".jsonl")))
def test_random_json_rows_never_crash(rows: list, suffix: str):
    text = json.dumps(rows) if suffix == ".json" else "\n".join(json.dumps(r) for r in rows)
    _read(text.encode(), suffix)
