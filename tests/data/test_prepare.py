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
    assert (len(a.train), len(a.eval), a.duplicates) == (40, 10, 1)
    assert a.rows_read == len(a.train) + len(a.eval) + len(a.skipped) + a.duplicates
    assert a.warnings  # 10 eval rows is too few to mean much


def test_rows_sharing_a_prompt_never_straddle_train_and_eval(tmp_path: Path):
    rows = [{"prompt": f"paragraph {i // 4}", "completion": f"question {i}"} for i in range(40)]
    data = prepare(DataConfig(train=[write_json(tmp_path / "p.json", rows)]))
    train_prompts = {c.messages[-2].content for c in data.train}
    assert not train_prompts & {c.messages[-2].content for c in data.eval}
    assert len(data.eval) % 4 == 0 and len(data.train) + len(data.eval) == 40
