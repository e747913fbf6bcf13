"""The rewards grpo scores written answers with (rewards.py), on real answers' shapes."""

from __future__ import annotations

import pytest

from tunesmith import rewards, thinking
from tunesmith.config import GrpoConfig
from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, Message, ToolCall

THINKS = thinking.answer_text("Add 2 and 2.", "It is 4.")


def test_answer_is_eval_s_chrf_of_the_answer_after_its_thinking():
    got = rewards.answer(["<think>hmm</think>\n\nIt is 4.", "It is 5.", "<think>never ends"], [THINKS] * 3)
    assert got[0] == 1.0 and 0 < got[1] < 1 and got[2] == 0.0


def test_number_compares_the_last_numbers_and_skips_rows_without_one():
    got = rewards.number(["<think>2 + 2 = 5</think>It is 4.", "It is 1,204.", "4", "anything"],
                         [THINKS, "1204 of them", THINKS, "Hello there."])
    assert got == [1.0, 1.0, 1.0, None]  # the thinking's numbers do not count; 1,204 is 1204


def test_thinks_wants_thinking_that_ends_exactly_where_the_row_thinks():
    got = rewards.thinks(["<think>a</think>4", "4", "<think>cut off", "<think>a</think>hi", "hi"],
                         [THINKS, THINKS, THINKS, "Hello.", "Hello."])
    assert got == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_calls_wants_the_row_s_calls_in_any_form_and_order():
    ref = '<tool_call>\n{"name": "w", "arguments": {"city": "Seoul", "unit": "c"}}\n</tool_call>'
    got = rewards.calls(['<tool_call>{"arguments": {"unit": "c", "city": "Seoul"}, "name": "w"}</tool_call>',
                         '<tool_call>{"name": "w", "arguments": {"city": "Busan"}}</tool_call>', "Sunny.", "Sunny."],
                        [ref, ref, ref, "It is sunny."])
    assert got == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(("set_to", "want"), [("auto", ["answer", "thinks", "calls"]),
                                              (["number", "number", "answer"], ["number", "answer"])])
def test_the_rewards_chosen(set_to, want):
    convs = [Conversation((Message("user", "q"), Message("assistant", "a", reasoning="r")), "f:1"),
             Conversation((Message("user", "q"), Message("assistant", "", tool_calls=(ToolCall("w", "{}"),))),
                          "f:2")]
    assert rewards.chosen(GrpoConfig(rewards=set_to), convs) == want
    assert rewards.chosen(GrpoConfig(), convs[:0]) == ["answer"]


def test_an_empty_list_of_rewards_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        GrpoConfig(rewards=[])


OWN = '''
import math

def short(completions, answer, **kwargs):
    """1 for an answer no longer than the row's own, less as it grows."""
    return [min(1.0, len(a) / max(1, len(c))) for c, a in zip(completions, answer)]

def as_messages(completions, **kwargs):
    return [c[0]["content"] for c in completions]

def one(completions, **kwargs):
    return [1.0]

def words(completions, **kwargs):
    return ["good" for _ in completions]

def endless(completions, **kwargs):
    return [math.inf for _ in completions]
'''


@pytest.fixture
def own_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(OWN, "utf-8")
    return path


def test_your_own_reward_is_named_checked_unrun_and_runs_only_when_trusted(own_file):
    name = f"{own_file}:short"
    assert rewards.label(name) == "my_rewards.py:short" and rewards.label("answer") == "answer"
    rewards.defined(name)  # read with ast: nothing of the file runs
    with pytest.raises(TunesmithError, match="runs it only when asked") as err:
        rewards.functions(["answer", name], trusted=False)
    assert "--trust-code" in err.value.render()
    answer, short = rewards.functions(["answer", name], trusted=True)
    assert answer is rewards.answer and short.__name__ == "my_rewards.py:short"
    assert short(prompts=["p", "p"], completions=["ok", "okokokok"], answer=["ok", "ok"]) == [1.0, 0.25]


@pytest.mark.parametrize(("function", "said"), [
    ("as_messages", "raised TypeError: string indices must be integers.*at my_rewards.py line 9"),
    ("one", "returned 1 rewards for 2 completions"),
    ("words", "reward 0 is 'good', not a number"),
    ("endless", "reward 0 is inf")])
def test_what_your_reward_returns_or_raises_is_an_error_that_says_where(own_file, function, said):
    (func,) = rewards.functions([f"{own_file}:{function}"], trusted=True)
    with pytest.raises(TunesmithError, match=said) as err:
        func(prompts=["p", "p"], completions=["a", "b"])
    assert f"grpo.rewards: my_rewards.py:{function}" in err.value.render()


@pytest.mark.parametrize(("spec", "said"), [
    ("missing.py:short", "cannot read the reward's file"),
    ("my_rewards.py:shrot", "defines no function shrot at its top level.*short"),
    ("bad.py:f", "is not Python")])
def test_a_reward_file_that_is_not_there_or_lacks_the_function_is_said_before_anything_runs(own_file, spec, said):
    (own_file.parent / "bad.py").write_text("def f(:\n", "utf-8")
    with pytest.raises(TunesmithError, match=said):
        rewards.defined(f"{own_file.parent}/{spec}")


def test_a_reward_name_is_a_builtin_or_a_python_file_s_function_made_absolute_by_the_config(tmp_path):
    from tunesmith.config import parse

    with pytest.raises(ValueError, match='unknown reward "anwser".*did you mean "answer"'):
        GrpoConfig(rewards=["anwser"])
    with pytest.raises(ValueError, match="FILE.py:FUNCTION"):
        GrpoConfig(rewards=["my_rewards:short"])
    raw = {"name": "x", "data": {"train": ["a.jsonl"]}, "grpo": {"rewards": ["answer", "r/my_rewards.py:short"]}}
    cfg = parse(raw, source="<t>", base_dir=tmp_path)
    assert cfg.grpo.rewards == ["answer", f"{tmp_path}/r/my_rewards.py:short"]


def test_a_file_of_several_rewards_runs_once_and_one_that_fails_on_import_says_its_line(tmp_path):
    many = tmp_path / "many.py"
    many.write_text("import pathlib\n\nwith open(pathlib.Path(__file__).with_name('runs'), 'a') as f:\n"
                    "    f.write('x')\n\n"
                    "def a(completions, **kw):\n    return [1.0] * len(completions)\n\n"
                    "def b(completions, **kw):\n    return [0.0] * len(completions)\n", "utf-8")
    a, b = rewards.functions([f"{many}:a", f"{many}:b"], trusted=True)
    assert (tmp_path / "runs").read_text() == "x" and a(prompts=["p"], completions=["c"]) == [1.0]
    broken = tmp_path / "broken.py"
    broken.write_text("import math\n\nLIMIT = 1 / 0\n\ndef f(completions, **kw):\n    return []\n", "utf-8")
    with pytest.raises(TunesmithError, match=r"importing broken.py raised ZeroDivisionError.*line 3: LIMIT = 1 / 0"):
        rewards.functions([f"{broken}:f"], trusted=True)


def test_reward_weights_are_one_per_named_reward():
    assert GrpoConfig(rewards=["answer", "number"], reward_weights=[1.0, 0.5]).reward_weights == [1.0, 0.5]
    for bad, said in ((dict(reward_weights=[1.0]), "needs grpo.rewards as a list"),
                      (dict(rewards=["answer"], reward_weights=[1.0, 2.0]), "2 weights for 1 rewards"),
                      (dict(rewards=["answer", "answer"], reward_weights=[1.0, 2.0]), "names a reward twice")):
        with pytest.raises(ValueError, match=said):
            GrpoConfig(**bad)
