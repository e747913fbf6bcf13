"""Skips are typed where they happen and summarised in a few lines per kind, with the fix to type."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import tunesmith
from tunesmith.config import DataConfig
from tunesmith.data.prepare import dedup, read_all
from tunesmith.records import Skip
from tunesmith.runfiles import DataReport
from tunesmith.skips import SKIP_FIXES, SKIP_KINDS, skip_lines


def test_every_kind_has_a_label_and_a_fix():
    assert SKIP_KINDS.keys() == SKIP_FIXES.keys()


def test_template_skips_are_summarised_with_lengths_places_and_the_setting_to_type():
    skipped = [Skip(f"f.jsonl:{i}", f"{n} tokens, longer than template.max_length=384: dropped", "too_long", n)
               for i, n in enumerate(range(400, 1400), start=1)]
    skipped.append(Skip("f.jsonl:2000", "no supervised tokens in this conversation", "no_supervision", 30))
    lines = skip_lines(skipped, 384, context=8192)
    assert lines == [
        "1000 rows longer than template.max_length 384; 400-1399 tokens, median 900: f.jsonl:1, f.jsonl:2, "
        "f.jsonl:3 (+997 more)",
        "  fix: --set template.max_length=1408 keeps them (or --set template.overflow=truncate: older turns and "
        "input text are cut, never the answer)",
        "1 row nothing to learn (no assistant text after templating); 30-30 tokens, median 30: f.jsonl:2000",
        "  fix: check the assistant turns are not empty nor all of weight 0 (tunesmith inspect FILE), or --set "
        "template.supervise=all"]


def write_messy(folder: Path) -> Path:
    """One JSONL file with a row of each reading problem (and a duplicate), 1,000 bad-JSON lines among them."""
    good = {"messages": [{"role": "user", "content": "안녕하세요"}, {"role": "assistant", "content": "반가워요"}]}
    lines = [json.dumps(good, ensure_ascii=False)]
    lines += ['{"messages": [' for _ in range(1000)]  # a truncated export
    lines.append(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}))
    lines.append(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}]}))
    lines.append(json.dumps({"messages": [{"role": "user", "content": "only a question"}]}))
    lines.append(json.dumps({"messages": [{"role": "user", "content": "a\x00b"}, {"role": "assistant", "content": "c"}]}))
    lines.append(json.dumps({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "c"}]}))
    lines.append(json.dumps(good, ensure_ascii=False))
    path = folder / "messy.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reading_problems_have_kinds_not_parsed_back_from_text(tmp_path: Path):
    path = write_messy(tmp_path)
    files = read_all([path], DataConfig(train=[path]))
    kinds = [s.kind for s in files[0].skipped]
    assert kinds.count("bad_json") == 1000
    assert sorted(set(kinds) - {"bad_json"}) == ["control_char", "empty_turn", "no_answer", "not_text", "turn_order"]
    _, dups = dedup(list(files[0].conversations))
    assert [(d.location, d.kind) for d in dups] == [("messy.jsonl:1007", "duplicate")]
    report = DataReport(1007, 1, 0, 1, (), files[0].skipped, ())
    assert report.skipped_by_reason["not valid JSON"] == 1000  # one table row, not one per column number


def test_inspect_groups_by_kind_with_one_example_and_a_fix_each(tmp_path: Path):
    res = tunesmith("inspect", str(write_messy(tmp_path)))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "1000 rows not valid JSON: messy.jsonl:2, messy.jsonl:3, messy.jsonl:4 (+997 more)" in out
    assert "  e.g. messy.jsonl:2: not valid JSON (Expecting value at column 15)" in out
    assert "fix: each line must hold one whole JSON object" in out
    assert "1 row turns that do not alternate user, assistant: messy.jsonl:1003" in out
    assert "fix: map your role names with data.roles (e.g. --set data.roles.counselor=assistant)" in out
    assert "1 row duplicate of an earlier row: messy.jsonl:1007" in out
    assert out.count("  fix: ") == 7 and len(out.splitlines()) < 60


def test_too_few_rows_left_says_which_were_not_read(tmp_path: Path):
    # the file has 2 usable rows (one a duplicate): the error lists the kinds of row that were not read, bounded
    res = tunesmith("plan", "--data", str(write_messy(tmp_path)))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "only 1 usable conversations; cannot hold out 8 for eval" in res.stderr
    assert "  - 1000 rows not valid JSON: messy.jsonl:2" in res.stderr and "fix: each line must hold" in res.stderr
    assert len(res.stderr.splitlines()) < 30


def test_plan_prints_the_reading_summary(tmp_path: Path):
    path = write_messy(tmp_path)
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    rows = [json.dumps({"messages": [{**good["messages"][0], "content": f"q{i}"}, good["messages"][1]]})
            for i in range(20)]
    path.write_text(path.read_text(encoding="utf-8") + "\n".join(rows) + "\n", encoding="utf-8")
    res = tunesmith("plan", "--data", str(path), "--model", str(tmp_path / "no-model"))
    out = res.stdout + res.stderr  # plan reads the data before the model: the summary comes first
    assert "data: " in out and "  1000 rows not valid JSON" in out and "    fix: each line must hold" in out
    assert len(out.splitlines()) < 60
