"""`tunesmith inspect` through the CLI and the Python API."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import tunesmith
from tests import conftest
from tests.conftest import REALDATA, SAMPLE, write_json

CHOI = REALDATA / "Choi0619__therapist-chatbot-instruction-tuning" / "corpus.json"


def inspect(*args: str) -> subprocess.CompletedProcess:
    return conftest.tunesmith("inspect", *args)  # the CLI; `tunesmith` here is the package


def test_inspect_json_on_bundled_data_adds_up():
    res = inspect(str(SAMPLE / "counsel_en.jsonl"), str(SAMPLE / "counsel_ko.json"), "--json")
    assert res.returncode == 0, res.stderr
    j = json.loads(res.stdout)
    assert j["format"] == ["alpaca", "messages"] and j["encoding"] == "utf-8"
    assert (j["conversations"], j["assistant_turns"], j["skipped"], j["duplicates"]) == (224, 224, [], 0)
    assert j["rows_read"] == j["conversations"] + len(j["skipped"]) + j["duplicates"]


@pytest.mark.skipif(not REALDATA.exists(), reason="../shared/realdata is not beside this checkout")
def test_inspect_human_view_of_the_therapist_corpus():
    res = inspect(str(CHOI), "--role", "therapist=assistant")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "format flat_turns (200 rows fit flat_turns)" in out and "therapist -> assistant" in out
    assert "99 usable conversations" in out and "1 duplicates removed" in out
    assert "1 row duplicate of an earlier row: corpus.json[58]" in out and out.count("\n--- corpus.json[") == 3
    missing_map = inspect(str(CHOI))
    assert missing_map.returncode == 2 and "therapist: assistant" in missing_map.stderr


def test_inspect_with_a_model_measures_tokens(smol_dir: Path):
    res = inspect(str(SAMPLE / "counsel_ko.json"), "--model", str(smol_dir), "--json", "--max-length", "300")
    tokens = json.loads(res.stdout)["tokens"]
    assert tokens["min"] > 100 and tokens["per_char"] > 1  # Korean costs SmolLM2 more than a token a character
    assert 0 < tokens["over_max_length"] < 64


def test_inspect_with_a_system_rejecting_template_merges_like_preview(smol_dir: Path, smol_tokenizer,
                                                                      tmp_path: Path):
    import shutil

    from tests.fixtures.templates import GEMMA

    tok_dir = tmp_path / "gemma-like"  # SmolLM2's tokenizer and config, a Gemma-style template (no system role)
    smol_tokenizer.save_pretrained(tok_dir)
    shutil.copy(smol_dir / "config.json", tok_dir / "config.json")
    cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": GEMMA}))
    (tok_dir / "chat_template.jinja").unlink(missing_ok=True)
    data = write_json(tmp_path / "s.json", [{"messages": [{"role": "system", "content": "Be brief."},
                                                          {"role": "user", "content": "Hi"},
                                                          {"role": "assistant", "content": "Hello"}]}])
    merge = "notice: the chat template rejects a system turn; its text is merged into the first user turn"
    res = inspect(str(data), "--model", str(tok_dir))
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert merge in res.stdout
    shown = conftest.tunesmith("preview", str(data), "--model", str(tok_dir))
    assert merge in shown.stdout


def test_nothing_usable_exits_2_and_strict_fails_on_any_bad_row(tmp_path: Path):
    bad = write_json(tmp_path / "bad.json", [{"prompt": "a", "completion": ""}])
    res = inspect(str(bad))
    assert res.returncode == 2 and "0 usable conversations" in res.stdout and "empty content" in res.stdout
    mixed = write_json(tmp_path / "mixed.json", [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": 1}])
    assert inspect(str(mixed)).returncode == 0
    strict = inspect(str(mixed), "--strict")
    assert strict.returncode == 2 and "mixed.json[1]" in strict.stderr and "Traceback" not in strict.stderr


def test_python_api_reads_a_folder(tmp_path: Path):
    write_json(tmp_path / "a.json", [{"question": "q", "answer": "a"}])
    write_json(tmp_path / "b.json", [["hi", "hello"]])
    results = tunesmith.read_conversations(tmp_path)
    assert [(r.path.name, r.format, len(r.conversations)) for r in results] == [
        ("a.json", "prompt_completion", 1), ("b.json", "pairs", 1)]


def test_inspect_counts_ragged_csv_rows_and_shows_the_encoding_guess(tmp_path: Path):
    (tmp_path / "ko.csv").write_bytes("question,answer\n요즘 잠이 안 와요,많이 지치셨군요\n잠,a,b\n".encode("cp949"))
    res = inspect(str(tmp_path / "ko.csv"))
    assert res.returncode == 0, res.stderr
    assert "encoding cp949 (guessed, 100% of non-ASCII characters are common Korean)" in res.stdout
    assert "2 records -> 1 usable, 1 skipped" in res.stdout and "(read 2 = 1 + 1 + 0)" in res.stdout
    assert "1 row a different number of fields than the header: ko.csv:3" in res.stdout
    assert "e.g. ko.csv:3: row has 3 fields, the header has 2; quote the field that contains a comma" in res.stdout


def test_inspect_reports_contradicting_answers_and_unused_fields(tmp_path: Path):
    rows = [{"instruction": "김유정역은 어디에 있습니까?", "response": "강촌", "label": "travel"},
            {"instruction": "김유정역은  어디에 있습니까?", "response": "을지로", "label": "travel"},  # spaces differ
            *({"instruction": f"질문 {i}", "response": f"답 {i}", "label": "misc"} for i in range(6))]
    path = write_json(tmp_path / "kr.json", rows)
    out = json.loads(inspect(str(path), "--json").stdout)
    assert out["contradictions"] == [{"prompt": "김유정역은 어디에 있습니까?", "sources": ["kr.json[0]", "kr.json[1]"],
                                      "answers": ["강촌", "을지로"]}]
    assert out["files"][0]["unused_fields"] == {"label": {"rows": 8, "values": ["travel", "misc"]}}
    assert out["conversations"] == 8  # reported, not removed: which answer is right is the user's call
    text = inspect(str(path)).stdout
    assert "1 prompt is answered differently in different rows (2 rows" in text and "'강촌' / '을지로'" in text
    assert "field 'label' is read but not used (8 rows; e.g. 'travel', 'misc')" in text


def test_a_fix_names_the_flags_of_the_verb_that_printed_it(tmp_path: Path):
    path = write_json(tmp_path / "amb.json", [{"question": f"q{i}", "answer": "a", "response": "b"} for i in range(9)])
    res = inspect(str(path))
    assert res.returncode == 2 and "could each be the answer" in res.stderr
    assert "on this command line: tunesmith inspect ... --column prompt=question --column completion=answer" in res.stderr
    plan = conftest.tunesmith("plan", "--data", str(path))
    assert plan.returncode == 2
    assert "on this command line: tunesmith plan ... --set 'data.columns={prompt: question, completion: answer}'" \
        in plan.stderr
    fixed = inspect(str(path), "--column", "prompt=question", "--column", "completion=response")
    assert fixed.returncode == 0 and "9 usable conversations" in fixed.stdout


def test_inspect_counts_function_calling_and_shows_each_call():
    from tunesmith.config import DataConfig
    from tunesmith.data.summary import render, summarize, to_json

    path = SAMPLE / "tools_en.jsonl"
    s = summarize([path], DataConfig(train=[path]))
    assert to_json(s)["function_calling"] == {"rows": 64, "offering_tools": 64, "calls": 59, "tool_outputs": 27}
    text = render(s)
    assert "function calling in 64 rows: 59 calls, 27 tool outputs (context, not trained on), tools offered in " \
           "64 rows" in text
    assert "  [tools] get_weather, convert_currency, set_timer" in text and '  [call] get_weather({"city": ' in text
