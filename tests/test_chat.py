"""tunesmith chat on a real tiny run: the answer equals eval's, the prompt is the training render, commands work."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import fails, tunesmith
from tunesmith import chat, config, rundir, template
from tunesmith.errors import TunesmithError
from tunesmith.chat import Reply
from tunesmith.records import Conversation, Message


def _single_turn(run) -> Conversation:  # noqa: ANN001
    convs = rundir.RunDir(run).read_conversations("eval")
    return next(c for c in convs if [m.role for m in c.messages if m.role != "system"] == ["user", "assistant"])


def test_chat_prompt_answers_a_row_as_eval_generated_it(tiny_run, tmp_path):
    conv = _single_turn(tiny_run)
    row = tmp_path / "one.jsonl"
    row.write_text(json.dumps({"messages": [{"role": m.role, "content": m.content} for m in conv.messages]}) + "\n")
    # Sampled at temperature 1 (the tiny model's greedy answer is blank lines): the same seed, the same draws.
    res = tunesmith("eval", str(tiny_run), "--data", str(row), "--models", "tuned", "--embedder", "none",
                    "--temperature", "1.0")
    assert res.returncode == 0, res.stderr
    gen = rundir.RunDir(tiny_run).evaluation(row.stem).read_generations("tuned")[0]
    system = [m.content for m in conv.messages if m.role == "system"]
    args = ["--system", system[0]] if system else []
    res = tunesmith("chat", str(tiny_run), "--prompt", conv.messages[-2].content, "--temperature", "1.0", *args)
    assert res.returncode == 0, res.stderr
    answer = res.stdout.removesuffix("\n").removesuffix(" [cut at max_new_tokens]")
    assert len(gen.generation.split()) > 3 and answer.strip() == gen.generation
    assert res.stdout.endswith("\n") and ("[cut at" in res.stdout) == (not gen.stopped)


def test_the_session_prompt_is_the_training_render_of_the_conversation_so_far(smol_dir):
    session = chat.open_session(str(smol_dir), system="Be brief.", options={"max_new_tokens": 24},
                                say=lambda _: None)
    pieces: list[str] = []
    first = chat.respond(session, "How do I sleep better?", pieces.append)
    assert isinstance(first, Reply) and "".join(pieces).strip() == first.text
    assert first.prompt_tokens > 0 and 0 < first.new_tokens <= session.settings.max_new_tokens
    conv = Conversation((Message("system", "Be brief."), Message("user", "How do I sleep better?"),
                         Message("assistant", first.text), Message("user", "And then?"), Message("assistant", "")),
                        "x")
    assert session.prompt("And then?") == template.prompt_text(session.tokenizer, conv)[0]
    session.history.clear()
    assert first.text not in session.prompt("And then?")


def test_stop_strings_cut_the_answer_before_them(smol_dir):
    session = chat.open_session(str(smol_dir), options={"max_new_tokens": 24}, say=lambda _: None)
    prompt = session.prompt("Tell me about your week.")
    full = list(chat.stream(session.model, session.tokenizer, prompt, session.settings))[-1]
    words = full.text.split()
    assert len(words) >= 3, full.text
    stop = words[len(words) // 2]
    items = list(chat.stream(session.model, session.tokenizer, prompt, session.settings, stop=[stop]))
    cut = items[-1]
    assert cut.text == full.text[: full.text.index(stop)].strip() and cut.stopped
    assert "".join(i for i in items[:-1]).strip() == cut.text


def test_the_interactive_loop_keeps_commands_apart_from_the_conversation(smol_dir):
    res = tunesmith("chat", str(smol_dir), "--max-new-tokens", "8",
                    input="/system Answer in one word.\nWhat colour is the sky?\n/reset\n/bogus\n\nhi again\n"
                          "/exit\nnever read\n")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    marks = ["(system prompt set; conversation cleared)\n", "(conversation cleared)\n", "unknown command /bogus"]
    at = [out.index(m) for m in marks]
    assert at == sorted(at) and at[0] == 0 and "never read" not in out
    first_answer = out[len(marks[0]):at[1]]
    assert first_answer.strip() and first_answer.endswith("\n")  # one answer between the two commands
    assert out[out.index("/exit") + len("/exit"):].strip()  # the answer to "hi again" after the help line
    assert "chatting with" in res.stderr and "/reset" in res.stderr


def test_chat_options_and_targets_are_checked_before_loading(tmp_path):
    fails(tunesmith("chat", "default", "--temperature", "-1", "--prompt", "x"), "--temperature")
    fails(tunesmith("chat", str(tmp_path / "nowhere"), "--prompt", "x"), "nowhere")


def test_a_plain_model_spec_chats_with_default_settings(tiny_model_dir):
    session = chat.open_session(str(tiny_model_dir), options={"max_new_tokens": 4}, say=lambda _: None)
    assert session.settings == config.EvalConfig(max_new_tokens=4) and session.system is None
    reply = chat.respond(session, "hi")
    assert reply.new_tokens > 0 and session.history[-1] == Message("assistant", reply.text)


def test_text_that_is_not_utf8_is_an_error_not_a_traceback(tiny_model_dir):
    res = subprocess.run([sys.executable, "-m", "tunesmith", "chat", str(tiny_model_dir), "--prompt", b"abc\xff"],
                         capture_output=True, text=True, timeout=300)
    fails(res, "--prompt: the text is not UTF-8: byte 0xff at character 4", "iconv")
    res = subprocess.run([sys.executable, "-m", "tunesmith", "chat", str(tiny_model_dir), "--max-new-tokens", "4"],
                         input=b"abc\xff\nhi\n/exit\n", capture_output=True, timeout=300)
    out = res.stdout.decode()
    assert res.returncode == 0 and b"Traceback" not in res.stderr, res.stderr
    assert "error: chat: the text is not UTF-8: byte 0xff at character 4" in out
    assert out.index("not UTF-8") < len(out) - 1  # the loop went on: "hi" was answered after it


def test_input_past_the_context_is_refused_by_how_much_and_old_turns_make_room(tiny_model_dir):
    session = chat.open_session(str(tiny_model_dir), options={"max_new_tokens": 16}, say=lambda _: None)
    with pytest.raises(TunesmithError, match=r"over the model's 512-token context \(about [\d,]+ of its 4,000 "
                                             r"characters too many\)"):
        chat.respond(session, "word " * 800)
    assert session.history == []
    session.history = [Message("user", "old question " * 75), Message("assistant", "old answer " * 75)] * 3
    notes: list[str] = []
    reply = chat.respond(session, "a new question " * 10, note=notes.append)
    assert notes == ["(the 4 earliest turns no longer fit the model's context and were left out)"]
    assert len(session.history) == 4 and session.history[-1] == Message("assistant", reply.text)
    assert reply.prompt_tokens + 16 <= 512


SEGMENTS = "".join(json.dumps({"segments": [{"label": False, "text": f"Q: what is on mat {i}?\nA:"},
                                             {"label": True, "text": f" the cat {i}.<|im_end|>"}]}) + "\n"
                   for i in range(16))


@pytest.mark.parametrize("name", ["notes.txt", "segments.jsonl"])
def test_a_run_trained_on_plain_text_trains_and_chat_and_compare_continue_the_text_typed(tiny_model_dir, tmp_path,
                                                                                          name: str):
    """A .txt file (was: a StopIteration traceback from the split) and Axolotl's segments rows train end to end,
    and the run's chat prompt is the text as typed, as eval prompted its rows (no chat template, no system
    prompt, no history)."""
    from tests.conftest import tiny_config
    from tunesmith import pipeline

    data = tmp_path / name
    data.write_text("".join(f"Note {i}: the cat sat on mat number {i}.\n" for i in range(16)) if name.endswith(
        ".txt") else SEGMENTS, "utf-8")
    run = pipeline.run(tiny_config(tiny_model_dir, data, tmp_path / "runs"), say=lambda _: None).run_dir
    gen = rundir.RunDir(run).evaluation().read_generations("tuned")[0]
    said: list[str] = []
    session = chat.open_session(str(run), say=said.append)
    assert session.raw and session.system is None and said[0].startswith("this run trained on text without")
    assert chat.prompt_for(session, [Message("user", gen.prompt)]) == gen.prompt  # eval's prompt: the row's start
    reply = chat.respond(session, gen.prompt)
    assert reply.text == gen.generation and session.history == []
    from tunesmith import compare  # compare prompts such a run the same way

    side = compare.compare([str(run)], [Conversation((Message("user", gen.prompt),), "p.txt:1")],
                           config.load(rundir.RunDir(run).config).eval, say=lambda _: None)
    assert side.templates == ("text as typed (trained without a chat template)",)
    assert side.outputs == ((gen.generation,),)


def test_tool_gives_the_output_of_the_function_the_model_called(tiny_model_dir):
    """/tool TEXT answers the call the model's last answer made: the output goes into the prompt as training wrote
    tool outputs (the text form, for SmolLM2's template), and the answer joins the history after it; with no call
    to answer, /tool says so and generates nothing."""
    from tunesmith.records import ToolCall

    session = chat.open_session(str(tiny_model_dir), options={"max_new_tokens": 4}, say=lambda _: None)
    out: list[str] = []
    lines = iter(["/tool sunny"])
    assert chat.repl(session, lambda: next(lines, None), out.append) == 0
    assert out == ["(no function call to answer: /tool TEXT gives the output of the function the model just "
                   "called)\n"]
    called = Message("assistant", "", tool_calls=(ToolCall("weather", '{"city": "Oslo"}'),))
    session.history = [Message("user", "Weather in Oslo?"), called]
    prompt, _ = chat.fitted_prompt(session, "sunny", "tool")
    assert prompt.endswith('<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n'
                           "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
                           "<|im_start|>assistant\n")
    lines = iter(["/tool sunny"])
    assert chat.repl(session, lambda: next(lines, None), out.append) == 1
    assert session.history[2] == Message("tool", "sunny") and session.history[3].role == "assistant"


def test_an_answer_s_call_joins_the_history_as_a_call(tiny_model_dir, monkeypatch):
    session = chat.open_session(str(tiny_model_dir), options={"max_new_tokens": 4}, say=lambda _: None)
    said = '<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    monkeypatch.setattr(chat, "stream", lambda *_, **__: iter([said, chat.Reply(said, True, 5, 4)]))
    chat.respond(session, "Weather in Oslo?")
    assert session.history[-1].tool_calls[0].name == "weather" and session.history[-1].content == ""


def test_an_answer_s_thinking_streams_shaded_on_a_terminal_and_joins_the_history_as_reasoning(tiny_model_dir,
                                                                                              monkeypatch):
    """The pieces as a model streams them, a tag split across two: the terminal sees the thinking wrapped in the
    dim style and the answer plain; the history keeps the thinking as the answer's reasoning."""
    session = chat.open_session(str(tiny_model_dir), options={"max_new_tokens": 4}, say=lambda _: None)
    session.shade = ("<dim>", "</dim>")
    pieces = ["<th", "ink>\n2 and 2", " make 4.\n</thi", "nk>\n\nIt is 4."]
    monkeypatch.setattr(chat, "stream", lambda *_, **__: iter([*pieces, chat.Reply("".join(pieces), True, 5, 9)]))
    out: list[str] = []
    chat.respond(session, "Add 2 and 2.", out.append)
    assert "".join(out) == "<dim><think>\n2 and 2 make 4.\n</think></dim>\n\nIt is 4."
    assert session.history[-1] == Message("assistant", "It is 4.", reasoning="2 and 2 make 4.")
