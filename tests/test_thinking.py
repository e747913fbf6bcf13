"""Answers that think first (thinking.py): read from every form files give, rendered through the model's template or
the text form, scored on the answer, and given back by chat and serve as reasoning."""

from __future__ import annotations

import json
from pathlib import Path
import random

import pytest

from tunesmith import chat, thinking
from tunesmith.config import TemplateConfig
from tunesmith.data import formats
from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, Generation, Message, ToolCall


@pytest.mark.parametrize(("text", "reasoning", "answer", "finished"), [
    ("<think>\nAdd 2 and 2.\n</think>\n\n4", "Add 2 and 2.", "4", True),
    ("  <think></think>4", "", "4", True),  # a reasoning model told not to think writes an empty block
    ("Add them.\n</think>\n\n4", "Add them.", "4", True),  # DeepSeek-R1's prompt opened the block
    ("<think>Add them and", "Add them and", "", False),  # cut at max_new_tokens inside the thinking
    ("4, as <think> tags go", None, "4, as <think> tags go", True),  # a mark inside an answer is its text
    ("4", None, "4", True),
])
def test_split_takes_the_thinking_off_the_answer(text, reasoning, answer, finished):
    assert thinking.split(text) == thinking.Split(reasoning, answer, finished)


def test_the_text_form_splits_back():
    text = thinking.answer_text("Add 2 and 2.", "4")
    assert text == "<think>\nAdd 2 and 2.\n</think>\n\n4"
    assert thinking.split(text) == thinking.Split("Add 2 and 2.", "4")


def _row(*turns):
    return formats.validate(list(turns), "f:1", None)


@pytest.mark.parametrize("key", thinking.MESSAGE_KEYS)
def test_a_message_s_reasoning_is_read_under_each_key(key):
    turns = [formats._turn(t) for t in ({"role": "user", "content": "2+2?"},
                                        {"role": "assistant", "content": "4", key: "Add them."})]
    conv = _row(*turns)
    assert conv.messages[1] == Message("assistant", "4", reasoning="Add them.")
    assert Conversation.from_json(json.loads(json.dumps(conv.to_json()))) == conv  # the run folder keeps it


def test_a_thinking_flag_is_not_reasoning():
    conv = _row(("user", "2+2?"), formats._turn({"role": "assistant", "content": "4", "thinking": False}))
    assert conv.messages[1] == Message("assistant", "4")


def test_a_think_block_in_the_answer_s_text_is_its_reasoning():
    conv = _row(("user", "2+2?"), ("assistant", "<think>\nAdd them.\n</think>\n\n4"), ("user", "3+3?"),
                ("assistant", "6"))
    assert conv.messages[1] == Message("assistant", "4", reasoning="Add them.")
    assert conv.messages[3] == Message("assistant", "6")
    assert _row(("user", "<think>x</think> y?"), ("assistant", "z")).messages[0].content == "<think>x</think> y?"


def test_a_one_question_row_s_reasoning_field_is_read():
    """medical-o1-reasoning-SFT's columns, as Unsloth's reasoning notebook trains on them."""
    row = {"Question": "What causes a fever?", "Complex_CoT": "Infections raise the set point.", "Response": "Mostly "
           "infections."}
    conv = _row(*formats._one_turn(row))
    assert conv.messages[-1] == Message("assistant", "Mostly infections.", reasoning="Infections raise the set point.")
    assert formats._read_fields("prompt_completion", row) == set(row)  # read, so not reported as an unused field


def test_a_call_s_reasoning_is_kept_beside_its_calls():
    call = {"role": "assistant", "reasoning_content": "I need the weather.", "tool_calls": [
        {"type": "function", "function": {"name": "weather", "arguments": '{"city": "Seoul"}'}}]}
    conv = _row(("user", "Weather?"), formats._turn(call), ("tool", "sunny"), ("assistant", "Sunny."))
    assert conv.messages[1] == Message("assistant", "", True, (ToolCall("weather", '{"city": "Seoul"}'),),
                                       "I need the weather.")


@pytest.mark.parametrize(("turn", "kind", "says"), [
    ({"role": "assistant", "content": "4", "reasoning_content": "a", "thinking": "b"}, "malformed",
     "reasoning twice, differently"),
    ({"role": "assistant", "content": "<think>a</think>4", "reasoning_content": "b"}, "malformed", "given twice"),
    ({"role": "assistant", "content": "<think>never ends"}, "malformed", "never ends"),
    ({"role": "assistant", "content": "<think>all thought</think>"}, "empty_turn", "no answer after its thinking"),
    ({"role": "assistant", "content": "4", "reasoning_content": {"a": 1}}, "not_text", "reasoning is dict"),
    ({"role": "assistant", "content": "4", "reasoning_content": "x\x00"}, "control_char", "U+0000"),
])
def test_reasoning_that_cannot_be_learned_skips_its_row_saying_why(tmp_path, turn, kind, says):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            for i in range(3)]
    rows.append({"messages": [{"role": "user", "content": "2+2?"}, turn]})
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    read = formats.load(path)
    assert len(read.conversations) == 3 and [s.kind for s in read.skipped] == [kind]
    assert read.skipped[0].location.endswith(":4") and says in read.skipped[0].reason


def test_reasoning_on_a_user_turn_skips_the_row():
    with pytest.raises(formats.BadRow, match="only an answer has one"):
        _row(formats._turn({"role": "user", "content": "q", "reasoning_content": "x"}), ("assistant", "a"))


def test_inspect_counts_and_shows_the_thinking(tmp_path):
    from tunesmith.config import DataConfig
    from tunesmith.data import summary

    path = tmp_path / "r1.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{i}+{i}?"}, {
        "role": "assistant", "content": str(2 * i), "reasoning_content": f"Double {i}."}]}) + "\n"
        for i in range(4)), "utf-8")
    text = summary.render(summary.summarize([path], DataConfig(train=[path])))
    assert "reasoning (thinking before the answer) in 4 rows, 4 answers" in text and "[thinking] Double 0." in text


def test_a_preference_answer_keeps_its_reasoning_in_its_text():
    from tunesmith.data import preference

    chosen = {"role": "assistant", "content": "4", "reasoning_content": "Add them."}
    assert preference._text(chosen, "chosen") == "<think>\nAdd them.\n</think>\n\n4"


CONV = Conversation((Message("user", "2+2?"), Message("assistant", "4", reasoning="Add them."),
                     Message("user", "3+3?"), Message("assistant", "6", reasoning="Add again.")), "f:1")


def _learned(tok, ex) -> str:
    return tok.decode([t for t in ex.labels if t != -100])


def test_smollm2_learns_the_thinking_in_the_text_form(smol_tokenizer):
    from tunesmith import template

    r = template.render_dataset(smol_tokenizer, [CONV], TemplateConfig())
    assert any("does not write an answer's reasoning" in n for n in r.notices)
    assert _learned(smol_tokenizer, r.examples[0]) == ("<think>\nAdd them.\n</think>\n\n4<|im_end|>\n"
                                                        "<think>\nAdd again.\n</think>\n\n6<|im_end|>\n")
    prompt, reference = template.prompt_text(smol_tokenizer, r.convs[0])
    assert prompt.endswith("<think>\nAdd them.\n</think>\n\n4<|im_end|>\n<|im_start|>user\n3+3?<|im_end|>\n"
                           "<|im_start|>assistant\n")
    assert reference == "<think>\nAdd again.\n</think>\n\n6" and r.checks.parity_failures == ()


def test_qwen3_s_template_trains_through_trl_s_training_variant(smol_tokenizer):
    """Qwen3's own template drops the thinking of every answer before the last question, so no prefix difference
    can mask a two-question row; TRL's training variant keeps it and marks the answers: each turn learns its
    thinking and its answer, and eval's prompt is the training row's."""
    import copy

    from trl.chat_template_utils import qwen3_chat_template

    from tunesmith import template

    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = qwen3_chat_template
    r = template.render_dataset(tok, [CONV], TemplateConfig())
    assert any("TRL keeps a training variant" in n for n in r.notices) and "{% generation %}" in tok.chat_template
    assert not any("does not write an answer's reasoning" in n for n in r.notices)  # the template writes it
    assert _learned(tok, r.examples[0]) == ("<think>\nAdd them.\n</think>\n\n4<|im_end|>\n"
                                            "<think>\nAdd again.\n</think>\n\n6<|im_end|>\n")
    assert r.checks.parity_failures == () and r.checks.end_of_turn_missing == ()


def test_a_template_that_drops_the_thinking_from_answers_is_an_error(smol_tokenizer):
    """As DeepSeek-R1's own does (configured here, so no training variant is taken in its place)."""
    import copy

    from tunesmith import template

    drops = ("{% for m in messages %}{% if m['role'] == 'assistant' %}A: {{ m['content'].split('</think>')[-1] }}"
             "{{ eos_token }}{% else %}U: {{ m['content'] }}\n{% endif %}{% endfor %}"
             "{% if add_generation_prompt %}A: {% endif %}")
    with pytest.raises(TunesmithError, match="drops that thinking") as err:
        template.render_dataset(copy.deepcopy(smol_tokenizer), [CONV], TemplateConfig(chat_template=drops))
    assert "chatml" in err.value.fix


def test_answers_are_scored_without_their_thinking_and_the_thinking_is_measured():
    from tunesmith import metrics

    ref = thinking.answer_text("Add them.", "4")
    gens = [Generation("f:1", "p", ref, "<think>Add.</think>4"), Generation("f:2", "p", ref, "<think>Adding for",
                                                                               False),
            Generation("f:3", "p", ref, "4")]
    rows = metrics.score_rows(gens).rows
    assert [r["exact_match"] for r in rows] == [1.0, 0.0, 1.0]  # the answer alone is compared
    assert [r["thinks_when_due"] for r in rows] == [1.0, 1.0, 0.0]
    assert rows[0]["thinking_ended"] == 1.0 and rows[1]["thinking_ended"] == 0.0
    assert "thinks_when_due" not in metrics.score_rows([Generation("f:1", "p", "4", "4")]).rows[0]


def test_chat_keeps_an_answer_s_thinking_as_its_reasoning():
    assert chat.answer_message("<think>Add.</think>\n\n4") == Message("assistant", "4", reasoning="Add.")
    assert chat.answer_message("<think>cut") == Message("assistant", "<think>cut")
    called = chat.answer_message('<think>Need it.</think><tool_call>{"name": "w", "arguments": {}}</tool_call>')
    assert called == Message("assistant", "", tool_calls=(ToolCall("w", "{}"),), reasoning="Need it.")


@pytest.mark.parametrize(("text", "inside"), [
    ("<think>\nAdd 2 and 2.\n</think>\n\n4", False), ("Just an answer", False), ("<think>never ends", False),
    ("  <think>a</think>b", False), ("Add.\n</think>\n\n4", True), ("<thin", False)])
def test_a_streamed_answer_thinks_in_reasoning_content_as_the_whole_one_does(text, inside):
    """However the pieces fall, what streams as reasoning and as content is what the whole answer's message says
    (up to the whitespace at their ends)."""
    from tunesmith import serve as serving

    message, _ = serving._message(chat.Reply(text, True, 3, 4), tools=False, inside=inside)
    rng = random.Random(0)
    for _ in range(30):
        watch, out, at = serving._ThinkWatch(inside), [], 0
        while at < len(text):
            n = rng.randint(1, 5)
            out += watch.more(text[at:at + n])
            at += n
        out += watch.rest()
        for key in ("reasoning_content", "content"):
            assert "".join(t for k, t in out if k == key).strip() == (message.get(key) or "").strip(), (key, out)


def test_serve_gives_the_thinking_as_reasoning_content_and_reads_it_back():
    from tunesmith import serve as serving

    message, finish = serving._message(chat.Reply("<think>Add.</think>\n\n4", True, 3, 4), tools=False)
    assert message == {"content": "4", "reasoning_content": "Add."} and finish == "stop"
    req = serving.ChatRequest(model="m", messages=[{"role": "user", "content": "2+2?"}, {
        "role": "assistant", "content": "4", "reasoning_content": "Add."}, {"role": "user", "content": "3+3?"}])
    assert req.messages[1].message() == Message("assistant", "4", reasoning="Add.")


@pytest.mark.parametrize("qwen3", [False, True], ids=["text-form", "qwen3-template"])
def test_a_thinking_file_trains_end_to_end_and_chat_prompts_as_eval_did(smol_tokenizer, tiny_model_dir, tmp_path,
                                                                       qwen3: bool):
    """DeepSeek-style rows (reasoning_content) through the whole job on a tiny model, with SmolLM2's template (the
    text form) and with Qwen3's (trained through TRL's variant of it): the run keeps the reasoning as trained, eval
    measures the thinking and scores the answers, the report has its rows, and chat's prompt for a file row is
    eval's."""
    import copy

    from tests.conftest import tiny_config, tiny_llama
    from tunesmith import pipeline, rundir

    model = tiny_model_dir
    if qwen3:
        from trl.chat_template_utils import qwen3_chat_template

        tok = copy.deepcopy(smol_tokenizer)
        tok.chat_template = qwen3_chat_template
        model = tiny_llama(tok, tmp_path / "qwen3_tiny")
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}, {
        "role": "assistant", "content": str(2 * i), "reasoning_content": f"{i} and {i} make {2 * i}."}]}
        for i in range(12)]
    data = tmp_path / "r1.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    run = rundir.RunDir(pipeline.run(tiny_config(model, data, tmp_path / "runs"), say=lambda _: None).run_dir)
    kept = run.read_conversations("train") + run.read_conversations("eval")
    # kept as trained: the reasoning beside the answer (Qwen3's template writes it), or written before it (SmolLM2's)
    assert len(kept) == 12 and all((c.messages[-1].reasoning if qwen3 else
                                    thinking.split(c.messages[-1].content).reasoning) for c in kept)
    summary = run.evaluation().read_summary()
    assert all("thinks_when_due" in m.metrics for m in summary.models)
    assert "| thinks before answering when due |" in run.report_md.read_text("utf-8")
    session = chat.open_session(str(run.root), say=lambda _: None)
    assert ("{% generation %}" in session.tokenizer.chat_template) == qwen3  # TRL's variant, saved with the adapter
    read = {c.source: c for c in formats.load(data).conversations}
    for gen in run.evaluation().read_generations("tuned"):
        assert chat.prompt_for(session, read[gen.source].messages[:-1]) == gen.prompt
        assert thinking.split(gen.reference).reasoning  # the reference keeps its thinking; metrics take it off
    # where the plan raised eval's new-token limit for thinking answers, chat generates as the run's eval did
    import dataclasses

    run.write_plan(dataclasses.replace(run.read_plan(), eval_max_new_tokens=33))
    assert chat.open_session(str(run.root), say=lambda _: None).settings.max_new_tokens == 33


def test_the_plan_makes_room_for_thinking_answers_or_warns_where_the_limit_was_set():
    from tests.conftest import tiny_raw
    from tunesmith import config, plan
    from tunesmith.records import Example, PreparedData

    thinks = [Conversation((Message("user", "q"), Message("assistant", "a", reasoning="r")), f"f:{i}")
              for i in range(10)]
    examples = [Example(tuple(range(300)), (-100,) * 100 + tuple(range(100, 100 + n)), f"f:{i}")
                for i, n in enumerate([150] * 9 + [400])]
    raw = tiny_raw(Path("/m"), Path("/d.jsonl"))
    raw["eval"].pop("max_new_tokens")  # not set: the plan raises it
    cfg = config.parse(raw, source="<test>")
    data = PreparedData((), tuple(thinks), (), ())
    roomy, [line] = plan.thinking_room(cfg, data, examples)
    assert roomy.eval.max_new_tokens == 192 and "raised from 96 to 192" in line
    assert "150 tokens with their thinking in 9 rows of 10" in line
    set_low = config.parse(tiny_raw(Path("/m"), Path("/d.jsonl")), source="<test>")  # max_new_tokens: 8, as set
    kept, [warning] = plan.thinking_room(set_low, data, examples)
    assert kept is set_low and warning.startswith("warning:") and warning.endswith("eval.max_new_tokens=192")
    assert plan.thinking_room(roomy, data, examples) == (roomy, [])
    plain = PreparedData((), tuple(c.__class__((c.messages[0], Message("assistant", "a")), c.source) for c in thinks),
                         (), ())
    assert plan.thinking_room(cfg, plain, examples) == (cfg, [])


def test_two_reasoning_fields_skip_the_row_until_columns_names_one(tmp_path):
    rows = [{"question": f"q{i}", "thinking": f"t{i}", "cot": f"c{i}", "answer": f"a{i}"} for i in range(3)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    read = formats.load(path)
    assert not read.conversations and {s.kind for s in read.skipped} == {"malformed"}
    assert "could each be the answer's reasoning" in read.skipped[0].reason
    named = formats.load(path, columns={"reasoning": "cot"})
    assert [c.messages[-1].reasoning for c in named.conversations] == ["c0", "c1", "c2"]
    assert set(named.unused) == {"thinking"}  # said in inspect, not dropped unseen


def test_a_metric_no_row_has_for_both_models_has_no_difference():
    """The base never thinks, so 'thinking ended' is n/a for each of its rows: no +0.0 [+0.0, +0.0] is made up."""
    from tunesmith import metrics

    nan = float("nan")
    diffs = metrics.compare([{"thinking_ended": nan, "chrf": 1.0}] * 3, [{"thinking_ended": 1.0, "chrf": 2.0}] * 3)
    assert "thinking_ended" not in diffs and diffs["chrf"].rows == 3


def test_the_judge_is_shown_the_answers_without_their_thinking():
    from tunesmith import judge

    ref = thinking.answer_text("Add them.", "4")
    a, b = (Generation("f:1", "2+2?", ref, text) for text in ("<think>2 and 2</think>\n\n4", "<think>hmm"))
    user = judge._messages(a, a, b)[1]["content"]
    assert "[Reference answer]\n4\n" in user and "[Answer A]\n4\n" in user and user.endswith("[Answer B]\n")
    assert "<think>" not in user and "Add them" not in user


def test_streamed_thinking_matches_the_whole_message_for_any_text_and_any_pieces():
    """Hypothesis over texts made of the marks' pieces, cut anywhere, with and without a prompt that opened the
    block (found: a lone </think> was thinking in the whole message but text in the stream)."""
    from hypothesis import given, settings, strategies as st

    from tunesmith import serve as serving

    bits = st.sampled_from(["<think>", "</think>", "<th", "ink>", "</", "\n", " ", "a", "4", "ü"])

    @settings(max_examples=300, deadline=None)
    @given(text=st.lists(bits, max_size=12).map("".join), cuts=st.lists(st.integers(1, 4), min_size=12,
                                                                         max_size=12), inside=st.booleans())
    def check(text, cuts, inside):
        message, _ = serving._message(chat.Reply(text, True, 1, 1), tools=False, inside=inside)
        watch, out, at = serving._ThinkWatch(inside), [], 0
        for n in cuts * 4:
            out += watch.more(text[at:at + n])
            at += n
        out += watch.rest()
        for key in ("reasoning_content", "content"):
            assert "".join(t for k, t in out if k == key).strip() == (message.get(key) or "").strip()

    check()


@pytest.mark.parametrize(("pieces", "opened", "want"), [
    (["<think>cut off mid-thou", "ght"], False, "[<think>cut off mid-thought]"),  # flush ends the style
    (["so 4.\n</think>\n\n", "4"], True, "[so 4.\n</think>]\n\n4"),  # DeepSeek-R1: the prompt opened the block
    (["a <", "b> c"], False, "a <b> c"),  # a held '<' that is no tag goes out as it was
    (["It is 4."], False, "It is 4.")])
def test_a_streamed_answer_s_thinking_is_shaded_however_it_is_split(pieces, opened, want):
    shade = thinking.Shade("[", "]", opened=opened)
    assert "".join(shade(p) for p in pieces) + shade.flush() == want
