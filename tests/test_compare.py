"""`tunesmith compare`: real models, a model with and one without a chat template, side by side and as CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import tunesmith
from tunesmith import compare
from tunesmith.errors import TunesmithError


@pytest.fixture
def base_model_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model without a chat template: what a base (non-instruct) checkpoint looks like."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "tiny-base"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    tok.save_pretrained(out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    return out


def test_prompts_from_text_and_jsonl(tmp_path: Path):
    txt = tmp_path / "p.txt"
    txt.write_text("How do I rest?\n\n요즘 잠을 못 자요.\n", encoding="utf-8")
    convs, skipped = compare.read_prompts(txt)
    assert [c.messages[0].content for c in convs] == ["How do I rest?", "요즘 잠을 못 자요."] and not skipped
    jl = tmp_path / "p.jsonl"
    jl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"instruction": "Summarise", "input": "a long text"},
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "an answer that is not part of the prompt"}]},
        {"answer": "no prompt here"}]), encoding="utf-8")
    convs, skipped = compare.read_prompts(jl)
    assert convs[0].messages[0].content == "Summarise\n\na long text"
    assert [m.role for m in convs[1].messages] == ["system", "user", "assistant"]
    assert convs[1].messages[-1].content == ""  # the file's answer was dropped: generation starts there
    assert len(skipped) == 1 and skipped[0].location.endswith(":3")
    empty = tmp_path / "e.jsonl"
    empty.write_text('{"answer": "x"}\n')
    with pytest.raises(TunesmithError, match="no prompts found"):
        compare.read_prompts(empty)


def test_compare_runs_each_model_through_its_own_template(tiny_model_dir: Path, base_model_dir: Path,
                                                           tmp_path: Path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("How do I rest?\n요즘 잠을 못 자요.\n", encoding="utf-8")
    out = tmp_path / "side.csv"
    res = tunesmith("compare", "--models", f"{base_model_dir},{tiny_model_dir}", "--prompts", str(prompts),
                    "--csv", str(out), "--max-new-tokens", "6", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "plain fallback (no chat template)" in res.stderr and "own chat template" in res.stderr
    with out.open(encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["source", "prompt", str(base_model_dir), f"{base_model_dir} stopped", str(tiny_model_dir),
                       f"{tiny_model_dir} stopped"]
    assert [r[1] for r in rows[1:]] == ["How do I rest?", "요즘 잠을 못 자요."]
    assert all(r[3] in ("True", "False") and r[5] in ("True", "False") for r in rows[1:])
    assert "wrote" in res.stdout and "2 prompts, 0 skipped" in res.stdout


def test_a_run_folder_compares_with_its_tuned_weights(tiny_run: Path, tiny_model_dir: Path, tmp_path: Path):
    # `tunesmith compare --models default,runs/demo` (its own Examples line) refused a run folder: "a folder without
    # config.json, so not a model folder"
    from tunesmith.config import EvalConfig
    from tunesmith.records import Conversation, Message

    prompts = [Conversation((Message("user", "How do I rest?"), Message("assistant", "")), "p:1")]
    result = compare.compare([str(tiny_run), str(tiny_model_dir)], prompts, EvalConfig(max_new_tokens=6),
                             say=lambda _: None)
    assert result.models == (str(tiny_run), str(tiny_model_dir)) and len(result.outputs[0]) == 2
    assert result.templates[0] == "own chat template"  # the adapter folder's saved template


def test_function_calling_prompts_keep_their_tools_calls_and_outputs(tmp_path):
    """A messages row read as the data stage reads it: the tools offered, an earlier call and its output stay in the
    prompt (a tool-trained model is asked as its eval asked it); a tool output no call asked for is a skip."""
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    call = {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "weather",
                                                                                  "arguments": '{"city": "Seoul"}'}}]}
    rows = [{"messages": [{"role": "user", "content": "Weather?"}, call], "tools": tools},
            {"messages": [{"role": "user", "content": "Weather?"}, call, {"role": "tool", "content": "sunny"},
                          {"role": "assistant", "content": "Sunny."}], "tools": tools},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    convs, skipped = compare.read_prompts(path)
    asked, answered = convs
    assert [m.role for m in asked.messages] == ["user", "assistant"] and asked.messages[-1].content == ""
    assert json.loads(asked.tools) == tools and not asked.messages[-1].tool_calls  # the call was the answer
    assert [m.role for m in answered.messages] == ["user", "assistant", "tool", "assistant"]
    assert answered.messages[1].tool_calls[0].name == "weather" and answered.messages[-1].content == ""
    assert [(s.location, s.kind) for s in skipped] == [("p.jsonl:3", "turn_order")]
