"""Function calling as text (toolcalls.py): the form written for templates without tool support, and its parse."""

from __future__ import annotations

import pytest

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
    # a small model that goes on to imagine the tool's output: only the <tool_call> blocks are its calls
    imagined = ('<tool_call>\n{"name": "weather", "arguments": {"city": "서울", "days": 2}}\n</tool_call>\n\n'
                '<tool_response>\n{"name": "weather", "arguments": {"city": "부산"}}\n</tool_response>')
    assert toolcalls.calls_in(imagined) == want
    assert toolcalls.calls_in("") == ()


@pytest.mark.parametrize("native", [False, True])
def test_a_function_calling_file_trains_end_to_end_and_chat_prompts_as_eval_did(tiny_model_dir, tmp_path,
                                                                                 native: bool):
    """OpenAI function-calling rows (some ending on the call) through the whole job on a tiny model, with SmolLM2's
    template (the text form) and with a template that writes calls itself: the run keeps each row as trained (the
    text form: tools in the system turn, each call in its answer; natively: the calls and tools themselves), eval
    scores 'function calls right' for base and tuned, the report has its row, and chat / serve asked with a file
    row's own messages and tools give eval's prompt for that row."""
    import json

    from tests.conftest import tiny_config
    from tests.fixtures.templates import CHATML_TOOLS
    from tunesmith import chat, pipeline, rundir
    from tunesmith.data import formats

    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    rows = []
    for i in range(12):
        call = {"role": "assistant", "tool_calls": [{"type": "function", "function": {
            "name": "weather", "arguments": json.dumps({"city": f"c{i}"})}}]}
        turns = [{"role": "user", "content": f"Weather in c{i}?"}, call]
        if i % 2:
            turns += [{"role": "tool", "content": f"{i} C"}, {"role": "assistant", "content": f"It is {i} C."}]
        rows.append({"messages": turns, "tools": tools})
    data = tmp_path / "calls.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    cfg = tiny_config(tiny_model_dir, data, tmp_path / "runs", template={
        "max_length": 512, **({"chat_template": CHATML_TOOLS} if native else {})})
    run = rundir.RunDir(pipeline.run(cfg, say=lambda _: None).run_dir)
    kept = run.read_conversations("train") + run.read_conversations("eval")
    assert len(kept) == 12
    for c in kept:  # "Weather in c3?" called weather({"city": "c3"})
        asked = c.messages[0 if native else 1].content
        called = ToolCall("weather", json.dumps({"city": asked.split()[-1].rstrip("?")}))
        if native:
            assert json.loads(c.tools) == tools and c.messages[1].tool_calls == (called,)
        else:
            assert c.messages[0].content.startswith(toolcalls.PREAMBLE[:30]) and c.tools is None
            assert c.messages[2].content == toolcalls.call_text(called)
    summary = run.evaluation().read_summary()
    assert all("tool_call" in m.metrics for m in summary.models)
    assert "| function calls right |" in run.report_md.read_text("utf-8")
    session = chat.open_session(str(run.root), say=lambda _: None)
    read = {c.source: c for c in formats.load(data).conversations}
    # the tools the rows offered are the session's: as the template's tools, or inside the text form's system prompt
    assert (session.tools is not None) == native and (toolcalls.PREAMBLE[:30] in (session.system or "")) != native
    for gen in run.evaluation().read_generations("tuned"):
        row = read[gen.source]
        last = max(i for i, m in enumerate(row.messages) if m.role == "assistant")
        assert chat.prompt_for(session, row.messages[:last], tools=row.tools) == gen.prompt
        assert chat.prompt_for(session, row.messages[:last]) == gen.prompt  # chat: the run's own tools
        assert "weather" not in chat.prompt_for(session, row.messages[:1], offer=False)  # tool_choice none


def test_without_tools_keeps_a_system_prompt_s_own_text():
    c = Conversation((Message("system", "Be brief."), Message("user", "q"), Message("assistant", "a")), "f:1",
                     tools='[{"type": "function", "function": {"name": "w"}}]')
    assert toolcalls.without_tools(toolcalls.as_text(c).messages[0].content) == "Be brief."
    assert toolcalls.without_tools(toolcalls.tools_text(c.tools)) is None
    assert toolcalls.without_tools("Be kind.") == "Be kind."


def test_parse_reads_a_python_dict_call_as_hermes_data_writes_it_and_never_runs_code():
    assert toolcalls.parse("<tool_call>\n{'arguments': {'city': 'Oslo'}, 'name': 'weather'}\n</tool_call>") == \
        ("", (ToolCall("weather", '{"city": "Oslo"}'),))
    for text in ("<tool_call>__import__('os').system('true')</tool_call>", "<tool_call>{'name': 'w', "
                 "'arguments': {'a': {1, 2}}}</tool_call>", "<tool_call>" + "[" * 5000 + "</tool_call>"):
        assert toolcalls.parse(text) == (text, ())


def test_offered_names_reads_the_tools_a_text_form_system_prompt_offers():
    tools = '[{"type": "function", "function": {"name": "w"}}, {"type": "function", "function": {"name": "t"}}]'
    assert toolcalls.offered_names(f"Be brief.\n\n{toolcalls.tools_text(tools)}") == ["w", "t"]
    assert toolcalls.offered_names("Be brief.") == [] and toolcalls.offered_names(None) == []


def test_a_forced_call_s_arguments_are_the_object_the_model_goes_on_with():
    assert toolcalls.forced('{"city": "Seoul"}}\n</tool_call>', "weather") == ToolCall("weather", '{"city": "Seoul"}')
    assert toolcalls.forced('{"city": "Seoul"} and then it rambles', "weather") == \
        ToolCall("weather", '{"city": "Seoul"}')  # never closed: the call was still made
    assert toolcalls.forced('{"city": "Seo', "weather") is None  # cut off: no call
    assert toolcalls.forced("[1, 2]", "weather") is None
