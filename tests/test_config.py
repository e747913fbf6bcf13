from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith import config
from tunesmith.errors import TunesmithError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates_and_its_data_exists(path: Path):
    cfg = config.load(path)
    assert all(p.is_file() for p in [*cfg.data.train, *cfg.data.eval])


def test_shipped_configs_are_found():
    assert any(p.name == "demo.yaml" for p in CONFIGS)


def test_unknown_key_says_did_you_mean(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {train: [a.jsonl]}\ntrain: {epoch: 2}\n")
    with pytest.raises(TunesmithError) as err:
        config.load(p)
    msg = str(err.value)
    assert str(p) in msg and 'unknown key "train.epoch"' in msg and 'did you mean "epochs"' in msg


def test_bad_value_names_the_key_and_the_value(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {train: [a.jsonl], eval_fraction: 1.5}\n")
    with pytest.raises(TunesmithError, match=r'"data.eval_fraction": .*less than 1 \(got 1.5\)'):
        config.load(p)


def test_set_overrides_and_relative_paths(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {train: [sub/a.jsonl]}\n")
    cfg = config.load(p, ["train.epochs=1", "lora.r=4"])
    assert cfg.train.epochs == 1 and cfg.lora.r == 4 and cfg.data.train == [tmp_path / "sub" / "a.jsonl"]
    with pytest.raises(TunesmithError, match="did you mean"):
        config.load(p, ["trian.epochs=1"])


def test_resolved_config_round_trips(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {train: [a.jsonl]}\n")
    cfg = config.load(p)
    again = tmp_path / "again.yaml"
    again.write_text(cfg.to_yaml())
    assert config.load(again) == cfg


def test_docs_config_md_is_current():
    docs = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert docs.read_text() == config.reference_markdown(), "regenerate: python -m tunesmith.config > docs/config.md"
