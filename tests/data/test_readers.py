"""Every reader and encoding on small fixture files written here, plus folders, globs and saved datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.data import formats, readers
from tunesmith.errors import TunesmithError
from tunesmith.records import Skip

ROWS = [{"prompt": "잠이 안 와요", "completion": "많이 지치셨군요. 요즘 어떤 생각이 드세요?"},
        {"prompt": "시험을 망쳤어요", "completion": "속상하시군요. 무엇이 가장 아쉬우세요?"}]


@pytest.mark.parametrize("encoding, expected", [
    ("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16"), ("cp949", "cp949")])
def test_encodings_are_detected_and_reported(tmp_path: Path, encoding: str, expected: str):
    path = tmp_path / "d.jsonl"
    path.write_bytes("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode(encoding))
    res = formats.load(path)
    assert readers.codec(res.encoding) == expected and len(res.conversations) == 2
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


# --- issue 10: readers never change text silently; bad files stop with where/how, never a traceback ---

def test_ragged_csv_rows_are_skipped_and_counted_with_their_line(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,completion,note\nq1,a1,n1\nq2,answer, with a comma,n2\nq3,a3\nq4,a4,\n", "utf-8")
    res = formats.load(path)
    assert [c.source for c in res.conversations] == ["d.csv:2", "d.csv:5"]
    assert res.skipped == (
        Skip("d.csv:3", "row has 4 fields, the header has 3; quote the field that contains a comma", "ragged"),
        Skip("d.csv:4", "row has 2 fields, the header has 3; add the missing fields (an empty field still needs "
                        "its comma)", "ragged"))
    assert res.rows_read == len(res.conversations) + len(res.skipped) == 4
    assert all("comma" not in m.content for c in res.conversations for m in c.messages)


def test_ragged_tsv_row_names_the_tab_and_quoted_rows_keep_their_first_line(tmp_path: Path):
    path = tmp_path / "d.tsv"
    path.write_text('prompt\tcompletion\n"two\nlines"\ta1\nq2\ta2\textra\n', "utf-8")
    res = formats.load(path)
    assert [c.source for c in res.conversations] == ["d.tsv:2"]
    assert res.skipped == (Skip("d.tsv:4", "row has 3 fields, the header has 2; quote the field that contains a tab",
                                        "ragged"),)


def test_a_column_named_twice_stops_the_read(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,prompt,completion\nfirst,second,answer\n", "utf-8")
    with pytest.raises(TunesmithError, match=r"d.csv:1: the header names a column more than once \('prompt' is "
                                             r"columns 1, 2\); only the last would be read"):
        formats.load(path)


def test_jsonl_splits_on_newline_only(tmp_path: Path):
    rows = [{"prompt": "first\u2028line", "completion": "a\u2029b"}, {"prompt": "nel\x85here", "completion": "x"},
            {"prompt": "vt\x0b ff\x0c fs\x1c", "completion": "y"}, {"prompt": "last", "completion": "z"}]
    path = tmp_path / "d.jsonl"
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n", "utf-8")
    assert "\u2028" in path.read_text("utf-8") and len(path.read_text("utf-8").splitlines()) > len(rows)
    res = formats.load(path)
    assert [c.source for c in res.conversations] == ["d.jsonl:1", "d.jsonl:4"]
    assert res.conversations[0].messages[0].content == "first\u2028line"
    # The raw control characters are still reported, on the line where they are, not split into broken rows.
    assert [s.location for s in res.skipped] == ["d.jsonl:2", "d.jsonl:3"]
    assert "U+0085" in res.skipped[0].reason and "U+000B" in res.skipped[1].reason
    assert res.rows_read == 4


def test_text_lines_end_at_newline_only(tmp_path: Path):
    path = tmp_path / "d.txt"
    path.write_text("one\u2028still one\r\nform\x0cfeed\nthree\n", "utf-8")
    res = formats.load(path)
    assert [(c.source, c.messages[0].content) for c in res.conversations] == [
        ("d.txt:1", "one\u2028still one"), ("d.txt:3", "three")]
    assert [s.location for s in res.skipped] == ["d.txt:2"] and "U+000C" in res.skipped[0].reason


def test_real_cp949_korean_is_guessed_with_its_confidence(tmp_path: Path):
    path = tmp_path / "ko.csv"
    text = "question,answer\n요즘 잠이 안 와요…,많이 지치셨군요. ㅠㅠ\n시험을 망쳤어요,속상하시군요\n"
    path.write_bytes(text.encode("cp949"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    res = formats.load(path)
    assert res.encoding == "cp949 (guessed, 100% of non-ASCII characters are common Korean)"
    assert readers.codec(res.encoding) == "cp949"
    assert res.conversations[0].messages[1].content == "많이 지치셨군요. ㅠㅠ"


def test_latin1_text_that_decodes_as_cp949_is_not_taken_for_korean(tmp_path: Path):
    # German capitals with umlaut before a letter, and French "éé", are valid cp949 byte pairs.
    raw = "prompt,completion\nDie Äpfel,Ärger im Garten\nÂge des Äbte,Une chaise créée\n".encode("latin-1")
    mojibake = raw.decode("cp949")  # no error: the guard below is what stops it, not a decode failure
    assert "Äpfel" not in mojibake and "훡fel" in mojibake
    path = tmp_path / "fr_de.csv"
    path.write_bytes(raw)
    with pytest.raises(TunesmithError) as err:
        formats.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: not UTF-8, and read as cp949 (Korean) only 0% of its 5 non-ASCII characters "
                          "are common Korean: line 2 would read ")
    assert "how to fix: pass --encoding latin-1 (or data.encoding in the config)" in msg
    res = formats.load(path, encoding="latin-1")
    assert res.conversations[1].messages[1].content == "Une chaise créée" and res.encoding == "latin-1"


def test_a_bom_followed_by_invalid_bytes_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\xff\xfe\xfa")
    with pytest.raises(TunesmithError, match=r"d.jsonl: starts with a utf-8-sig byte-order mark, but byte 3 "
                                             r"\(0xff, line 1\) is not utf-8: invalid start byte"):
        formats.load(path)
    path.write_bytes(b"\xff\xfe" + b"a\x00b")  # UTF-16 cut off in the middle of a character
    with pytest.raises(TunesmithError, match="starts with a utf-16 byte-order mark, but byte 4 .* truncated data"):
        formats.load(path)


def test_json_nested_too_deeply_is_an_error_and_a_jsonl_line_a_skip(tmp_path: Path):
    (tmp_path / "deep.json").write_text("[" * 100000, "utf-8")
    with pytest.raises(TunesmithError, match=r"deep.json: nested too deeply"):
        formats.load(tmp_path / "deep.json")
    (tmp_path / "deep.jsonl").write_text(json.dumps(ROWS[0]) + "\n" + "[" * 100000 + "\n" + json.dumps(ROWS[1]),
                                         "utf-8")
    res = formats.load(tmp_path / "deep.jsonl")
    assert [c.source for c in res.conversations] == ["deep.jsonl:1", "deep.jsonl:3"]
    assert res.skipped == (Skip("deep.jsonl:2", readers._TOO_DEEP, "bad_json"),) and "nested too deeply" in readers._TOO_DEEP
    assert res.rows_read == 3


def test_corrupt_parquet_and_fake_saved_dataset_are_clear_errors(tmp_path: Path):
    (tmp_path / "d.parquet").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(TunesmithError, match=r"(?s)d.parquet: not a readable Parquet file: .*how to fix: export it"):
        formats.load(tmp_path / "d.parquet")
    for marker, text in (("state.json", "garbage"), ("dataset_dict.json", "{}"),
                         ("dataset_dict.json", '{"splits": ["train"]}')):
        fake = tmp_path / f"fake_{marker}_{len(text)}"
        fake.mkdir()
        (fake / marker).write_text(text, "utf-8")
        with pytest.raises(TunesmithError, match=f"(?s)has a {marker}, so it was read as a folder saved by `datasets`, "
                                                 "but loading it failed: .*how to fix: save it again"):
            formats.load(fake)


def test_a_folder_is_walked_into_saved_datasets_not_their_state_json(tmp_path: Path):
    from datasets import Dataset

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(json.dumps(ROWS[0], ensure_ascii=False), "utf-8")
    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "in" / "saved"))
    assert readers.expand(tmp_path / "in") == [tmp_path / "in" / "a.jsonl", tmp_path / "in" / "saved"]


def test_a_folder_matched_as_a_data_file_is_a_clear_error(tmp_path: Path):
    (tmp_path / "x.jsonl").mkdir()  # a glob matches folders by name, so read() can be handed one
    (found,) = readers.expand(tmp_path / "*.jsonl")
    with pytest.raises(TunesmithError, match="x.jsonl: cannot read it: Is a directory"):
        formats.load(found)


def _drop_root_override() -> None:  # runs in the child before exec
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: without them root obeys mode bits like anyone
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP; the exec'd python then lacks the capability
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _run_unprivileged(*args: str) -> subprocess.CompletedProcess:
    """Run python with file permissions enforced: root's capabilities to ignore them dropped (tests run as root)."""
    drop = _drop_root_override if os.geteuid() == 0 else None
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, preexec_fn=drop)


@pytest.fixture
def unreadable(tmp_path: Path) -> Path:
    """A folder with a readable file, an unreadable one (mode 000) and nothing else; skips where 000 cannot bite."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps(ROWS[0], ensure_ascii=False), "utf-8")
    secret = folder / "b.jsonl"
    secret.write_text(json.dumps(ROWS[1], ensure_ascii=False), "utf-8")
    secret.chmod(0)
    try:
        probe = _run_unprivileged("-c", f"open({str(secret)!r}).read()")
    except (subprocess.SubprocessError, OSError) as err:  # no prctl (not Linux, or a sandbox that forbids it)
        pytest.skip(f"cannot drop root's file-permission override here: {err}")
    if probe.returncode == 0:
        pytest.skip("a mode-000 file is still readable here")
    assert "PermissionError" in probe.stderr
    yield folder
    secret.chmod(0o644)


@pytest.mark.parametrize("spec", ["in/b.jsonl", "in", "in/*.jsonl"])
def test_an_unreadable_file_names_itself_and_its_permissions(unreadable: Path, spec: str):
    code = ("from pathlib import Path; from tunesmith.config import DataConfig; from tunesmith.data import prepare\n"
            f"p = Path({str(unreadable.parent / spec)!r}); prepare.read_all([p], DataConfig(train=[p]))")
    res = _run_unprivileged("-c", code)
    assert res.returncode == 1 and "Traceback" in res.stderr  # the library raises; the CLI turns it into exit 2
    assert (f"tunesmith.errors.TunesmithError: {unreadable / 'b.jsonl'}: cannot read it: permission denied\n"
            f"how to fix: check its permissions (ls -l {unreadable / 'b.jsonl'}), or leave it out of the data"
            ) in res.stderr


def test_inspect_of_a_folder_with_an_unreadable_file_exits_2(unreadable: Path):
    res = _run_unprivileged("-m", "tunesmith", "inspect", str(unreadable))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"error: {unreadable / 'b.jsonl'}: cannot read it: permission denied" in res.stderr


def test_an_unreadable_subfolder_is_an_error_not_skipped(unreadable: Path):
    (unreadable / "b.jsonl").chmod(0o644)
    sub = unreadable / "private"
    sub.mkdir()
    (sub / "c.jsonl").write_text(json.dumps(ROWS[0]), "utf-8")
    sub.chmod(0)
    try:
        res = _run_unprivileged("-m", "tunesmith", "inspect", str(unreadable))
    finally:
        sub.chmod(0o755)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"error: {unreadable}: cannot list folder {sub}: Permission denied" in res.stderr


def _workbook(path: Path, sheets: dict[str, list[list]]) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def test_excel_workbooks_read_every_sheet_as_csv_would(tmp_path: Path):
    """Each sheet headed by its first non-empty row; numbers and dates as the text a CSV export holds; rows named
    file:sheet:row as Excel numbers them; blank rows left out; a value under no header skipped as no_header;
    a blank header column between others is not read and not an error."""
    import datetime

    path = _workbook(tmp_path / "qa.xlsx", {
        "상담": [[None], ["질문", None, "답변"], ["잠을 못 자요.", None, "언제부터 그러셨나요?"], [None, None, None],
               ["1 더하기 2는?", None, 3], ["오늘은?", None, datetime.datetime(2026, 12, 7)],
               ["x", "stray", "y"], ["반", None, 0.5]],
        "추가": [["질문", "답변"], ["안녕", "안녕하세요"]],
        "빈 시트": []})
    res = formats.load(path)
    assert res.format == "prompt_completion" and res.encoding == "xlsx"
    assert [(c.source, c.messages[1].content) for c in res.conversations] == [
        ("qa.xlsx:상담:3", "언제부터 그러셨나요?"), ("qa.xlsx:상담:5", "3"), ("qa.xlsx:상담:6", "2026-12-07"),
        ("qa.xlsx:상담:8", "0.5"), ("qa.xlsx:추가:2", "안녕하세요")]
    assert [(s.location, s.kind, s.reason) for s in res.skipped] == [
        ("qa.xlsx:상담:7", "no_header", "a value in column B, which has no header")]
    assert res.rows_read == 6 and readers.READERS[".xlsx"] == "xlsx"


def test_broken_or_old_excel_files_stop_with_what_to_do(tmp_path: Path):
    (tmp_path / "cut.xlsx").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(TunesmithError, match="not a readable Excel workbook") as err:
        readers.read(tmp_path / "cut.xlsx")
    assert "save the sheet as CSV" in str(err.value)
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(TunesmithError, match="unsupported file type '.xls'") as err:
        readers.read(tmp_path / "old.xls")
    assert "save it in Excel as .xlsx" in str(err.value)
    twice = _workbook(tmp_path / "twice.xlsx", {"s": [[None], ["q", "a", "q"], ["1", "2", "3"]]})
    with pytest.raises(TunesmithError, match="'q' is columns 1, 3") as err:
        readers.read(twice)
    assert "twice.xlsx:s:2" in str(err.value)


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_csv_whose_header_has_no_comma_is_read_with_its_own_delimiter(tmp_path: Path, sep: str):
    """Excel writes ';' where a comma is the decimal mark; a comma inside a quoted header or cell changes nothing."""
    path = tmp_path / "semi.csv"
    path.write_text(f'question{sep}"answer"\nHi{sep}Hello\n"How, now?"{sep}"Fine{sep} you?"\n', encoding="utf-8")
    res = formats.load(path)
    assert [[m.content for m in c.messages] for c in res.conversations] == [["Hi", "Hello"],
                                                                             ["How, now?", f"Fine{sep} you?"]]
    path.write_text('"q;uestion",answer\na,b\n', encoding="utf-8")
    assert readers.read(path)[0][0].fields == {"q;uestion": "a", "answer": "b"}


def test_a_workbook_that_unpacks_to_thousands_of_times_its_size_is_refused_unread(tmp_path: Path):
    """A zip bomb in .xlsx clothing (a 300 MiB sheet of one repeated byte in a ~300 KiB file): refused from the zip's
    directory, before openpyxl parses any XML."""
    import zipfile

    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as f:
            block = b" " * 2**20
            for _ in range(300):
                f.write(block)
    assert path.stat().st_size < 2**20
    with pytest.raises(TunesmithError, match=r"the workbook unpacks to 300 MiB from 0\.\d MiB \(over 100x\): not read"):
        readers.read(path)


def test_a_parquet_file_that_unpacks_past_the_bounds_is_refused_unread(tmp_path: Path, monkeypatch):
    """Counted as the rows unpack (the footer's sizes count a dictionary-encoded value once: 1 MiB here); the bound
    lowered to 1 MiB here: 8 MiB of one repeated text is a few KiB of zstd; under the bound the same file reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"text": [" " * 2**20] * 8}), path, compression="zstd")
    assert path.stat().st_size < 2**16
    assert len(readers.read(path)[0]) == 8
    monkeypatch.setattr(readers, "MAX_UNPACKED", 2**20)
    with pytest.raises(TunesmithError, match=r"the Parquet file unpacks to \d MiB from 0\.0 MiB \(over 100x\)"):
        readers.read(path)


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_a_compressed_text_file_reads_as_the_file_itself(tmp_path: Path, suffix: str, monkeypatch):
    """data.jsonl.gz (and .bz2, .xz) reads as data.jsonl does, rows named by the file's own name; found in a folder
    and by a glob; one cut short stops with what to do; one that unpacks past the bounds is refused as it unpacks
    (the bound lowered to 1 MiB here: 8 MiB of one repeated row compresses to a few KiB)."""
    import bz2
    import gzip
    import lzma

    pack = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}[suffix]
    plain = '{"prompt": "안녕", "completion": "반가워요"}\n{"prompt": "Hi", "completion": "Hello"}\n'
    path = tmp_path / f"data.jsonl{suffix}"
    path.write_bytes(pack(plain.encode("utf-8")))
    res = formats.load(path)
    assert res.format == "prompt_completion" and [c.source for c in res.conversations] == [
        f"data.jsonl{suffix}:1", f"data.jsonl{suffix}:2"]
    assert readers.expand(tmp_path) == [path] and readers.expand(tmp_path / "*.jsonl*") == [path]
    (tmp_path / "cut").mkdir()
    cut = tmp_path / "cut" / f"data.jsonl{suffix}"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(TunesmithError, match=f"not a readable \\{suffix} file"):
        readers.read(cut)
    big = tmp_path / "cut" / f"big.jsonl{suffix}"
    big.write_bytes(pack(plain.encode("utf-8") * (8 * 2**20 // len(plain.encode("utf-8")))))
    monkeypatch.setattr(readers, "MAX_UNPACKED", 2**20)
    with pytest.raises(TunesmithError, match=f"the \\{suffix} file unpacks to \\d MiB from 0.0 MiB \\(over 100x\\)"):
        readers.read(big)
    assert readers.kind_of(Path("x.parquet.gz")) is None and readers.kind_of(Path("x.csv.xz")) == "csv"


def test_arrow_files_as_datasets_writes_them_and_in_the_file_format(tmp_path: Path):
    """A bare .arrow file (LLaMA-Factory reads them): the IPC stream `save_to_disk` writes, and the IPC file
    format; anything else is a clear error."""
    import datasets
    import pyarrow as pa

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    table = pa.Table.from_pylist(ROWS)
    with pa.OSFile(str(tmp_path / "f.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    for path in (next((tmp_path / "saved").glob("*.arrow")), tmp_path / "f.arrow"):
        res = formats.load(path)
        assert (res.format, res.encoding, len(res.conversations)) == ("prompt_completion", "arrow", 2), path
        assert res.conversations[0].source == f"{path.name}[0]"
    (tmp_path / "bad.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(TunesmithError) as err:
        formats.load(tmp_path / "bad.arrow")
    assert "not a readable Arrow file" in err.value.what and "save_to_disk" in err.value.fix


def test_a_yaml_file_given_as_data_says_how_configs_are_given(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("model_name_or_path: x\nstage: sft\n", encoding="utf-8")
    with pytest.raises(TunesmithError) as err:
        readers.read(path)
    assert err.value.fix.startswith(f"a run config is given as itself, not as data: tunesmith plan {path}")
