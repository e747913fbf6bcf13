"""Read a data file into RawRecords, each tagged with where it came from (file:line or file[index]).

Encodings are detected, not assumed: Korean users' files are often cp949 or carry a BOM. A reader never changes
text silently: a row it cannot take as it stands (ragged CSV, invalid JSON) is returned as a Skip with its line.
"""

from __future__ import annotations

import csv
import datetime
import functools
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith import hub
from tunesmith.data import chatlog
from tunesmith.errors import TunesmithError
from tunesmith.records import RawRecord, Skip

# With encoding auto: a BOM's encoding, else UTF-8, else cp949 (a superset of EUC-KR, the usual encoding of Korean
# CSV exports), checked for Korean text. Each BOM as (bytes, name reported, codec for the bytes after it).
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig", "utf-8"), (b"\xff\xfe", "utf-16", "utf-16-le"),
         (b"\xfe\xff", "utf-16", "utf-16-be"))
_ENCODING_FIX = "pass --encoding latin-1 (or data.encoding in the config); cp1252 for Windows files, cp949 for Korean"

# Below this share of common Korean characters a cp949 guess is refused. Real Korean data measured at 98.9-100%
# (the five ../shared/realdata corpora and sample_data/counsel_ko.json, hanja-rich wiki text the lowest);
# Latin-1 text that happens to decode as cp949 comes out as hanja and rare syllables, near 0%.
MIN_CP949_CONFIDENCE = 0.9


@functools.cache
def _common_korean() -> frozenset[str]:
    """The 2,350 KS X 1001 Hangul syllables (EUC-KR rows 0xB0-0xC8), compatibility jamo (ㅋㅋ, ㅠㅠ) and the
    punctuation Korean text uses. cp949 adds 8,822 rare syllables and hanja: in decoded text those mark mojibake."""
    chars = {bytes([a, b]).decode("euc-kr") for a in range(0xB0, 0xC9) for b in range(0xA1, 0xFF)}
    chars.update(chr(c) for c in range(0x3131, 0x318F))  # Hangul compatibility jamo
    chars.update(chr(c) for c in range(0x3000, 0x3040))  # CJK symbols and punctuation: 、。「」《》
    chars.update(chr(c) for c in range(0xFF01, 0xFF5F))  # full-width ASCII forms
    chars.update("·‥…‘’“”–—•※→←↑↓①②③④⑤")
    return frozenset(chars)


def cp949_confidence(text: str) -> tuple[float, int]:
    """(share of the non-ASCII characters that are common Korean, how many non-ASCII characters there are).

    >>> cp949_confidence("상담 hello")
    (1.0, 2)
    >>> round(cp949_confidence("Äpfel Ärger créée".encode("latin-1").decode("cp949"))[0], 2)
    0.0
    """
    common = _common_korean()
    non_ascii = [ch for ch in text if ch > "\x7f"]
    if not non_ascii:
        return 1.0, 0
    return sum(ch in common for ch in non_ascii) / len(non_ascii), len(non_ascii)


def _guess_cp949(path: Path, text: str) -> str:
    """The encoding label for a cp949 guess, with its confidence; stops when the text does not look Korean."""
    share, n = cp949_confidence(text)
    pct = f"{int(share * 100)}%"  # floored: 89.6% must not print as the 90% it fell short of
    if share < MIN_CP949_CONFIDENCE:
        common = _common_korean()
        odd = next(i for i, ch in enumerate(text) if ch > "\x7f" and ch not in common)
        line = text.count("\n", 0, odd) + 1
        raise TunesmithError(
            f"not UTF-8, and read as cp949 (Korean) only {pct} of its {n} non-ASCII characters are common "
            f"Korean: line {line} would read {text[max(0, odd - 10):odd + 10]!r}, which looks mis-decoded",
            where=str(path), fix=_ENCODING_FIX)
    return f"cp949 (guessed, {pct} of non-ASCII characters are common Korean)"


def codec(label: str) -> str:
    """The codec name in an encoding label: 'cp949 (guessed, ...)' -> 'cp949'.

    >>> codec("cp949 (guessed, 100% of non-ASCII characters are common Korean)")
    'cp949'
    """
    return label.split(" ", 1)[0]


def _bad_byte(raw: bytes, start: int, line: bool = True) -> str:
    newlines = raw.count(b"\n", 0, start)
    at = f", line {newlines + 1}" if line else ""  # counting b"\n" gives lines only in ASCII-compatible encodings
    return f"byte {start} (0x{raw[start:start + 1].hex()}{at})"


def decode(path: Path, encoding: str = "auto") -> tuple[str, str]:
    """Return (text, encoding label) for a file: the given encoding, or a BOM's, UTF-8, then a checked cp949 guess.

    A guess's label carries its confidence, e.g. 'cp949 (guessed, 99% of non-ASCII characters are common Korean)';
    `codec(label)` is the codec name.
    """
    raw = _raw(path)
    if encoding != "auto":
        try:
            return raw.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as err:
            raise TunesmithError(f"cannot decode as {encoding}: {err}", where=str(path),
                                 fix="use encoding: auto, or the encoding the file was saved in") from None
    for bom, name, body in _BOMS:
        if raw.startswith(bom):
            try:
                return raw[len(bom):].decode(body), name
            except UnicodeDecodeError as err:
                bad = _bad_byte(raw, len(bom) + err.start, line=body == "utf-8")
                raise TunesmithError(f"starts with a {name} byte-order mark, but {bad} is not {body}: {err.reason}",
                                     where=str(path), fix="re-save the file as UTF-8, or " + _ENCODING_FIX) from None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as err:
        not_utf8 = _bad_byte(raw, err.start)
    try:
        text = raw.decode("cp949")
    except UnicodeDecodeError:
        raise TunesmithError(f"cannot decode the file as UTF-8 ({not_utf8} is not UTF-8) or as cp949",
                             where=str(path), fix="re-save the file as UTF-8, or " + _ENCODING_FIX) from None
    return text, _guess_cp949(path, text)


def _lines(text: str) -> list[str]:
    r"""Physical lines, split on "\n" only (a "\r\n" ending loses its "\r").

    Not str.splitlines: it also breaks at U+2028, U+2029, U+0085, \x0b, \x0c and \x1c-\x1e, which a JSON string
    may hold raw, so one valid row would become two bad ones and every later line number would differ from what
    an editor, `grep -n` and `sed -n` show. Control characters then stay in the text, where validation reports them.
    """
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


# json.loads recurses once per nesting level; a row like "[" * 100000 exceeds Python's ~1000-frame stack.
_TOO_DEEP = "nested too deeply (JSON deeper than Python's recursion limit, about 1000 levels)"


def _json_records(path: Path, text: str) -> list[RawRecord]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise TunesmithError(f"not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}",
                             where=str(path), fix="fix the JSON, or save one object per line as .jsonl") from None
    except RecursionError:
        raise TunesmithError(_TOO_DEEP, where=str(path), fix="rows are objects or arrays a few levels deep: "
                                                               "check this is the data file you meant") from None
    if isinstance(obj, dict):
        lists = {k: v for k, v in obj.items() if isinstance(v, list)}
        if len(lists) == 1:  # an object wrapping the list: {"data": [...]}
            (key, obj), = lists.items()
            return [RawRecord(f"{path.name}[{key}][{i}]", row) for i, row in enumerate(obj)]
        lengths = {len(v) for v in lists.values()}
        if lists and len(lists) == len(obj) and len(lengths) == 1:  # columnar: {"a": [...], "b": [...]}
            n = lengths.pop()
            return [RawRecord(f"{path.name}[{i}]", {k: v[i] for k, v in obj.items()}) for i in range(n)]
        raise TunesmithError("a JSON object that is neither a list of rows nor columns of equal length",
                             where=str(path), fix="store the rows as a JSON array")
    if not isinstance(obj, list):
        raise TunesmithError(f"top-level JSON {type(obj).__name__}, expected an array of rows", where=str(path))
    return [RawRecord(f"{path.name}[{i}]", row) for i, row in enumerate(obj)]


def _jsonl_records(path: Path, text: str, skipped: list[Skip]) -> list[RawRecord]:
    out = []
    for n, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{n}"
        try:
            row = json.loads(line)
            if isinstance(row, str) and row.lstrip()[:1] in ("{", "["):  # a line that is a JSON-encoded object
                row = json.loads(row)
        except json.JSONDecodeError as err:
            skipped.append(Skip(where, f"not valid JSON ({err.msg} at column {err.colno})", "bad_json"))
            continue
        except RecursionError:
            skipped.append(Skip(where, _TOO_DEEP, "bad_json"))
            continue
        out.append(RawRecord(where, row))
    return out


def _check_header(path: Path, header: list[str], line: int = 1, blank_ok: bool = False) -> None:
    # DictReader keeps only the last of two same-named columns: the other column's text would vanish. A sheet's
    # columns without a header are not read (blank_ok), and a value in one is a skipped row (_sheet_records).
    twice = sorted({name for name in header if header.count(name) > 1 and (name or not blank_ok)})
    if twice:
        cols = "; ".join(f"{name!r} is columns {', '.join(str(i + 1) for i, h in enumerate(header) if h == name)}"
                         for name in twice)
        raise TunesmithError(f"the header names a column more than once ({cols}); only the last would be read",
                             where=f"{path}:{line}", fix="give each column a unique name")


def _ragged(row: dict, width: int, delimiter: str) -> str | None:
    """Why a row cannot be read as it stands, when its field count differs from the header's."""
    extra, missing = row.get(None) or [], sum(1 for k, v in row.items() if k is not None and v is None)
    sep = "comma" if delimiter == "," else "tab"
    if extra:  # DictReader files surplus fields under the key None
        return (f"row has {width + len(extra)} fields, the header has {width}; "
                f"quote the field that contains a {sep}")
    if missing:  # and fills missing ones with None (an empty field reads as "")
        return (f"row has {width - missing} fields, the header has {width}; "
                f"add the missing fields (an empty field still needs its {sep})")
    return None


def _csv_records(path: Path, text: str, delimiter: str, skipped: list[Skip]) -> list[RawRecord]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        header = list(reader.fieldnames or [])
        _check_header(path, header)
        # DictReader's line_num counts physical lines; a row's first line is what a user looks for.
        start = reader.line_num + 1
        for row in reader:
            where = f"{path.name}:{start}"
            start = reader.line_num + 1
            problem = _ragged(row, len(header), delimiter)
            if problem:
                skipped.append(Skip(where, problem, "ragged"))
            else:
                rows.append(RawRecord(where, row))
    except csv.Error as err:
        raise TunesmithError(f"not valid CSV at line {reader.line_num}: {err}", where=str(path),
                             fix="check the quoting on that line, or save the sheet again as CSV") from None
    return rows


def _csv_delimiter(text: str) -> str:
    """',' unless the header line has none outside quotes and has a ';' (Excel's CSV where a comma is the decimal
    mark), a tab or a '|': then that one."""
    header = re.sub(r'"[^"]*"', "", text.split("\n", 1)[0])
    return "," if "," in header else next((d for d in (";", "\t", "|") if d in header), ",")


# Compressed files are read whole: a workbook (a zip of XML: text sheets unpack to 3-10x their file, Korean text
# ~4x; its zip directory says how much) over both bounds is refused before it is unpacked, a Parquet file as soon
# as its rows unpack past them (a zip bomb unpacks to thousands of times its size, a Parquet column of one
# dictionary value repeated as often: an upload of 100 MB could otherwise ask for 100 GB).
MAX_UNPACK_RATIO, MAX_UNPACKED = 100, 256 * 2**20


def _check_unpacked(path: Path, unpacked: int, what: str, fix: str) -> None:
    size = path.stat().st_size
    if unpacked > MAX_UNPACKED and unpacked > MAX_UNPACK_RATIO * size:
        raise TunesmithError(f"{what} unpacks to {unpacked / 2**20:,.0f} MiB from {size / 2**20:,.1f} MiB (over "
                             f"{MAX_UNPACK_RATIO}x): not read", where=str(path),
                             fix=f"{fix}, if it is really this large")


def _parquet_records(path: Path) -> list[RawRecord]:
    import pyarrow as pa  # comes with `datasets`
    import pyarrow.parquet as pq

    rows, unpacked = [], 0
    try:  # in batches of rows, counted as they unpack: a footer's sizes do not count dictionary-encoded repeats
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            unpacked += batch.nbytes
            _check_unpacked(path, unpacked, "the Parquet file", "save the data as .jsonl and read that")
            rows += batch.to_pylist()
    except (pa.ArrowException, ValueError) as err:
        raise TunesmithError(f"not a readable Parquet file: {str(err).splitlines()[0][:300]}", where=str(path),
                             fix="export it again (a copy may have been cut short), or save the data as .jsonl"
                             ) from None
    return [RawRecord(f"{path.name}[{i}]", row) for i, row in enumerate(rows)]


def _arrow_records(path: Path) -> list[RawRecord]:
    """An Arrow file as `datasets` writes them (data-00000-of-00001.arrow: the IPC stream format; the IPC file
    format too), batch by batch, counted as they unpack like Parquet's."""
    import pyarrow as pa

    rows, unpacked = [], 0
    try:
        with pa.memory_map(str(path)) as source:
            try:
                batches = iter(pa.ipc.open_stream(source))
            except pa.ArrowInvalid:  # the random-access file format ("ARROW1" magic)
                source.seek(0)
                reader = pa.ipc.open_file(source)
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            for batch in batches:
                unpacked += batch.nbytes
                _check_unpacked(path, unpacked, "the Arrow file", "save the data as .jsonl and read that")
                rows += batch.to_pylist()
    except (pa.ArrowException, ValueError, OSError) as err:
        raise TunesmithError(f"not a readable Arrow file: {str(err).splitlines()[0][:300]}", where=str(path),
                             fix="save the data as .jsonl, or point at the folder save_to_disk() wrote") from None
    return [RawRecord(f"{path.name}[{i}]", row) for i, row in enumerate(rows)]


def _xlsx_records(path: Path, skipped: list[Skip]) -> list[RawRecord]:
    """Every sheet of an Excel workbook, each headed by its first non-empty row, as a CSV export of it would read:
    each cell as the text the sheet holds (a number or date written as text, an empty cell as ""), a row as
    `file.xlsx:Sheet:row` (Excel's own row number). Formulas give the values Excel last computed. A value in a
    column without a header is a ragged row, not dropped; rows with no value at all are left out, as a CSV's
    blank lines are."""
    import zipfile

    import openpyxl  # defusedxml installed beside it: openpyxl then parses the workbook's XML with it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(info.file_size for info in z.infolist())
    except zipfile.BadZipFile:
        unpacked = 0  # openpyxl's own error below says what is wrong with the file
    _check_unpacked(path, unpacked, "the workbook", "save the sheet as CSV (UTF-8) and read that")
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as err:
        raise TunesmithError(f"not a readable Excel workbook: {str(err).splitlines()[0][:300] if str(err) else ''}",
                             where=str(path), fix="open and save it again in Excel (an .xls of before 2007: save "
                             "as .xlsx), or save the sheet as CSV (UTF-8)") from None
    try:
        return [r for sheet in book.worksheets for r in _sheet_records(path, sheet, skipped)]
    finally:
        book.close()


def _sheet_records(path: Path, sheet, skipped: list[Skip]) -> list[RawRecord]:  # noqa: ANN001
    rows = ((n, [_cell_text(v) for v in values]) for n, values in enumerate(sheet.values, start=1))
    rows = ((n, cells) for n, cells in rows if any(cells))
    head = next(rows, None)
    if head is None:
        return []
    where = f"{path.name}:{sheet.title}"
    header = head[1][:max(i + 1 for i, h in enumerate(head[1]) if h)]
    _check_header(Path(where), header, head[0], blank_ok=True)
    out = []
    for n, cells in rows:
        extra = [i for i, v in enumerate(cells) if v and (i >= len(header) or not header[i])]
        if extra:
            skipped.append(Skip(f"{where}:{n}", f"a value in column {_column(extra[0])}, which has no header",
                                "no_header"))
            continue
        out.append(RawRecord(f"{where}:{n}", {h: (cells[i] if i < len(cells) else "")
                                             for i, h in enumerate(header) if h}))
    return out


def _cell_text(value: object) -> str:
    """A cell as CSV would hold it: text as it is, an integral number without ".0", a date in ISO form."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()  # a date cell (Excel keeps dates as midnight)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _column(i: int) -> str:
    """Excel's name of the column at index i (0 -> A, 26 -> AA)."""
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(65 + r) + name
    return name


def _text_records(path: Path, text: str) -> list[RawRecord]:
    # One record per non-blank line, as `datasets`' text loader does; for completion (not chat) training.
    # Lines end at "\n" only (see _lines), so a record's number is the line an editor shows; `datasets`
    # splits with str.splitlines, which would also cut at U+2028 or a form feed inside a line.
    return [RawRecord(f"{path.name}:{n}", {"text": line}) for n, line in enumerate(_lines(text), start=1)
            if line.strip()]


def _saved_dataset_records(path: Path) -> list[RawRecord]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except PermissionError:
        raise
    except Exception as err:  # datasets raises many types here (FileNotFoundError, KeyError, JSONDecodeError)
        marker = "dataset_dict.json" if (path / "dataset_dict.json").is_file() else "state.json"
        raise TunesmithError(f"has a {marker}, so it was read as a folder saved by `datasets`, but loading it "
                             f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}",
                             where=str(path), fix="save it again with save_to_disk(); if it is a folder of data "
                                                  f"files, point at them instead (e.g. {path}/*.jsonl)") from None
    if isinstance(ds, DatasetDict):  # every split is data the user asked for; the split name stays in the location
        return [RawRecord(f"{path.name}/{split}[{i}]", row) for split in ds for i, row in enumerate(ds[split])]
    return [RawRecord(f"{path.name}[{i}]", row) for i, row in enumerate(ds)]


READERS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
           ".parquet": "parquet", ".arrow": "arrow", ".txt": "text", ".xlsx": "xlsx", ".xlsm": "xlsx"}
# A text file compressed whole (data.jsonl.gz, as hub data sets often come): the compressor's stdlib module.
COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}
_TEXT_KINDS = ("json", "jsonl", "csv", "tsv", "text")
SUPPORTED = f"{', '.join(READERS)} (the text ones also as {', '.join(COMPRESSED)})"


def unused_fields(rows: list[Any], used: Callable[[dict], set[str]]) -> dict[str, tuple[int, tuple[str, ...]]]:
    """Fields the rows have that a format does not read (`used`: a row's fields it does read): field -> (rows
    with it, up to 3 distinct values): what inspect reports as read but not used, never dropped without a word."""
    out: dict[str, tuple[int, list[str]]] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        read = used(row)
        for key in [k for k in row if k not in read]:  # in the row's order
            n, values = out.get(key, (0, []))
            text = " ".join(str(row[key]).split())[:40]
            out[key] = (n + 1, values + [text] if len(values) < 3 and text not in values else values)
    return {k: (n, tuple(v)) for k, (n, v) in out.items()}


def kind_of(path: Path) -> str | None:
    """Which reader takes a file, by its name: its suffix's, or for a compressed text file (name.jsonl.gz) the
    suffix's before the compressor's; None where none does.

    >>> kind_of(Path("train.jsonl.gz")), kind_of(Path("a.csv")), kind_of(Path("a.parquet.gz"))
    ('jsonl', 'csv', None)
    """
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        kind = READERS.get(suffixes[-2]) if len(suffixes) > 1 else None
        return kind if kind in _TEXT_KINDS else None
    return READERS.get(path.suffix.lower())


def _raw(path: Path) -> bytes:
    """The file's bytes, decompressed where its name says it is compressed, counted as they unpack (the bounds of
    _check_unpacked: a gzip bomb is refused after 256 MiB, not read to the end)."""
    module = COMPRESSED.get(path.suffix.lower())
    if module is None:
        return path.read_bytes()
    import importlib
    import lzma

    opener, out = importlib.import_module(module), bytearray()
    try:
        with opener.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                out += chunk
                _check_unpacked(path, len(out), f"the {path.suffix} file", "decompress it yourself and read that")
    except (OSError, EOFError, ValueError, lzma.LZMAError) as err:  # gzip.BadGzipFile is an OSError
        raise TunesmithError(f"not a readable {path.suffix} file: {err}", where=str(path),
                             fix="download or compress it again (a copy may have been cut short)") from None
    return bytes(out)


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def expand(spec: Path) -> list[Path]:
    """A file, a folder of data files, a glob, or a saved `datasets` folder -> the paths to read, sorted.

    >>> expand(Path("data/*.jsonl"))  # doctest: +SKIP
    [PosixPath('data/a.jsonl'), PosixPath('data/b.jsonl')]
    """
    text = str(spec)
    if any(ch in text for ch in "*?["):
        found = sorted(p for p in Path(spec.anchor or ".").glob(text.lstrip("/")) if kind_of(p))
        if not found:
            raise TunesmithError(f"no data files match {text}", fix=f"supported types: {SUPPORTED}")
        return found
    try:
        is_folder = spec.is_dir() and not is_saved_dataset(spec)
    except PermissionError:  # a folder on the way to it cannot be searched
        raise TunesmithError("cannot reach it: permission denied", where=str(spec),
                             fix="check the permissions of the folders on its path (ls -ld)") from None
    if is_folder:
        found = _walk(spec)
        if not found:
            raise TunesmithError(f"folder {spec} holds no data files",
                                 fix=f"put {SUPPORTED} files in it, or point at a file")
        return found
    return [spec]


DESCRIPTION = "dataset_info.json"  # LLaMA-Factory's description of the files beside it (data/llamafactory.py)


def _walk(folder: Path) -> list[Path]:
    """Data files and saved `datasets` folders under `folder`. Not Path.rglob: it skips an unreadable subfolder
    without a word, and would read a saved dataset's own state.json as data. LLaMA-Factory's dataset_info.json
    describes the files beside it and is not one of them."""
    def fail(err: OSError, name: str | None = None) -> None:
        name = name or err.filename
        raise TunesmithError(f"cannot list folder {name}: {err.strerror}", where=str(folder),
                             fix=f"check its permissions (ls -ld {name}), or point at the files you mean")

    found = []
    for root, dirs, files in os.walk(folder, onerror=fail, followlinks=True):  # rglob follows links too
        here = Path(root)
        saved = set()
        for d in dirs:
            try:
                if is_saved_dataset(here / d):
                    saved.add(d)
            except PermissionError as err:  # looking for its state.json needs the right to search it
                fail(err, str(here / d))
        found += [here / d for d in saved]
        dirs[:] = [d for d in dirs if d not in saved]
        found += [here / f for f in files if kind_of(Path(f)) and (here / f).is_file() and f != DESCRIPTION]
    return sorted(found)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(path: Path) -> bool:
    return not path.exists() and bool(_HUB_ID.match(str(path))) and not kind_of(path)


def _hub_records(dataset_id: str) -> list[RawRecord]:

    from datasets import load_dataset

    try:
        # Where the hub cannot be reached only the local datasets cache is tried (no ~50 s of retries).
        ds = load_dataset(dataset_id) if hub.reachable() else _cached_dataset(dataset_id)
    except Exception as err:  # datasets raises many types (FileNotFoundError, ConnectionError, DatasetNotFoundError)
        raise TunesmithError(f"{dataset_id!r} is not a local file or folder, and loading it as a hub dataset "
                             f"failed: {str(err).splitlines()[0][:300]}",
                             fix="check the path; for a hub dataset, download it where the hub is reachable and "
                                 "save_to_disk(), then point at that folder; or export it to .jsonl") from None
    return [RawRecord(f"{dataset_id}/{split}[{i}]", row) for split in ds for i, row in enumerate(ds[split])]


def _cached_dataset(dataset_id: str):  # noqa: ANN202
    import os

    from datasets import load_dataset

    old = os.environ.get("HF_DATASETS_OFFLINE")
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        return load_dataset(dataset_id)
    finally:
        if old is None:
            os.environ.pop("HF_DATASETS_OFFLINE", None)
        else:
            os.environ["HF_DATASETS_OFFLINE"] = old


def read(path: Path, encoding: str = "auto") -> tuple[list[RawRecord], list[Skip], str]:
    """Read one file into raw records; rows that cannot even be parsed are returned as skips.

    >>> records, skipped, encoding = read(Path("data.jsonl"))  # doctest: +SKIP
    """
    try:
        return _read(path, encoding)
    except PermissionError:
        raise TunesmithError("cannot read it: permission denied", where=str(path),
                             fix=f"check its permissions (ls -l {path}), or leave it out of the data") from None
    except OSError as err:  # a folder named like a data file, a vanished network file, a disk error
        raise TunesmithError(f"cannot read it: {err.strerror or err}", where=str(path),
                             fix="point at a readable data file") from None


def _read(path: Path, encoding: str) -> tuple[list[RawRecord], list[Skip], str]:
    if is_saved_dataset(path):
        return _saved_dataset_records(path), [], "arrow"
    if looks_like_hub_id(path):
        return _hub_records(str(path)), [], "arrow"
    if not path.exists():
        raise TunesmithError(f"data file {path} not found", fix="check the path in the config's data section")
    kind = kind_of(path)
    if kind is None:
        suffix = path.suffix.lower()
        raise TunesmithError(f"unsupported file type {path.suffix!r}", where=str(path),
                             fix=("save it in Excel as .xlsx (or the sheet as CSV, UTF-8); " if suffix in
                                  (".xls", ".ods", ".numbers") else "")
                             + (f"a run config is given as itself, not as data: tunesmith plan {path} (a "
                                "LLaMA-Factory or Axolotl one: tunesmith init --from it); for data, "
                                if suffix in (".yaml", ".yml") else "")
                             + f"use one of {SUPPORTED}, a folder of them, or a saved datasets folder")
    skipped: list[Skip] = []
    if kind == "parquet":
        return _parquet_records(path), skipped, "parquet"
    if kind == "arrow":
        return _arrow_records(path), skipped, "arrow"
    if kind == "xlsx":
        return _xlsx_records(path, skipped), skipped, "xlsx"
    text, encoding = decode(path, encoding)
    if kind == "json":
        records = _json_records(path, text)
    elif kind == "jsonl":
        records = _jsonl_records(path, text, skipped)
    elif kind == "text":  # a KakaoTalk export is a chat log, any other text a record per line
        records = chatlog.kakao_records(path, text) or _text_records(path, text)
    else:
        records = _csv_records(path, text, _csv_delimiter(text) if kind == "csv" else "\t", skipped)
    return records, skipped, encoding
