"""Read a data file into RawRecords, each tagged with where it came from (file:line or file[index]).

Encodings are detected, not assumed: Korean users' files are often cp949 or carry a BOM.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.records import RawRecord, Skip

# Tried in order; cp949 is a superset of EUC-KR, the usual encoding of Korean CSV exports.
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
_FALLBACKS = ("utf-8", "cp949")


def decode(path: Path, encoding: str = "auto") -> tuple[str, str]:
    """Return (text, encoding name) for a file: the given encoding, or BOMs, UTF-8, then cp949."""
    raw = path.read_bytes()
    if encoding != "auto":
        try:
            return raw.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as err:
            raise TunesmithError(f"cannot decode as {encoding}: {err}", where=str(path),
                                 fix="use encoding: auto, or the encoding the file was saved in") from None
    for bom, name in _BOMS:
        if raw.startswith(bom):
            return raw.decode(name), name
    for name in _FALLBACKS:
        try:
            return raw.decode(name), name
        except UnicodeDecodeError:
            continue
    raise TunesmithError("cannot decode the file as UTF-8, UTF-16 or cp949", where=str(path),
                         fix="re-save the file as UTF-8")


def _json_records(path: Path, text: str) -> list[RawRecord]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise TunesmithError(f"not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}",
                             where=str(path), fix="fix the JSON, or save one object per line as .jsonl") from None
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
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{n}"
        try:
            row = json.loads(line)
            if isinstance(row, str):  # a line that is itself a JSON-encoded object
                row = json.loads(row)
        except json.JSONDecodeError as err:
            skipped.append(Skip(where, f"not valid JSON ({err.msg} at column {err.colno})"))
            continue
        out.append(RawRecord(where, row))
    return out


def _csv_records(path: Path, text: str, delimiter: str) -> list[RawRecord]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    # DictReader's line_num counts physical lines; a row's first line is what a user looks for.
    rows = []
    start = 2
    try:
        for row in reader:
            rows.append(RawRecord(f"{path.name}:{start}", {k: v for k, v in row.items() if k is not None}))
            start = reader.line_num + 1
    except csv.Error as err:
        raise TunesmithError(f"not valid CSV at line {reader.line_num}: {err}", where=str(path),
                             fix="check the quoting on that line, or save the sheet again as CSV") from None
    return rows


def _parquet_records(path: Path) -> list[RawRecord]:
    import pyarrow.parquet as pq  # comes with `datasets`

    return [RawRecord(f"{path.name}[{i}]", row) for i, row in enumerate(pq.read_table(path).to_pylist())]


def _text_records(path: Path, text: str) -> list[RawRecord]:
    # One record per non-blank line, as `datasets`' text loader does; for completion (not chat) training.
    return [RawRecord(f"{path.name}:{n}", {"text": line}) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip()]


def _saved_dataset_records(path: Path) -> list[RawRecord]:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):  # every split is data the user asked for; the split name stays in the location
        return [RawRecord(f"{path.name}/{split}[{i}]", row) for split in ds for i, row in enumerate(ds[split])]
    return [RawRecord(f"{path.name}[{i}]", row) for i, row in enumerate(ds)]


READERS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
           ".parquet": "parquet", ".txt": "text"}


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def expand(spec: Path) -> list[Path]:
    """A file, a folder of data files, a glob, or a saved `datasets` folder -> the paths to read, sorted.

    >>> expand(Path("data/*.jsonl"))  # doctest: +SKIP
    [PosixPath('data/a.jsonl'), PosixPath('data/b.jsonl')]
    """
    text = str(spec)
    if any(ch in text for ch in "*?["):
        found = sorted(p for p in Path(spec.anchor or ".").glob(text.lstrip("/")) if p.suffix.lower() in READERS)
        if not found:
            raise TunesmithError(f"no data files match {text}", fix=f"supported types: {', '.join(READERS)}")
        return found
    if spec.is_dir() and not is_saved_dataset(spec):
        found = sorted(p for p in spec.rglob("*") if p.is_file() and p.suffix.lower() in READERS)
        if not found:
            raise TunesmithError(f"folder {spec} holds no data files",
                                 fix=f"put {', '.join(READERS)} files in it, or point at a file")
        return found
    return [spec]


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(path: Path) -> bool:
    return not path.exists() and bool(_HUB_ID.match(str(path))) and path.suffix.lower() not in READERS


def _hub_records(dataset_id: str) -> list[RawRecord]:
    from tunesmith.models import hub_reachable

    from datasets import load_dataset

    try:
        # Where the hub cannot be reached only the local datasets cache is tried (no ~50 s of retries).
        ds = load_dataset(dataset_id) if hub_reachable() else _cached_dataset(dataset_id)
    except Exception as err:  # datasets raises many types (FileNotFoundError, ConnectionError, DatasetNotFoundError)
        raise TunesmithError(f"{dataset_id!r} is not a local file or folder, and loading it as a hub dataset "
                             f"failed: {str(err).splitlines()[0][:300]}",
                             fix="check the path; for a hub dataset, download it where the hub is reachable and save_to_disk(), then point at "
                                 "that folder; or export it to .jsonl") from None
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
    if is_saved_dataset(path):
        return _saved_dataset_records(path), [], "arrow"
    if looks_like_hub_id(path):
        return _hub_records(str(path)), [], "arrow"
    if not path.exists():
        raise TunesmithError(f"data file {path} not found", fix="check the path in the config's data section")
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise TunesmithError(f"unsupported file type {path.suffix!r}", where=str(path),
                             fix=f"use one of {', '.join(READERS)}, a folder of them, or a saved datasets folder")
    if kind == "parquet":
        return _parquet_records(path), [], "parquet"
    text, encoding = decode(path, encoding)
    skipped: list[Skip] = []
    if kind == "json":
        records = _json_records(path, text)
    elif kind == "jsonl":
        records = _jsonl_records(path, text, skipped)
    elif kind == "text":
        records = _text_records(path, text)
    else:
        records = _csv_records(path, text, "," if kind == "csv" else "\t")
    return records, skipped, encoding
