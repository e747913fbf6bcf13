"""The rewards grpo scores written answers with (rewards.py), on real answers' shapes."""

from __future__ import annotations

import pytest

from tunesmith import rewards, thinking
from tunesmith.config import GrpoConfig
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
