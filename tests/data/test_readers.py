"""Every reader and encoding on small fixture files written here, plus folders, globs and saved datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.data import formats, readers
from tunesmith.errors import TunesmithError

ROWS = [{"prompt": "잠이 안 와요", "completion": "많이 지치셨군요. 요즘 어떤 생각이 드세요?"},
        {"prompt": "시험을 망쳤어요", "completion": "속상하시군요. 무엇이 가장 아쉬우세요?"}]


@pytest.mark.parametrize("encoding, expected", [
    ("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16"), ("cp949", "cp949")])
def test_encodings_are_detected_and_reported(tmp_path: Path, encoding: str, expected: str):
    path = tmp_path / "d.jsonl"
    path.write_bytes("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode(encoding))
    res = formats.load(path)
    assert res.encoding == expected and len(res.conversations) == 2
    assert res.conversations[0].messages[0].content == "잠이 안 와요"


def test_explicit_wrong_encoding_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_bytes("prompt,completion\n안녕,반가워요\n".encode("cp949"))
    with pytest.raises(TunesmithError, match="cannot decode as utf-8"):
        formats.load(path, encoding="utf-8")


def test_json_wrapped_and_columnar(tmp_path: Path):
    (tmp_path / "w.json").write_text(json.dumps({"data": ROWS}, ensure_ascii=False), encoding="utf-8")
    columnar = {"prompt": [r["prompt"] for r in ROWS], "completion": [r["completion"] for r in ROWS]}
    (tmp_path / "c.json").write_text(json.dumps(columnar, ensure_ascii=False), encoding="utf-8")
    wrapped, cols = formats.load(tmp_path / "w.json"), formats.load(tmp_path / "c.json")
    assert [c.messages for c in wrapped.conversations] == [c.messages for c in cols.conversations]
    assert wrapped.conversations[1].source == "w.json[data][1]" and cols.conversations[1].source == "c.json[1]"


def test_jsonl_without_final_newline_and_blank_lines(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n\n" + json.dumps(ROWS[0], ensure_ascii=False) + "\n\n" + json.dumps(ROWS[1]), "utf-8")
    res = formats.load(path)
    assert [c.source for c in res.conversations] == ["d.jsonl:3", "d.jsonl:5"]


def test_tsv_parquet_and_text(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "d.tsv").write_text("question\tanswer\nq1\ta1\nq2\ta2\n", encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    (tmp_path / "d.txt").write_text("first line of text\n\nsecond line\n", encoding="utf-8")
    tsv, parquet, text = (formats.load(tmp_path / n) for n in ("d.tsv", "d.parquet", "d.txt"))
    assert (tsv.format, len(tsv.conversations), tsv.conversations[1].source) == ("prompt_completion", 2, "d.tsv:3")
    assert (parquet.format, parquet.encoding, len(parquet.conversations)) == ("prompt_completion", "parquet", 2)
    assert text.format == "text" and [c.source for c in text.conversations] == ["d.txt:1", "d.txt:3"]


def test_folder_glob_and_saved_dataset(tmp_path: Path):
    from datasets import Dataset, DatasetDict

    (tmp_path / "in").mkdir()
    for i in range(2):
        (tmp_path / "in" / f"part{i}.jsonl").write_text(json.dumps(ROWS[i], ensure_ascii=False), "utf-8")
    assert [p.name for p in readers.expand(tmp_path / "in")] == ["part0.jsonl", "part1.jsonl"]
    assert [p.name for p in readers.expand(tmp_path / "in" / "*.jsonl")] == ["part0.jsonl", "part1.jsonl"]
    DatasetDict({"train": Dataset.from_list(ROWS), "test": Dataset.from_list(ROWS[:1])}).save_to_disk(
        str(tmp_path / "saved"))
    assert readers.expand(tmp_path / "saved") == [tmp_path / "saved"]
    res = formats.load(tmp_path / "saved")
    assert res.encoding == "arrow" and [c.source for c in res.conversations] == [
        "saved/train[0]", "saved/train[1]", "saved/test[0]"]


def test_empty_folder_and_bad_glob_are_clear_errors(tmp_path: Path):
    with pytest.raises(TunesmithError, match="holds no data files"):
        readers.expand(tmp_path)
    with pytest.raises(TunesmithError, match="no data files match"):
        readers.expand(tmp_path / "*.jsonl")


def test_unreachable_hub_dataset_id_is_a_clear_error():
    assert readers.looks_like_hub_id(Path("someone/some-dataset"))
    assert not readers.looks_like_hub_id(Path("someone/train.jsonl"))
    with pytest.raises(TunesmithError, match="not a local file or folder, and loading it as a hub dataset failed"):
        formats.load(Path("someone/some-dataset"))
