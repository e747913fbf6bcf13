"""Function calling as text (toolcalls.py): the form written for templates without tool support, and its parse."""

from __future__ import annotations

from tunesmith import toolcalls
from tunesmith.records import Conversation, Message, ToolCall

CALL = ToolCall("weather", '{"city": "서울"}')


def test_as_text_puts_tools_in_the_system_turn_after_the_rows_own():
    c = Conversation((Message("system", "Be brief."), Message("user", "q"),
                      Message("assistant", "Checking.", False, (CALL,)), Message("tool", "sunny"),
                      Message("assistant", "Sunny.")), "f:1", tools='[{"type": "function", "function": {"name": "w"}}]')
    out = toolcalls.as_text(c)
    assert out.tools is None and out.source == "f:1" and not out.calls_tools
    assert out.messages[0].content.startswith("Be brief.\n\nYou can call functions") and \
        '<tools>\n{"type": "function", "function": {"name": "w"}}\n</tools>' in out.messages[0].content
    assert out.messages[2] == Message("assistant", 'Checking.\n<tool_call>\n{"name": "weather", "arguments": '
                                                   '{"city": "서울"}}\n</tool_call>', False)
    assert out.messages[3] == Message("user", "<tool_response>\nsunny\n</tool_response>")


def test_a_conversation_without_function_calling_is_unchanged():
    c = Conversation((Message("user", "q"), Message("assistant", "a")), "f:1")
    assert toolcalls.as_text(c) is c


def test_parse_takes_the_calls_out_of_a_generation_and_keeps_what_is_not_a_call():
    text = ('Let me look.\n<tool_call>\n{"name": "weather", "arguments": {"city": "서울"}}\n</tool_call>\n'
            '<tool_call>{"name": "time", "arguments": {}}</tool_call>')
    assert toolcalls.parse(text) == ("Let me look.", (CALL, ToolCall("time", "{}")))
    broken = "<tool_call>{name: weather}</tool_call>"
    assert toolcalls.parse(broken) == (broken, ())
    assert toolcalls.parse('<tool_call>{"name": "w", "arguments": [1]}</tool_call>')[1] == ()
    assert toolcalls.parse("plain answer") == ("plain answer", ())


def test_what_as_text_writes_parses_back():
    c = Conversation((Message("user", "q"), Message("assistant", "", tool_calls=(CALL, ToolCall("t", "{}")))), "f:1")
    assert toolcalls.parse(toolcalls.as_text(c).messages[1].content) == ("", (CALL, ToolCall("t", "{}")))


def test_calls_in_reads_calls_in_any_templates_form():
    """Qwen's tags, Llama 3's bare JSON with "parameters", OpenAI's wrapper, a template's own tags: the same call."""
    want = (("weather", '{"city": "서울", "days": 2}'),)
    for text in ('<tool_call>\n{"name": "weather", "arguments": {"days": 2, "city": "서울"}}\n</tool_call>',
                 '{"name": "weather", "parameters": {"city": "서울", "days": 2}}',
                 'Sure. {"type": "function", "function": {"name": "weather", "arguments": {"city": "서울", "days": 2}}}',
                 '<call>{"name":"weather","arguments":{"city":"서울","days":2}}</call>'):
        assert toolcalls.calls_in(text) == want, text
    assert toolcalls.calls_in('{"name": "weather"} and {"city": 1} {broken') == ()
    assert toolcalls.calls_in("") == ()
