"""Preference data (issue 30, first step): every shape other tools write, detected over all rows, with exact counts,
each skip kind, the warnings that matter for DPO, and `inspect` reporting pairs; SFT refuses such files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import fails, tunesmith, write_json
from tunesmith.data import preference
from tunesmith.records import Message

U = [{"role": "user", "content": "I can't sleep."}]
A = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
SHAPES = {
    "trl": {"prompt": "I can't sleep.", "chosen": "That sounds hard. What keeps you up?", "rejected": "Sleep more."},
    "trl_conversational": {"prompt": U, "chosen": A("That sounds hard. What keeps you up?"), "rejected": A("Sleep more.")},
    "trl_implicit": {"chosen": U + A("That sounds hard. What keeps you up?"), "rejected": U + A("Sleep more.")},
    "alpaca_ranking": {"instruction": "I can't sleep.", "input": "", "chosen": "That sounds hard. What keeps you up?",
                       "rejected": "Sleep more."},
    "sharegpt_ranking": {"conversations": [{"from": "human", "value": "I can't sleep."}],
                         "chosen": {"from": "gpt", "value": "That sounds hard. What keeps you up?"},
                         "rejected": {"from": "gpt", "value": "Sleep more."}},
    "chatml_intel": {"system": "", "question": "I can't sleep.", "chosen": "That sounds hard. What keeps you up?",
                     "rejected": "Sleep more."},
    "chatml_argilla": {"instruction": "I can't sleep.", "chosen_response": "That sounds hard. What keeps you up?",
                       "rejected_response": "Sleep more."},
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_reads_to_the_same_pair(tmp_path: Path, shape: str):
    rows = [SHAPES[shape]] * 3
    res = preference.load(write_json(tmp_path / "p.json", rows))
    assert res.format == shape.removesuffix("_conversational") and len(res.pairs) == 3 and res.skipped == ()
    pair = res.pairs[0]
    assert (pair.prompt, pair.chosen, pair.rejected, pair.source) == (
        (Message("user", "I can't sleep."),), "That sounds hard. What keeps you up?", "Sleep more.", "p.json[0]")
    assert pair.to_json()["chosen"] == [{"role": "assistant", "content": "That sounds hard. What keeps you up?"}]


def test_kto_rows_and_each_skip_kind_are_counted(tmp_path: Path):
    kto = [{"prompt": "hi", "completion": "Hello! How are you?", "label": True},
           {"prompt": "hi", "completion": "Go away.", "label": False}]
    res = preference.load(write_json(tmp_path / "k.json", kto))
    assert res.format == "kto" and [(r.completion, r.good) for r in res.rated] == [("Hello! How are you?", True),
                                                                                  ("Go away.", False)]
    ok = SHAPES["trl"]
    rows = [ok, {**ok, "rejected": ok["chosen"]}, {"prompt": "p", "chosen": "c"}, {**ok, "chosen": "  "},
            {**ok, "chosen": 5}, {**ok, "prompt": ""}, {"other": 1}]
    res = preference.load(write_json(tmp_path / "s.json", rows))
    assert [(s.location, s.kind) for s in res.skipped] == [
        ("s.json[1]", "chosen_is_rejected"), ("s.json[2]", "pair_side_missing"), ("s.json[3]", "empty_turn"),
        ("s.json[4]", "not_text"), ("s.json[5]", "no_prompt"), ("s.json[6]", "wrong_format")]
    assert len(res.pairs) == 1 and res.rows_read == len(rows)


def test_length_bias_and_contradicting_pairs_are_warned_about(tmp_path: Path):
    rows = [{"prompt": f"q{i}", "chosen": f"a long and careful answer {i}", "rejected": "short"} for i in range(10)]
    rows += [{"prompt": "q0", "chosen": "short", "rejected": "a long and careful answer 0"}]
    res = preference.load(write_json(tmp_path / "b.json", rows))
    assert res.warnings[0].startswith("the chosen answer is the longer one in 91% of 11 pairs")
    assert res.warnings[1].startswith("1 pairs contradict an earlier pair") and "b.json[0] and b.json[10]" in res.warnings[1]


def test_inspect_reports_pairs_and_train_refuses_to_imitate_rejected_answers(tmp_path: Path):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(SHAPES["trl"]) + "\n" for _ in range(4)) + '{"prompt": "p", "chosen": "c"}\n')
    out = json.loads(tunesmith("inspect", str(path), "--json").stdout)
    assert (out["kind"], out["format"], out["pairs"], out["rows_read"]) == ("preference", "trl", 4, 5)
    assert out["skipped"] == [{"location": "prefs.jsonl:5", "reason": "no rejected answer", "kind": "pair_side_missing"}]
    fails(tunesmith("plan", "--data", str(path)), "these rows hold preference data: chosen and rejected answers",
          "--set train.objective=dpo")


def test_answers_and_turns_given_as_text_parts_are_read_and_counted(tmp_path: Path):
    text = lambda t: [{"type": "text", "text": t}]  # noqa: E731
    rows = [{"prompt": [{"role": "user", "content": text("Which?")}],
             "chosen": [{"role": "assistant", "content": text("good")}], "rejected": text("bad")},
            {"prompt": "q", "chosen": "a", "rejected": [{"type": "image_url", "image_url": {}}]}]
    res = preference.load(write_json(tmp_path / "t.json", rows))
    [pair] = res.pairs
    assert (pair.prompt, pair.chosen, pair.rejected) == ((Message("user", "Which?"),), "good", "bad")
    assert [(s.location, s.kind) for s in res.skipped] == [("t.json[1]", "not_text")]
    assert "part of type 'image_url'" in res.skipped[0].reason
    assert res.warnings[0].startswith("3 answers or turns give their content as a list of text parts")


def test_fields_a_shape_does_not_read_are_reported_with_a_few_values(tmp_path: Path):
    """UltraFeedback-binarized rows carry their scores, an id and the chosen conversation again: each is named as
    read but not used, in the row's order, as the SFT formats name theirs (was: passed over without a word)."""
    turn = lambda role, text: {"role": role, "content": text}  # noqa: E731
    rows = [{"prompt": f"q{i}", "prompt_id": f"id{i}", "chosen": [turn("user", f"q{i}"), turn("assistant", "good")],
             "rejected": [turn("user", f"q{i}"), turn("assistant", "bad")], "score_chosen": 8.0 + i,
             "score_rejected": 3.0} for i in range(4)]
    read = preference.load(write_json(tmp_path / "uf.json", rows))
    assert read.format == "trl" and len(read.pairs) == 4
    assert read.unused == {"prompt_id": (4, ("id0", "id1", "id2")), "score_chosen": (4, ("8.0", "9.0", "10.0")),
                           "score_rejected": (4, ("3.0",))}


def test_pairs_whose_turns_call_functions_are_skipped_as_such(tmp_path: Path):
    """Preference pairs are read as text turns: a chosen answer that calls a function, or a prompt holding a tool's
    output, is a skip that says so (was: 'no chosen answer', as if the row had none)."""
    call = {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": "{}"}}]}
    ask = [{"role": "user", "content": "weather?"}]
    rows = [{"prompt": ask, "chosen": [call], "rejected": [{"role": "assistant", "content": "No idea."}]},
            {"prompt": [*ask, call, {"role": "tool", "content": "sunny"}],
             "chosen": [{"role": "assistant", "content": "Sunny."}],
             "rejected": [{"role": "assistant", "content": "?"}]},
            {"prompt": "hi", "chosen": "Hello!", "rejected": "Go away."}]
    res = preference.load(write_json(tmp_path / "t.json", rows))
    assert [(s.location, s.kind, s.reason) for s in res.skipped] == [
        ("t.json[0]", "pair_calls", "the chosen answer calls a function or is a tool's output"),
        ("t.json[1]", "pair_calls", "a turn (assistant) calls a function or is a tool's output")]
    assert len(res.pairs) == 1
