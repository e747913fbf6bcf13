from __future__ import annotations

from pathlib import Path

from tests.conftest import write_json
from tunesmith.config import DataConfig
from tunesmith.data.prepare import prepare


def _rows(n: int) -> list[dict]:
    return [{"prompt": f"question {i}", "completion": f"answer {i}"} for i in range(n)]


def test_split_is_seeded_deterministic_and_counts_add_up(tmp_path: Path):
    rows = _rows(50) + [{"prompt": "question  1", "completion": "answer 1"}]  # whitespace-normalised duplicate
    path = write_json(tmp_path / "d.json", rows)
    a = prepare(DataConfig(train=[path], seed=1))
    b = prepare(DataConfig(train=[path], seed=1))
    c = prepare(DataConfig(train=[path], seed=2))
    assert a.train == b.train and a.eval == b.eval and a.eval != c.eval
    assert (len(a.train), len(a.eval)) == (40, 10)
    assert [(d.location, d.reason) for d in a.duplicates] == [
        ("d.json[50]", "duplicate of d.json[1] (same after whitespace/Unicode normalisation)")]
    assert a.rows_read == len(a.train) + len(a.eval) + len(a.skipped) + len(a.duplicates)
    assert a.warnings  # 10 eval rows is too few to mean much


def test_rows_sharing_a_prompt_never_straddle_train_and_eval(tmp_path: Path):
    rows = [{"prompt": f"paragraph {i // 4}", "completion": f"question {i}"} for i in range(40)]
    data = prepare(DataConfig(train=[write_json(tmp_path / "p.json", rows)]))
    train_prompts = {c.messages[-2].content for c in data.train}
    assert not train_prompts & {c.messages[-2].content for c in data.eval}
    assert len(data.eval) % 4 == 0 and len(data.train) + len(data.eval) == 40


def test_explicit_eval_file_wins_over_a_repeated_train_row(tmp_path: Path):
    train = write_json(tmp_path / "t.json", _rows(30))
    held = write_json(tmp_path / "e.json", _rows(3))
    data = prepare(DataConfig(train=[train], eval=[held]))
    assert len(data.eval) == 3 and len(data.train) == 27
    assert [d.reason for d in data.duplicates] == [f"duplicate of e.json[{i}]" for i in range(3)]


def test_strict_fails_on_a_skipped_row(tmp_path: Path):
    import pytest

    from tunesmith.errors import TunesmithError

    path = write_json(tmp_path / "d.json", _rows(30) + [{"prompt": "x", "completion": ""}])
    assert len(prepare(DataConfig(train=[path])).skipped) == 1
    with pytest.raises(TunesmithError, match=r"1 unusable rows.*\n  - 1 row a turn with no text: d.json\[30\]\n"
                                              r"    e.g. d.json\[30\]: turn 1 \(assistant\): empty"):
        prepare(DataConfig(train=[path], strict=True))


def test_exact_and_normalised_duplicates_are_told_apart(tmp_path: Path):
    rows = _rows(30) + [{"prompt": "question 0", "completion": "answer 0"},
                        {"prompt": "question\u00a01", "completion": "answer 1"}]
    data = prepare(DataConfig(train=[write_json(tmp_path / "d.json", rows)]))
    assert [d.reason for d in data.duplicates] == [
        "duplicate of d.json[0]", "duplicate of d.json[1] (same after whitespace/Unicode normalisation)"]


def test_a_plain_text_file_splits_into_train_and_eval(tmp_path: Path):
    """Text rows have no user turn: each is its own prompt group (was: StopIteration, a traceback from plan)."""
    path = tmp_path / "notes.txt"
    path.write_text("".join(f"Line {i} of a plain text corpus about cats.\n" for i in range(30)), "utf-8")
    data = prepare(DataConfig(train=[path]))
    assert (len(data.train), len(data.eval)) == (22, 8)
    assert {m.role for c in data.train + data.eval for m in c.messages} == {"text"}


def test_a_system_prompt_that_text_rows_cannot_carry_is_said(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("".join(f"Line {i} of a plain text corpus about cats.\n" for i in range(30)), "utf-8")
    data = prepare(DataConfig(train=[path], system="Be kind."))
    assert ("data.system is not added to the 30 plain-text or segments rows: they are trained as written, without a "
            "chat template to carry a system turn") in data.warnings
    assert not any("data.system" in w for w in prepare(DataConfig(train=[path])).warnings)
