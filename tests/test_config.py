from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith import config, config_docs, yamltext
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
    for steps in (0, -2):  # transformers trained one step at 0 where the plan counted train.epochs'
        p.write_text(f"name: x\ndata: {{train: [a.jsonl]}}\ntrain: {{max_steps: {steps}}}\n")
        with pytest.raises(TunesmithError, match=rf'"train.max_steps": expected -1 .* >= 1 \(got {steps}\)'):
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
    assert docs.read_text() == config_docs.reference_markdown(), "regenerate: python -m tunesmith.config_docs > docs/config.md"


def test_a_repeated_key_is_an_error_naming_the_key_and_both_lines(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {train: [a.jsonl]}\ntrain:\n  epochs: 1\n  seed: 3\n  epochs: 5\nname: y\n")
    with pytest.raises(TunesmithError) as err:
        config.load(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: a key appears twice in the same section")
    assert '"epochs" on line 6 (first on line 4)' in msg and '"name" on line 7 (first on line 1)' in msg
    assert "how to fix: keep one of each" in msg


def test_yaml_merge_keys_may_repeat(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {train: [a.jsonl]}\nbase: &b {epochs: 2}\n")
    assert yamltext.yaml_load("a: &b {x: 1}\nc: {<<: *b, y: 2}\n", where="t") == {"a": {"x": 1}, "c": {"x": 1, "y": 2}}


@pytest.mark.parametrize("raw", [b"name: \xc7\xd1\xb1\xdb\n", b"name: x\ndata: {train: [caf\xe9.jsonl]}\n"],
                         ids=["cp949", "latin-1"])
def test_a_config_that_is_not_utf8_is_a_clear_error(tmp_path: Path, raw: bytes):
    p = tmp_path / "c.yaml"
    p.write_bytes(raw)
    line = raw.count(b"\n", 0, raw.index(b"\xc7" if b"\xc7" in raw else b"\xe9")) + 1
    with pytest.raises(TunesmithError) as err:
        config.load(p)
    assert str(err.value).startswith(f"{p}:{line}: not UTF-8 text: byte 0x")
    assert "save the config as UTF-8" in str(err.value)


@pytest.mark.parametrize(("name", "raw", "what"), [
    ("notes.txt", "Line one of a text corpus.\nLine two.\n", "a config must be a mapping"),
    ("d.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n', "not valid YAML"),
    ("m.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n', "invalid config"),
    ("k.csv", "질문,답변\n안녕,네\n".encode("cp949"), "not UTF-8 text")])
def test_a_data_file_given_as_the_config_says_to_pass_it_with_data(tmp_path: Path, name: str, raw, what: str):
    """`tunesmith plan mine.jsonl`: whatever the file's first error, the fix names --data."""
    path = tmp_path / name
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    with pytest.raises(TunesmithError) as err:
        config.load(path)
    assert what in err.value.what and err.value.fix.startswith(f"to train on {name} as data: --data {path}")


def test_a_utf8_bom_is_fine(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_bytes("\ufeffname: x\ndata: {train: [a.jsonl]}\n".encode())
    assert config.load(p).name == "x"


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
@pytest.mark.parametrize("key", ["train.epochs", "train.learning_rate", "eval.temperature", "lora.dropout"])
def test_infinite_and_nan_floats_are_rejected(tmp_path: Path, key: str, value: str):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {train: [a.jsonl]}\n")
    with pytest.raises(TunesmithError, match=rf'"{key}": Input should be a finite number'):
        config.load(p, [f"{key}={value}"])


def test_a_set_value_that_is_not_yaml_names_the_assignment_and_how_to_quote(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {train: [a.jsonl]}\n")
    with pytest.raises(TunesmithError) as err:
        config.load(p, ["data.system=[oops"])
    assert str(err.value).startswith("--set data.system=[oops: the value '[oops' of data.system is not valid YAML")
    assert "how to fix: quote it to mean text: --set 'data.system=\"[oops\"'" in str(err.value)
    assert config.load(p, ['data.system="[oops"']).data.system == "[oops"


def test_override_quotes_flag_values_so_they_arrive_as_typed(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {train: [a.jsonl]}\n")
    cfg = config.load(p, [config.override("eval.embedder", "[x"), config.override("model", "a: b"),
                          config.override("train.epochs", 2.5)])
    assert (cfg.eval.embedder, cfg.model, cfg.train.epochs) == ("[x", "a: b", 2.5)


@pytest.mark.parametrize(("key", "value", "want"), [("train.lr_scheduler", "cosin", 'did you mean "cosine"'),
                                                    ("train.optimizer", "adam_torch", 'did you mean "adamw_torch"'),
                                                    ("train.optimizer", "nope", "transformers knows: adamw_torch")])
def test_unknown_scheduler_and_optimizer_fail_at_validation(tmp_path: Path, key: str, value: str, want: str):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {train: [a.jsonl]}\n")
    with pytest.raises(TunesmithError) as err:
        config.load(p, [f"{key}={value}"])
    assert f'"{key}": unknown' in str(err.value) and want in str(err.value) and "Value error" not in str(err.value)


def test_scheduler_and_optimizer_names_match_the_installed_transformers():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert set(config.SCHEDULERS) == {s.value for s in SchedulerType}
    assert set(config.OPTIMIZERS) == {o.value for o in OptimizerNames}


def test_bare_on_and_off_mean_the_setting_not_a_boolean(tmp_path: Path):
    """YAML 1.1 reads a bare on / off (and true / false) as a boolean: the on/off settings take it as written, and
    train.compile's yes/no of before session 20 still means layers / off."""
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nmodel: m\ndata: {train: [a.jsonl]}\ntrain: {padding_free: on, compile: on}\n"
                 "eval: {retention: off}\n", encoding="utf-8")
    cfg = config.load(p)
    assert (cfg.train.padding_free, cfg.train.compile, cfg.eval.retention) == ("on", "layers", "off")
    cfg = config.load(p, ["train.padding_free=off", "train.compile=false", "eval.retention=on"])
    assert (cfg.train.padding_free, cfg.train.compile, cfg.eval.retention) == ("off", "off", "on")
    assert config.load(p, ["train.compile=graphs"]).train.compile == "graphs"


@pytest.mark.parametrize("name", [".", ".."])
def test_a_run_name_of_dot_or_dot_dot_is_refused_at_validation(tmp_path: Path, name: str):
    """They fit the name pattern but name the output dir itself or its parent (`plan` printed "output: runs/..");
    `train` refused them only when it made the folder (rundir.check_name)."""
    p = tmp_path / "c.yaml"
    p.write_text(f"name: '{name}'\nmodel: m\ndata: {{train: [a.jsonl]}}\n", encoding="utf-8")
    with pytest.raises(TunesmithError, match="plain folder name") as err:
        config.load(p)
    assert '"name"' in err.value.render()
    assert config.load(p, ["name=demo-2"]).name == "demo-2"
