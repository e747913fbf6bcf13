"""LLaMA-Factory and Axolotl training configs read as the tunesmith run they describe (`init --from`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import fails, tunesmith
from tunesmith import config, foreign
from tunesmith.errors import TunesmithError

LLAMAFACTORY = """model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
trust_remote_code: true
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
dataset: my_qa,alpaca_en_demo
template: llama3
cutoff_len: 2048
max_samples: 1000
output_dir: saves/llama3-8b/lora/sft
report_to: none
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
"""

AXOLOTL = """base_model: HuggingFaceTB/SmolLM2-135M-Instruct
load_in_4bit: true
datasets:
  - path: data/chat.jsonl
    type: chat_template
    field_messages: dialog
    message_property_mappings: {role: speaker, content: text}
    roles: {user: [client], assistant: [counselor]}
  - path: mhenrichsen/alpaca_2k_test
    type: alpaca
val_set_size: 0.05
output_dir: ./outputs/qlora-out
adapter: qlora
lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_linear: true
sequence_len: 4096
sample_packing: true
gradient_accumulation_steps: 4
micro_batch_size: 2
num_epochs: 1
learning_rate: 0.0002
train_on_inputs: false
rl: dpo
dpo_beta: 0.2
warmup_steps: 10
"""


def _lf_folder(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "my_qa.json").write_text(json.dumps(
        [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(30)]), encoding="utf-8")
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps(
        {"my_qa": {"file_name": "my_qa.json"}, "alpaca_en_demo": {"hf_hub_url": "llamafactory/alpaca_en"}}))
    source = tmp_path / "llama3_lora_sft.yaml"
    source.write_text(LLAMAFACTORY, encoding="utf-8")
    return source


def test_a_llamafactory_config_becomes_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Its dataset names are looked up in its dataset_info.json, its defaults kept where it is silent (alpha = 2 x
    rank, no dropout), 1.0e-4 read as a number, output_dir split into output_dir and name; every other key is a
    note saying why (a hub dataset, its template, trust_remote_code), and the result validates."""
    monkeypatch.chdir(tmp_path)
    source = _lf_folder(tmp_path)
    done = foreign.translate(yaml.safe_load(LLAMAFACTORY), source)
    assert done is not None and done.tool == "LLaMA-Factory"
    assert done.config == {
        "name": "sft", "model": "meta-llama/Meta-Llama-3-8B-Instruct", "output_dir": "saves/llama3-8b/lora",
        "data": {"train": ["data/my_qa.json"], "max_rows": 1000}, "template": {"max_length": 2048},
        "lora": {"r": 8, "target_modules": "all-linear", "alpha": 16, "dropout": 0.0},
        "train": {"objective": "sft", "method": "lora", "report_to": [], "batch_size": 1, "grad_accum": 8,
                  "learning_rate": 1e-4, "epochs": 3.0, "lr_scheduler": "cosine", "warmup_ratio": 0.1,
                  "precision": "bf16"}}
    notes = "\n".join(done.notes)
    assert "alpaca_en_demo: a hub dataset (llamafactory/alpaca_en)" in notes and "template: llama3" in notes
    assert "trust_remote_code: tunesmith runs no code" in notes and "do_train: not needed" in notes
    assert "val_size: 0 there" in notes
    cfg = config.parse(done.config, source="<test>", base_dir=tmp_path)
    assert (cfg.lora.alpha, cfg.train.grad_accum, cfg.data.train) == (16, 8, [tmp_path / "data" / "my_qa.json"])
    tooled = foreign.translate({**yaml.safe_load(LLAMAFACTORY), "tool_format": "qwen"}, source)
    said = next(n for n in tooled.notes if n.startswith("tool_format:"))
    assert "qwen" in said and "is not needed: function calls are written by the model's own chat template" in said


def test_an_axolotl_config_becomes_the_same_run(tmp_path: Path):
    """qlora -> LoRA on 4-bit weights, the chat dataset's field and role mappings -> data.columns / data.roles, a
    hub dataset and warmup_steps as notes, rl: dpo with its beta; the result validates."""
    done = foreign.translate(yaml.safe_load(AXOLOTL), tmp_path / "axolotl.yml")
    assert done is not None and done.tool == "Axolotl"
    c = done.config
    assert (c["name"], c["output_dir"], c["model"]) == ("qlora-out", "outputs", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert c["data"] == {"train": ["data/chat.jsonl"], "columns": {"messages": "dialog", "role": "speaker",
                                                                   "content": "text"},
                         "roles": {"client": "user", "counselor": "assistant"}, "eval_fraction": 0.05}
    assert c["lora"] == {"r": 32, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"}
    assert (c["train"]["load_in"], c["train"]["method"], c["train"]["objective"]) == ("4bit", "lora", "dpo")
    assert c["preference"] == {"beta": 0.2} and c["template"] == {"max_length": 4096}
    notes = "\n".join(done.notes)
    assert "mhenrichsen/alpaca_2k_test looks like a hub dataset" in notes and "warmup_steps: 10" in notes
    assert config.parse(c, source="<test>", base_dir=tmp_path).train.objective == "dpo"
    mine = foreign.translate(yaml.safe_load(AXOLOTL), tmp_path / "axolotl.yml", ["mine.jsonl"])  # init --data
    assert mine.config["data"]["train"] == ["mine.jsonl"] and "hub dataset" not in "\n".join(mine.notes)


def test_only_foreign_configs_are_taken_for_foreign():
    assert foreign.which({"name": "x", "data": {"train": ["a"]}, "template": {"max_length": 64}}) is None
    assert foreign.which({"model_name_or_path": "m"}) is None  # one key alone says little
    assert foreign.translate({"anything": 1}, Path("c.yaml")) is None


def test_plan_on_a_foreign_config_says_init_from_and_init_writes_one_that_plans(tmp_path: Path,
                                                                               tiny_model_dir: Path):
    source = _lf_folder(tmp_path)
    with pytest.raises(TunesmithError) as err:
        config.load(source)
    assert err.value.what == "this is a LLaMA-Factory config, not a tunesmith one"
    assert err.value.fix.startswith(f"tunesmith init --from {source} --out llama3_lora_sft-tunesmith.yaml")
    out = tmp_path / "configs" / "mine.yaml"
    res = tunesmith("init", "--from", str(source), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = out.read_text(encoding="utf-8")
    assert text.startswith(f"# tunesmith's config for the run {source} describes (LLaMA-Factory)")
    assert "# note: template: llama3" in text and "- ../data/my_qa.json" in text  # relative to the config
    res = tunesmith("plan", str(out), "--model", str(tiny_model_dir), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "data: 22 train / 8 eval conversations" in res.stdout
    fails(tunesmith("init", "--from", str(out), "--out", str(tmp_path / "again.yaml"), cwd=tmp_path),
          "not a LLaMA-Factory or Axolotl training config")


def test_axolotl_datasets_with_different_field_names_are_said_to_clash(tmp_path: Path):
    raw = {"base_model": "m", "adapter": "lora", "micro_batch_size": 2,
           "datasets": [{"path": "a.jsonl", "type": "chat_template", "field_messages": "dialog"},
                        {"path": "b.jsonl", "type": "chat_template", "field_messages": "turns"}]}
    done = foreign.translate(raw, tmp_path / "ax.yml")
    assert done.config["data"]["columns"] == {"messages": "turns"}
    assert any(n.startswith("datasets[1]: its fields are named otherwise") for n in done.notes)


def test_axolotl_s_grpo_becomes_tunesmith_s_with_its_reward_functions_where_their_files_are(tmp_path: Path):
    raw = yaml.safe_load(AXOLOTL)
    raw.update(rl="grpo", trl={"num_generations": 8, "max_completion_length": 256, "beta": 0.04,
                               "reward_funcs": ["rewards.accuracy"], "use_vllm": True})
    raw.pop("dpo_beta", None)
    done = foreign.translate(raw, tmp_path / "axolotl.yml")
    assert done.config["train"]["objective"] == "grpo"
    assert done.config["grpo"] == {"generations": 8, "max_new_tokens": 256, "beta": 0.04}
    notes = "\n".join(done.notes)
    assert "rewards.accuracy: no module file beside the config or in the cwd; name each as grpo.rewards" in notes
    assert "trl: use_vllm (not among tunesmith's grpo settings)" in notes
    assert config.parse(done.config, source="<test>", base_dir=tmp_path).grpo.generations == 8
    (tmp_path / "rewards.py").write_text("def accuracy(completions, **kw):\n    return [1.0] * len(completions)\n")
    raw["trl"]["reward_weights"] = [0.5]
    done = foreign.translate(raw, tmp_path / "axolotl.yml")
    assert done.config["grpo"]["rewards"] == [f"{tmp_path}/rewards.py:accuracy"]
    assert done.config["grpo"]["reward_weights"] == [0.5]
    assert "trl.reward_funcs: rewards.py:accuracy: your functions, run only by `tunesmith train CONFIG --trust-code`" \
        in "\n".join(done.notes)
    assert config.parse(done.config, source="<test>", base_dir=tmp_path).grpo.rewards == done.config["grpo"]["rewards"]
    raw["trl"]["reward_funcs"] = "rewards.accuracy"  # one function, not in a list: its weight still goes with it
    assert foreign.translate(raw, tmp_path / "axolotl.yml").config["grpo"]["reward_weights"] == [0.5]
