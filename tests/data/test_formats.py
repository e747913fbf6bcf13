"""Readers + formats on real-shaped files: detection over all rows, skips counted with their locations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REALDATA, SAMPLE, write_json
from tunesmith.data import formats, readers
from tunesmith.errors import TunesmithError
from tunesmith.records import Message, ToolCall


def test_bundled_samples_read_completely():
    en = formats.load(SAMPLE / "counsel_en.jsonl")
    ko = formats.load(SAMPLE / "counsel_ko.json")
    assert (en.format, en.rows_read, len(en.conversations), en.skipped) == ("messages", 160, 160, ())
    assert (ko.format, ko.rows_read, len(ko.conversations), ko.skipped) == ("alpaca", 64, 64, ())
    first = ko.conversations[0].messages
    assert [m.role for m in first] == ["user", "assistant"] and first[0].content.startswith("내담자의 말에")


def test_bad_rows_are_skipped_with_location_and_counted(tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n'
                    '\n'
                    '{"prompt": "c", "completion": ""}\n'
                    'not json\n'
                    '{"prompt": "e", "completion": 5}\n'
                    '{"other": 1}\n'
                    '"{\\"prompt\\": \\"f\\", \\"completion\\": \\"g\\"}"', encoding="utf-8")
    res = formats.load(path)
    assert res.format == "prompt_completion"
    assert len(res.conversations) == 2  # line 1 and the JSON-encoded string on line 7
    reasons = {s.location: s.reason for s in res.skipped}
    assert set(reasons) == {"mixed.jsonl:3", "mixed.jsonl:4", "mixed.jsonl:5", "mixed.jsonl:6"}
    assert "empty content" in reasons["mixed.jsonl:3"] and "not valid JSON" in reasons["mixed.jsonl:4"]
    assert "int" in reasons["mixed.jsonl:5"] and "prompt_completion" in reasons["mixed.jsonl:6"]
    assert res.rows_read == len(res.conversations) + len(res.skipped)


def test_format_is_detected_over_all_rows_not_the_first(tmp_path: Path):
    rows = [{"text": "odd first row"}] + [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(5)]
    res = formats.load(write_json(tmp_path / "a.json", rows))
    assert res.format == "alpaca" and len(res.conversations) == 5 and res.skipped[0].location == "a.json[0]"


def test_consecutive_same_role_turns_are_skipped(tmp_path: Path):
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                          {"role": "assistant", "content": "c"}]}]
    res = formats.load(write_json(tmp_path / "m.json", rows))
    assert not res.conversations and "alternate" in res.skipped[0].reason


def test_cp949_csv_is_decoded(tmp_path: Path):
    path = tmp_path / "ko.csv"
    path.write_bytes("question,answer\n요즘 잠이 안 와요,많이 지치셨군요\n".encode("cp949"))
    res = formats.load(path)
    assert res.encoding == "cp949 (guessed, 100% of non-ASCII characters are common Korean)"
    assert res.conversations[0].messages[1].content == "많이 지치셨군요"


def test_unknown_shape_is_a_clear_error(tmp_path: Path):
    with pytest.raises(TunesmithError, match="cannot tell the data format"):
        formats.load(write_json(tmp_path / "x.json", [{"foo": 1}]))


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(TunesmithError, match="not found"):
        formats.load(tmp_path / "nope.jsonl")


needs_realdata = pytest.mark.skipif(not REALDATA.exists(), reason="../shared/realdata is not beside this checkout")


@needs_realdata
@pytest.mark.parametrize("rel, options, fmt, conversations, records", [
    ("hanghae-plus-AI__AI-1-tolluset/week6__advance__corpus.json", {}, "turns", 100, 100),
    ("hanghae-plus-AI__AI-1-tolluset/week6__advance__corpus.jsonl", {}, "prompt_completion", 100, 100),
    ("cyoon-kim__hanghae_ai_study/week7__advanced__corpus.json", {}, "alpaca", 140, 140),
    ("dh5473__llm-from-scratch/fine_tuning_llms__sample_conversations.EXTRACTED_FROM_CODE.jsonl", {},
     "messages", 2, 2),
    ("Choi0619__therapist-chatbot-instruction-tuning/corpus.json", {"roles": {"therapist": "assistant"}},
     "flat_turns", 100, 200),  # 100 before dedup; one exchange is duplicated (see test_prepare)
    ("aiqwe__instruction-tuning-with-rag-example/data__seed_words.txt", {}, "text", 270, 270),
    ("cyoon-kim__hanghae_ai_study/week7__advanced__init_outputs.json",
     {"columns": {"prompt": "input", "completion": "expected_output"}}, "prompt_completion", 14, 14),
])
def test_real_user_files(rel: str, options: dict, fmt: str, conversations: int, records: int):
    res = formats.load(REALDATA / rel, **options)
    assert (res.format, len(res.conversations), res.records, res.skipped) == (fmt, conversations, records, ())
    assert res.rows_read == len(res.conversations) + len(res.skipped)


@needs_realdata
@pytest.mark.parametrize("rel, message", [
    ("Choi0619__therapist-chatbot-instruction-tuning/corpus.json", "unknown role name(s) 'therapist'"),
    ("aiqwe__instruction-tuning-with-rag-example/data__query.jsonl", "cannot tell the data format"),
    ("cyoon-kim__hanghae_ai_study/week7__advanced__after_outputs.json", "cannot tell the data format"),
])
def test_real_user_files_that_need_a_hint(rel: str, message: str):
    with pytest.raises(TunesmithError) as err:
        formats.load(REALDATA / rel)
    assert message in str(err.value) and "how to fix" in str(err.value)


def test_bare_string_pairs(tmp_path: Path):
    res = formats.load(write_json(tmp_path / "p.json", [["hi", "hello"], ["a", "b", "c"]]))
    assert res.format == "pairs" and len(res.conversations) == 1 and res.skipped[0].location == "p.json[1]"


def test_sharegpt_roles_are_mapped(tmp_path: Path):
    rows = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}]
    res = formats.load(write_json(tmp_path / "s.json", rows))
    assert res.format == "sharegpt" and res.roles == {"gpt": "assistant", "human": "user"}
    assert [m.role for m in res.conversations[0].messages] == ["user", "assistant"]


def test_flat_turns_need_a_role_map_and_then_pair_up(tmp_path: Path):
    turns = [{"role": "client", "content": "a"}, {"role": "counselor", "content": "b"},
             {"role": "client", "content": "c"}, {"role": "counselor", "content": "d"}]
    path = write_json(tmp_path / "flat.json", turns)
    with pytest.raises(TunesmithError) as err:
        formats.load(path)
    msg = str(err.value)
    assert "'client', 'counselor'" in msg and "client (2x)" in msg and "roles:" in msg
    res = formats.load(path, roles={"client": "user", "counselor": "assistant"})
    assert res.format == "flat_turns" and len(res.conversations) == 2 and res.rows_read == 2
    assert [c.source for c in res.conversations] == ["flat.json[0]", "flat.json[2]"]


def test_numbered_turn_columns_like_ai_hub(tmp_path: Path):
    path = tmp_path / "emotion.csv"
    path.write_bytes(("연령,사람문장1,시스템응답1,사람문장2,시스템응답2,사람문장3,시스템응답3\n"
                      "청년,요즘 너무 우울해,많이 힘드시군요,친구도 없어,외로우시군요,,\n"
                      "노년,잠이 안 와,걱정이 많으시군요,,,,\n").encode("cp949"))
    res = formats.load(path)
    assert (res.format, readers.codec(res.encoding)) == ("numbered_turns", "cp949")
    assert [len(c.messages) for c in res.conversations] == [4, 2]
    assert res.conversations[0].messages[3] == formats.Message("assistant", "외로우시군요")


def test_columns_map_and_system_prompt(tmp_path: Path):
    rows = [{"질문": "안녕", "답변": "반가워요"}]
    res = formats.load(write_json(tmp_path / "k.json", rows), columns={"prompt": "질문", "completion": "답변"},
                       system="친절하게 답하세요.")
    assert [(m.role, m.content) for m in res.conversations[0].messages] == [
        ("system", "친절하게 답하세요."), ("user", "안녕"), ("assistant", "반가워요")]


def test_control_characters_and_missing_assistant_are_skipped(tmp_path: Path):
    rows = [{"messages": [{"role": "user", "content": "a\x07b"}, {"role": "assistant", "content": "c"}]},
            {"messages": [{"role": "user", "content": "only a question"}]}]
    res = formats.load(write_json(tmp_path / "m.json", rows))
    reasons = [s.reason for s in res.skipped]
    assert "U+0007" in reasons[0] and "no assistant turn" in reasons[1]


def test_forced_unknown_format_says_did_you_mean(tmp_path: Path):
    with pytest.raises(TunesmithError, match='did you mean "alpaca"'):
        formats.load(write_json(tmp_path / "a.json", [{"instruction": "a", "output": "b"}]), format="alpacca")


@pytest.mark.parametrize("text", ["", "\n\n  \r\n", "[]"])
def test_a_file_with_no_rows_says_so(tmp_path: Path, text: str):
    path = tmp_path / ("d.json" if text == "[]" else "d.jsonl")
    path.write_text(text, "utf-8")
    for fmt in ("auto", "alpaca"):
        with pytest.raises(TunesmithError) as err:
            formats.load(path, format=fmt)
        assert str(err.value).startswith(f"{path}: the file has no rows\nhow to fix: check this is the file you meant")
        assert "None" not in str(err.value)


def test_a_csv_header_without_rows_has_no_rows(tmp_path: Path):
    (tmp_path / "d.csv").write_text("prompt,completion\n", "utf-8")
    with pytest.raises(TunesmithError, match="d.csv: the file has no rows"):
        formats.load(tmp_path / "d.csv")


def test_a_file_whose_every_row_is_unreadable_lists_the_reasons(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text("{\nnope\n", "utf-8")
    with pytest.raises(TunesmithError) as err:
        formats.load(path)
    assert str(err.value) == (
        f"{path}: none of its 2 rows could be read, so its format cannot be told\n"
        "  - d.jsonl:1: not valid JSON (Expecting property name enclosed in double quotes at column 2)\n"
        "  - d.jsonl:2: not valid JSON (Expecting value at column 1)\n"
        "how to fix: fix these rows, or check this is the file you meant")
    res = formats.load(path, format="alpaca")  # a forced format needs no rows to detect it: counted, not raised
    assert (res.rows_read, len(res.skipped), res.conversations) == (2, 2, ())


def test_every_format_name_has_a_detector_and_converter_in_detection_order():
    from tunesmith import format_names
    from tunesmith.data import formats

    assert tuple(formats.FORMATS) == format_names.ROW_FORMATS  # config validates data.format against the names


def _csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


@pytest.mark.parametrize("header, fmt", [
    (["Q", "A", "label"], "prompt_completion"),  # the Korean chatbot CSV's own header
    (["question", "answer"], "prompt_completion"), (["Question", "Answer"], "prompt_completion"),
    (["질문", "답변"], "prompt_completion"), (["질문", "대답"], "prompt_completion"),
    (["입력", "출력"], "prompt_completion"), (["instruction", "response"], "alpaca"),
    (["Instruction", "Output"], "alpaca"),
])
def test_question_answer_headers_in_any_case_or_language_are_read(tmp_path: Path, header: list[str], fmt: str):
    rows = [[f"요즘 잠을 못 자요 {i}", f"많이 지치셨군요 {i}", "1"][: len(header)] for i in range(12)]
    res = formats.load(_csv(tmp_path / "qa.csv", header, rows, "cp949"))
    assert (res.format, len(res.conversations), res.skipped) == (fmt, 12, ())
    assert [(m.role, m.content) for m in res.conversations[3].messages] == [
        ("user", "요즘 잠을 못 자요 3"), ("assistant", "많이 지치셨군요 3")]
    assert res.unused == ({"label": (12, ("1",))} if "label" in header else {})


def test_dolly_context_joins_the_user_turn_and_other_fields_are_reported_unused(tmp_path: Path):
    rows = [{"instruction": "What does the contract say about rent?", "context": "Clause 4: rent is paid monthly.",
             "response": "It is paid monthly.", "category": "closed_qa"},
            {"instruction": "Name a fruit.", "context": "", "response": "An apple.", "category": "open_qa"}]
    res = formats.load(write_json(tmp_path / "dolly.json", rows))
    assert res.format == "alpaca" and len(res.conversations) == 2
    assert res.conversations[0].messages[0].content == ("What does the contract say about rent?\n\n"
                                                        "Clause 4: rent is paid monthly.")
    assert res.conversations[1].messages[0].content == "Name a fruit."  # an empty context adds nothing
    assert res.unused == {"category": (2, ("closed_qa", "open_qa"))}


def test_a_field_that_could_be_either_asks_instead_of_guessing(tmp_path: Path):
    path = write_json(tmp_path / "amb.json", [{"question": f"q{i}", "answer": "a", "response": "b"} for i in range(3)])
    with pytest.raises(TunesmithError) as err:
        formats.load(path)
    assert "'answer' and 'response' could each be the answer" in str(err.value)
    # the file, whole (a folder may hold several amb.json), and the first row that has these fields
    assert err.value.where == str(path) and "3 of 3 rows have these fields (the first: amb.json[0])" in str(err.value)
    assert err.value.suggest == {"columns": {"prompt": "question", "completion": "answer"}}
    res = formats.load(path, columns={"completion": "response"})  # named: the other field is reported unused
    assert [m.content for m in res.conversations[0].messages] == ["q0", "b"]
    assert res.unused == {"answer": (3, ("a",))}


def test_a_forced_format_says_the_rows_do_not_fit_it_not_other_rows(tmp_path: Path):
    res = formats.load(write_json(tmp_path / "x.json", [{"foo": "a"}, {"prompt": "p", "completion": "c"}]),
                       format="prompt_completion")
    assert [s.reason for s in res.skipped] == ["does not fit the prompt_completion format of --format / data.format"]


def test_an_unknown_shape_names_its_fields_and_a_columns_guess(tmp_path: Path):
    with pytest.raises(TunesmithError) as err:
        formats.load(write_json(tmp_path / "o.json", [{"input": "x", "expected_output": "y", "model_output": "z"}]))
    assert "'input', 'expected_output', 'model_output'" in str(err.value)
    assert err.value.suggest == {"columns": {"prompt": "input", "completion": "expected_output"}}


def test_group_by_names_a_field_each_conversation_carries(tmp_path: Path):
    rows = [["요즘 잠을 못 자요", "많이 지치셨군요", "1"], ["오늘 날씨 좋네요", "산책하기 좋아요", "0"]]
    path = _csv(tmp_path / "qa.csv", ["Q", "A", "label"], rows)
    res = formats.load(path, group_by="label")
    assert [(c.source, c.group) for c in res.conversations] == [("qa.csv:2", "1"), ("qa.csv:3", "0")]
    assert res.unused == {}  # the label is used now
    assert formats.Conversation.from_json(res.conversations[0].to_json()) == res.conversations[0]
    with pytest.raises(TunesmithError) as err:
        formats.load(path, group_by="category")
    assert "no row has that field" in str(err.value) and "Q, A, label" in str(err.value)


def test_content_given_as_text_parts_is_read_as_their_joined_text(tmp_path: Path):
    """OpenAI-style content lists ({"type": "text", "text": ...}; the Responses API's input_text / output_text) are
    read as the parts' texts one after another, as chat templates render them, and counted; a row with an image
    part is skipped with the part named (tunesmith trains text models)."""
    from tunesmith.config import DataConfig
    from tunesmith.data import summary

    text = lambda t, kind="text": {"type": kind, "text": t}  # noqa: E731
    rows = [{"messages": [{"role": "user", "content": [text("Hello, "), text("world")]},
                          {"role": "assistant", "content": [text("Hi!", "output_text")]}]},
            {"messages": [{"role": "user", "content": [text("look"), {"type": "image_url", "image_url": {}}]},
                          {"role": "assistant", "content": "a cat"}]},
            {"messages": [{"role": "user", "content": "plain"}, {"role": "assistant", "content": "text"}]}]
    res = formats.load(write_json(tmp_path / "p.json", rows))
    assert [[m.content for m in c.messages] for c in res.conversations] == [["Hello, world", "Hi!"], ["plain", "text"]]
    assert res.text_parts == 2
    [skip] = res.skipped
    assert skip.kind == "not_text" and "content part 1 is a part of type 'image_url'" in skip.reason
    shown = summary.render(summary.summarize([tmp_path / "p.json"], DataConfig(train=[tmp_path / "p.json"])))
    assert "2 turns give their content as a list of text parts" in shown


def test_trls_conversational_prompt_completion_rows_read_with_the_prompts_answers_as_context(tmp_path: Path):
    """TRL's conversational prompt-completion shape (both sides lists of turns; either may be a string): the
    prompt's turns then the completion's; an assistant turn inside the prompt is context (weight 0), as TRL learns
    the completion only; a context field beside a conversational prompt is a malformed row, not ignored."""
    turn = lambda role, text: {"role": role, "content": text}  # noqa: E731
    rows = [{"prompt": [turn("system", "Be kind."), turn("user", "I can't sleep.")],
             "completion": [turn("assistant", "That sounds hard.")]},
            {"prompt": [turn("user", "Hi"), turn("assistant", "Hello"), turn("user", "Bye")], "completion": "Bye!"},
            {"prompt": "Hi", "completion": [turn("assistant", "Hello!")]},
            {"prompt": [turn("user", "Hi")], "context": "notes", "completion": "Hello"}]
    res = formats.load(write_json(tmp_path / "pc.json", rows))
    assert res.format == "prompt_completion"
    assert [[(m.role, m.content, m.train) for m in c.messages] for c in res.conversations] == [
        [("system", "Be kind.", True), ("user", "I can't sleep.", True), ("assistant", "That sounds hard.", True)],
        [("user", "Hi", True), ("assistant", "Hello", False), ("user", "Bye", True), ("assistant", "Bye!", True)],
        [("user", "Hi", True), ("assistant", "Hello!", True)]]
    [skip] = res.skipped
    assert skip.kind == "malformed" and "context or history field beside a prompt given as turns" in skip.reason


def test_turn_lists_read_with_either_keys_under_either_name(tmp_path: Path):
    """role/content under `conversations` (Unsloth's standardize_sharegpt, Axolotl's settings) and from/value under
    `messages` (LLaMA-Factory's tags) read as the other pair does."""
    rc = [{"conversations": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}]
    fv = [{"messages": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}]
    for rows, fmt in ((rc, "sharegpt"), (fv, "messages")):
        res = formats.load(write_json(tmp_path / f"{fmt}.json", rows))
        assert res.format == fmt and [(m.role, m.content) for m in res.conversations[0].messages] == [
            ("user", "Hi"), ("assistant", "Hello")]


def test_turns_under_other_keys_stop_with_the_columns_that_name_them(tmp_path: Path):
    """A list of turns keyed speaker/text: the error names the field and its keys and suggests data.columns for
    the list and both keys (not a prompt/answer pair); with them (and the role map) the file reads."""
    rows = {"data": [{"dialog": [{"speaker": "user", "text": "Hi"}, {"speaker": "bot", "text": "Hello"}]}]}
    path = write_json(tmp_path / "dialog.json", rows)
    with pytest.raises(TunesmithError) as err:
        formats.load(path)
    assert "its field 'dialog' holds a list of 2 turns keyed 'speaker', 'text'" in str(err.value)
    assert err.value.suggest == {"columns": {"messages": "dialog", "role": "speaker", "content": "text"}}
    res = formats.load(path, columns=err.value.suggest["columns"], roles={"bot": "assistant"})
    assert [(m.role, m.content) for m in res.conversations[0].messages] == [("user", "Hi"), ("assistant", "Hello")]
    assert res.unused == {}
    # AI-Hub's layout: a header beside a body of utterances keyed by participant id
    turn = lambda text, who, n: {"utterance": text, "participantID": who, "turnID": n}  # noqa: E731
    body = {"data": [{"header": {"dialogueInfo": {}}, "body": [turn("안녕", "P01", "T1"), turn("네", "P02", "T2")]}]}
    with pytest.raises(TunesmithError) as err:
        formats.load(write_json(tmp_path / "aihub.json", body))
    assert err.value.suggest == {"columns": {"messages": "body", "role": "participantID", "content": "utterance"}}
    with pytest.raises(TunesmithError, match="cannot tell the data format") as err:  # found by the fuzz test
        formats.load(write_json(tmp_path / "empty_turns.json", [{"role": [{}]}]))
    assert "turns keyed" not in str(err.value)


WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "today's weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def test_openai_function_calling_rows_read_with_their_calls_tools_and_outputs(tmp_path: Path):
    """OpenAI chat files: "developer" (its system role since o1) reads as system; an assistant message's tool_calls
    (content left out or null, arguments as JSON text or an object) become its calls, a tool / function / ipython
    turn the tool's output, the row's `tools` (or older `functions`) its schemas in chat-template form."""
    call = {"role": "assistant", "tool_calls": [{"id": "1", "type": "function",
                                                 "function": {"name": "weather", "arguments": '{"city": "서울"}'}}]}
    rows = [{"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "hello"}]},
            {"messages": [{"role": "user", "content": "weather?"}, {**call, "content": None},
                          {"role": "tool", "tool_call_id": "1", "content": "sunny"},
                          {"role": "assistant", "content": "It is sunny."}], "tools": [WEATHER]},
            {"messages": [{"role": "user", "content": "weather?"}, call], "functions": [WEATHER["function"]]},
            {"messages": [{"role": "user", "content": "2+2?"},
                          {"role": "assistant", "content": "Let me add.", "function_call": {
                              "name": "add", "arguments": {"a": 2, "b": 2}}},
                          {"role": "function", "content": "4"}, {"role": "ipython", "content": "(4)"},
                          {"role": "assistant", "content": "4"}]}]
    res = formats.load(write_json(tmp_path / "t.json", rows))
    plain, weather, asked, added = res.conversations
    assert [(m.role, m.content) for m in plain.messages] == [("system", "Be brief."), ("user", "hi"),
                                                             ("assistant", "hello")]
    assert plain.tools is None and not plain.calls_tools
    assert [(m.role, m.content, m.tool_calls) for m in weather.messages] == [
        ("user", "weather?", ()), ("assistant", "", (ToolCall("weather", '{"city": "서울"}'),)),
        ("tool", "sunny", ()), ("assistant", "It is sunny.", ())]
    assert json.loads(weather.tools) == [WEATHER] == json.loads(asked.tools)
    assert asked.messages[-1].tool_calls == (ToolCall("weather", '{"city": "서울"}'),)
    assert [(m.role, m.content) for m in added.messages] == [("user", "2+2?"), ("assistant", "Let me add."),
                                                             ("tool", "4"), ("tool", "(4)"), ("assistant", "4")]
    assert added.messages[1].tool_calls == (ToolCall("add", '{"a": 2, "b": 2}'),)
    assert res.skipped == () and res.rows_read == 4 and res.unused == {}


def test_malformed_calls_and_misplaced_tool_turns_are_skipped_with_the_turn_named(tmp_path: Path):
    ask = {"role": "user", "content": "weather?"}
    calls = lambda *c: {"role": "assistant", "tool_calls": list(c)}  # noqa: E731
    rows = [{"messages": [ask, calls({"function": {"arguments": "{}"}}), {"role": "tool", "content": "x"},
                          {"role": "assistant", "content": "y"}]},
            {"messages": [ask, calls({"name": "weather", "arguments": "{city: 1}"})]},
            {"messages": [ask, calls({"name": "a", "arguments": "{}"}, {"name": "b", "arguments": "[1]"})]},
            {"messages": [ask, {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "y"}]},
            {"messages": [ask, calls({"name": "weather", "arguments": {}}), {"role": "assistant", "content": "y"}]},
            {"messages": [ask, {"role": "assistant", "content": "y"}], "tools": [{"description": "no name"}]}]
    res = formats.load(write_json(tmp_path / "t.json", rows))
    assert res.conversations == ()
    assert [(s.kind, s.reason) for s in res.skipped] == [
        ("tool_call", 'turn 1: the tool call has no function name (expected {"name": ..., "arguments": {...}})'),
        ("tool_call", "turn 1: the tool call's arguments is not valid JSON (Expecting property name enclosed in "
                      "double quotes at position 1): '{city: 1}'"),
        ("tool_call", "turn 1: tool call 2 (b): arguments are list, expected a JSON object"),
        ("turn_order", "turn 1: a tool's output where no assistant turn called a tool just before"),
        ("turn_order", "turn 2: assistant where the output of the tool just called was expected"),
        ("tool_call", 'the row: tool 1 has no function name (expected {"name": ..., "description": ..., '
                      '"parameters": {...}})')]


def test_llama_factory_sharegpt_function_calling_rows_read(tmp_path: Path):
    """LLaMA-Factory's ShareGPT function calling: a function_call turn holds the call's JSON (or a list of calls),
    an observation the output, the `tools` column the JSON text of its schemas (empty where a row has none)."""
    rows = [{"conversations": [{"from": "human", "value": "weather?"},
                               {"from": "function_call",
                                "value": '{"name": "weather", "arguments": {"city": "Seoul"}}'},
                               {"from": "observation", "value": "sunny"}, {"from": "gpt", "value": "Sunny."}],
             "tools": json.dumps([WEATHER["function"]])},
            {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "tools": ""},
            {"conversations": [{"from": "human", "value": "both?"},
                               {"from": "function_call", "value": json.dumps([{"name": "a", "arguments": {}},
                                                                              {"name": "b", "arguments": {"x": 1}}])},
                               {"from": "observation", "value": "1, 2"}, {"from": "gpt", "value": "Done."}]}]
    res = formats.load(write_json(tmp_path / "f.json", rows))
    weather, hello, both = res.conversations
    assert res.roles == {"function_call": "tool_call", "gpt": "assistant", "human": "user", "observation": "tool"}
    assert weather.messages[1] == Message("assistant", "", tool_calls=(ToolCall("weather", '{"city": "Seoul"}'),))
    assert json.loads(weather.tools) == [WEATHER] and hello.tools is None and not hello.calls_tools
    assert [c.name for c in both.messages[1].tool_calls] == ["a", "b"] and res.skipped == ()


def test_an_app_exports_tool_use_is_still_skipped(tmp_path: Path):
    """A chat app's export holds a tool's use without its call and output as text: the row is skipped as such."""
    with pytest.raises(formats.BadRow, match="a tool the app used") as err:
        formats.validate([("user", "q"), ("tool", None), ("assistant", "a")], "e[0]", None)
    assert err.value.kind == "tool_call"


def test_llama_factory_alpaca_system_and_history_columns_are_read(tmp_path: Path):
    """LLaMA-Factory's Alpaca rows carry `system` and `history` ([[instruction, response], ...]): read as the
    system prompt and the earlier turns (they were reported as unused fields); a history that is not pairs is a
    malformed row."""
    rows = [{"instruction": "And now?", "input": "", "output": "Fine.", "system": "Be kind.",
             "history": [["How are you?", "Tired."], ["Why?", "Work."]]},
            {"instruction": "hi", "output": "hello", "system": "", "history": []},
            {"instruction": "x", "output": "y", "history": ["not a pair"]}]
    res = formats.load(write_json(tmp_path / "h.json", rows))
    assert [[(m.role, m.content) for m in c.messages] for c in res.conversations] == [
        [("system", "Be kind."), ("user", "How are you?"), ("assistant", "Tired."), ("user", "Why?"),
         ("assistant", "Work."), ("user", "And now?"), ("assistant", "Fine.")],
        [("user", "hi"), ("assistant", "hello")]]
    assert res.unused == {}  # the empty system and history of the second row are read as nothing to add
    [skip] = res.skipped
    assert skip.kind == "malformed" and "list of [instruction, response] pairs" in skip.reason


def test_a_conversation_rows_own_system_field_is_its_system_prompt(tmp_path: Path):
    """LLaMA-Factory's ShareGPT rows keep the system prompt beside the turns (`system`): read as the first turn;
    one given both there and as a first system turn is a malformed row, not two system prompts."""
    turns = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
    rows = [{"conversations": turns, "system": "Be brief."}, {"conversations": turns, "system": ""},
            {"conversations": [{"from": "system", "value": "A"}, *turns], "system": "B"}]
    res = formats.load(write_json(tmp_path / "s.json", rows))
    assert [[m.role for m in c.messages] for c in res.conversations] == [["system", "user", "assistant"],
                                                                         ["user", "assistant"]]
    assert res.conversations[0].messages[0].content == "Be brief." and res.unused == {}
    [skip] = res.skipped
    assert skip.kind == "malformed" and "both in its 'system' field and as its first turn" in skip.reason


def test_openai_weight_0_marks_an_assistant_turn_untrained_and_is_counted(tmp_path: Path):
    """OpenAI's per-message "weight" (0 or 1): an assistant turn of weight 0 stays in the conversation, marked
    untrained (template.trained_runs leaves it out of the loss), shown and counted by inspect, and kept through the
    run folder's JSON; a weight on another turn changes nothing; any other weight is a malformed row."""
    from tunesmith.config import DataConfig
    from tunesmith.data import summary
    from tunesmith.records import Conversation

    rows = [{"messages": [{"role": "user", "content": "hi", "weight": 1},
                          {"role": "assistant", "content": "bad", "weight": 0},
                          {"role": "user", "content": "again"}, {"role": "assistant", "content": "good", "weight": 1}]},
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "weight": 0.5}]}]
    path = write_json(tmp_path / "w.json", rows)
    res = formats.load(path)
    [conv] = res.conversations
    assert [(m.role, m.train) for m in conv.messages] == [("user", True), ("assistant", False), ("user", True),
                                                          ("assistant", True)]
    assert Conversation.from_json(conv.to_json()) == conv and conv.to_json()["messages"][1]["weight"] == 0
    [skip] = res.skipped
    assert skip.kind == "malformed" and "weight 0.5; OpenAI's weight is 0 or 1" in skip.reason
    shown = summary.render(summary.summarize([path], DataConfig(train=[path])))
    assert "1 assistant turns have weight 0 (OpenAI's mark, or inside a prompt-completion row's prompt): kept in " \
           "the prompt, not trained on" in shown
    assert "[assistant, weight 0: not trained on] bad" in shown


def test_axolotl_segments_rows_keep_their_text_as_written_and_their_labels(tmp_path: Path):
    """Axolotl's template-free input_output rows: each part's text exactly as written (spaces and newlines are the
    row's own template), learned where label is true; a label that is not true/false, text that is not a string
    or parts that are all blank are skipped with the segment named."""
    good = {"segments": [{"label": False, "text": "<s>Q: what is 2+2?\n"}, {"label": True, "text": " A: 4</s>"},
                         {"label": False, "text": "\n"}], "id": 7}
    rows = [good, {"segments": [{"label": "yes", "text": "x"}]}, {"segments": [{"text": "no label"}]},
            {"segments": [{"label": True, "text": 4}]}, {"segments": [{"label": True, "text": " \n"}]}]
    res = formats.load(write_json(tmp_path / "seg.json", rows))
    assert res.format == "segments" and res.rows_read == 5 and res.evidence == {"segments": 5}
    (conv,) = res.conversations
    assert [(m.role, m.content, m.train) for m in conv.messages] == [
        ("segment", "<s>Q: what is 2+2?\n", False), ("segment", " A: 4</s>", True), ("segment", "\n", False)]
    assert [(s.location, s.kind, s.reason) for s in res.skipped] == [
        ("seg.json[1]", "malformed", "segment 0: label 'yes'; a segment's label is true (learned) or false "
                                     "(context only)"),
        ("seg.json[2]", "malformed", "segment 0: label None; a segment's label is true (learned) or false "
                                     "(context only)"),
        ("seg.json[3]", "not_text", "segment 0: text is int, expected text"),
        ("seg.json[4]", "empty_turn", "every segment is empty")]
    assert res.unused == {"id": (1, ("7",))}


def test_rows_that_are_bare_strings_are_texts(tmp_path: Path):
    """A JSON array of strings, or JSONL lines that are strings, read as .txt lines are: texts to train on as
    they are (was: "cannot tell the data format", and each JSONL line "not valid JSON"); a string that holds a
    JSON object is still that object."""
    listed = formats.load(write_json(tmp_path / "texts.json", ["The first text.", "The second text."]))
    lines = tmp_path / "texts.jsonl"
    lines.write_text('"The first text."\n"The second text."\n"{\\"text\\": \\"Third.\\"}"\n', encoding="utf-8")
    each = formats.load(lines)
    assert (listed.format, each.format) == ("text", "text") and listed.skipped == each.skipped == ()
    assert [c.messages[0].content for c in each.conversations] == ["The first text.", "The second text.", "Third."]
    assert [(m.role, m.content) for c in listed.conversations for m in c.messages] == [
        ("text", "The first text."), ("text", "The second text.")]


def test_the_function_calling_sample_reads_whole():
    """sample_data/tools_en.jsonl (three tools, calls with and without the tool's output, plain chat beside them)."""
    res = formats.load(SAMPLE / "tools_en.jsonl")
    assert (len(res.conversations), res.skipped, res.unused) == (64, (), {})
    assert sum(len(m.tool_calls) for c in res.conversations for m in c.messages) == 59
    assert {json.loads(c.tools)[2]["function"]["name"] for c in res.conversations} == {"set_timer"}


def test_xlam_rows_are_a_question_answered_by_calls(tmp_path: Path):
    """xLAM's function-calling rows: a query, its answers (the calls, as JSON text) and the tools (JSON text of
    schemas without the "function" wrapper)."""
    tools = [{"name": "lyrics", "description": "a song's lyrics", "parameters": {"title": {"type": "str"}}}]
    rows = [{"id": i, "query": f"Lyrics of song {i}?", "tools": json.dumps(tools),
             "answers": json.dumps([{"name": "lyrics", "arguments": {"title": f"song {i}"}}] * (1 + i % 2))}
            for i in range(3)]
    res = formats.load(write_json(tmp_path / "xlam.json", rows))
    assert res.format == "function_calls" and res.skipped == () and list(res.unused) == ["id"]
    first, second, _ = res.conversations
    assert [(m.role, m.content) for m in first.messages] == [("user", "Lyrics of song 0?"), ("assistant", "")]
    assert first.messages[1].tool_calls == (ToolCall("lyrics", '{"title": "song 0"}'),)
    assert len(second.messages[1].tool_calls) == 2
    assert json.loads(first.tools) == [{"type": "function", "function": tools[0]}]


def test_hermes_calls_written_in_the_answer_s_text_are_read_as_calls_where_a_tool_answers(tmp_path: Path):
    """Hermes' function-calling rows write a call into the answer (<tool_call> with JSON or a Python dict) and wrap
    the tool's output in <tool_response>: followed by a tool turn, the call is read as one and the output
    unwrapped; an answer that ends the row keeps its text as written."""
    rows = [{"conversations": [{"from": "human", "value": "AAPL?"},
                               {"from": "gpt", "value": "<tool_call>\n{'arguments': {'symbol': 'AAPL'}, 'name': "
                                                        "'price'}\n</tool_call>\n"},
                               {"from": "tool", "value": "<tool_response>\n{\"price\": 190.1}\n</tool_response>\n"},
                               {"from": "gpt", "value": "Apple is at $190.10."}]},
            {"conversations": [{"from": "human", "value": "MSFT?"},
                               {"from": "gpt", "value": '<tool_call>\n{"name": "price"}\n</tool_call>'}]}]
    asked, ended = formats.load(write_json(tmp_path / "hermes.json", rows)).conversations
    assert asked.messages[1] == Message("assistant", "", tool_calls=(ToolCall("price", '{"symbol": "AAPL"}'),))
    assert asked.messages[2] == Message("tool", '{"price": 190.1}')
    assert ended.messages[1].content == '<tool_call>\n{"name": "price"}\n</tool_call>' and not ended.calls_tools


def test_tools_nested_too_deeply_are_a_skip_not_a_traceback(tmp_path: Path):
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
             "tools": "[" * 100_000}]
    res = formats.load(write_json(tmp_path / "t.json", rows))
    assert [(s.kind, s.reason[:52]) for s in res.skipped] == [
        ("tool_call", "the row: its tools is JSON nested too deeply to read")]
