"""Exact label masks (literal token lists) on the embedded SmolLM2 tokenizer and small family templates,
and one test per masking mistake real users made."""

from __future__ import annotations

import copy

import pytest

from tests.fixtures.templates import CHATML_LAST_MARKED, CHATML_MARKED, CHATML_TOOLS, GEMMA, LLAMA3, REWRITES_HISTORY
from tunesmith.config import TemplateConfig
from tunesmith.data.formats import _alpaca, _prompt_completion, validate
from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, Example, Message, Skip, ToolCall
from tunesmith.template import (IGNORE, Unusable, check, encode, end_of_turn_ids, merge_system, prompt_text, render_dataset,
                                setup_tokenizer, supports_system, supports_tools)

X = IGNORE
CFG = TemplateConfig()
# SmolLM2's template injects this system turn when a conversation has none: 21 tokens, never supervised.
DEFAULT_SYSTEM = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
                  19712, 8182, 2, 198]


def conv(*turns: tuple[str, str]) -> Conversation:
    return Conversation(tuple(Message(r, c) for r, c in turns), "test.jsonl:1")


def with_template(tok, template: str | None, specials: tuple[str, ...] = ()):
    tok = copy.deepcopy(tok)
    tok.chat_template = template
    if specials:
        tok.add_special_tokens({"additional_special_tokens": list(specials)})
    setup_tokenizer(tok, CFG)
    return tok


def test_multi_turn_with_system_turn(smol_tokenizer):
    c = conv(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Bye"), ("assistant", "Bye!"))
    ex = encode(smol_tokenizer, c, CFG)
    assert list(ex.input_ids) == [1, 9690, 198, 6077, 5453, 30, 2, 198, 1, 4093, 198, 26843, 2, 198, 1, 520, 9531,
                                  198, 19556, 30, 2, 198, 1, 4093, 198, 3087, 85, 2, 198, 1, 520, 9531, 198,
                                  3087, 85, 17, 2, 198]
    assert list(ex.labels) == [X] * 18 + [19556, 30, 2, 198] + [X] * 11 + [3087, 85, 17, 2, 198]


def test_alpaca_row_supervises_the_output_only(smol_tokenizer):
    c = validate(_alpaca({"instruction": "Name a colour.", "input": "", "output": "Blue."}), "a.json[0]", None)
    ex = encode(smol_tokenizer, c, CFG)
    assert list(ex.input_ids) == DEFAULT_SYSTEM + [1, 4093, 198, 5820, 253, 7302, 30, 2, 198,
                                                   1, 520, 9531, 198, 23390, 30, 2, 198]
    assert list(ex.labels) == [X] * 34 + [23390, 30, 2, 198]


def test_prompt_completion_row_supervises_the_completion_only(smol_tokenizer):
    c = validate(_prompt_completion({"prompt": "2+2=", "completion": "4"}), "p.jsonl:1", None)
    ex = encode(smol_tokenizer, c, CFG)
    assert list(ex.input_ids) == DEFAULT_SYSTEM + [1, 4093, 198, 34, 27, 34, 45, 2, 198, 1, 520, 9531, 198, 36, 2, 198]
    assert list(ex.labels) == [X] * 34 + [36, 2, 198]


def test_model_without_chat_template_gets_the_plain_fallback(smol_tokenizer):
    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = None
    notices = setup_tokenizer(tok, CFG)
    assert "no chat template" in notices[0] and "### User:" in tok.chat_template
    ex = encode(tok, conv(("user", "Hi"), ("assistant", "Hello.")), CFG)
    assert tok.decode(list(ex.input_ids)) == "### User:\nHi\n\n### Assistant:\nHello.<|im_end|>\n\n"
    assert list(ex.input_ids) == [3757, 11122, 42, 198, 26843, 198, 198, 3757, 20108, 42, 198, 19556, 30, 2, 1116]
    assert list(ex.labels) == [X] * 11 + [19556, 30, 2, 1116]


def test_gemma_style_template_without_system_role(smol_tokenizer):
    tok = with_template(smol_tokenizer, GEMMA, ("<start_of_turn>", "<end_of_turn>"))
    assert not supports_system(tok) and supports_system(smol_tokenizer)
    c = merge_system(conv(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello.")))
    assert [m.role for m in c.messages] == ["user", "assistant"] and c.messages[0].content == "Be brief.\n\nHi"
    ex = encode(tok, c, CFG)
    assert list(ex.input_ids) == [1, 49152, 4093, 198, 6077, 5453, 30, 198, 198, 26843, 49153, 198,
                                  49152, 3980, 198, 19556, 30, 49153, 198]
    assert list(ex.labels) == [X] * 15 + [19556, 30, 49153, 198]
    assert 49153 in end_of_turn_ids(tok)


def test_llama3_style_headers_supervise_eot(smol_tokenizer):
    tok = with_template(smol_tokenizer, LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))
    ex = encode(tok, conv(("user", "Hi"), ("assistant", "Hello.")), CFG)
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert [t for t, lab in zip(ex.input_ids, ex.labels) if lab != X] == [19556, 30, eot]


def test_generation_markers_decide_the_mask(smol_tokenizer):
    tok = with_template(smol_tokenizer, CHATML_MARKED)
    ex = encode(tok, conv(("user", "Hi"), ("assistant", "Hello.")), CFG)
    assert list(ex.input_ids) == [1, 4093, 198, 26843, 2, 198, 1, 520, 9531, 198, 19556, 30, 2, 198]
    assert list(ex.labels) == [X] * 10 + [19556, 30, 2, X]


def test_history_rewriting_template_is_refused_naming_the_turn(smol_tokenizer):
    tok = with_template(smol_tokenizer, REWRITES_HISTORY)
    c = conv(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))
    with pytest.raises(TunesmithError, match="turn 1 as a continuation"):
        encode(tok, c, CFG)


def test_supervise_last_and_all(smol_tokenizer):
    c = conv(("user", "Hi"), ("assistant", "Hello."), ("user", "Bye"), ("assistant", "Bye!"))
    last = encode(smol_tokenizer, c, TemplateConfig(supervise="last"))
    everything = encode(smol_tokenizer, c, TemplateConfig(supervise="all"))
    assert [t for t, lab in zip(last.input_ids, last.labels) if lab != X] == [3087, 85, 17, 2, 198]
    assert everything.labels == everything.input_ids


@pytest.mark.parametrize("markers", [False, True], ids=["prefix difference", "generation markers"])
def test_an_assistant_turn_of_weight_0_stays_in_the_prompt_unlearned(smol_tokenizer, markers):
    """OpenAI's "weight": 0 (Message.train False): that turn's tokens carry -100, the others are learned as
    before; supervise last learns the last turn only if it is trained; a conversation with no trained turn has
    nothing to learn; supervise all learns everything."""
    tok = with_template(smol_tokenizer, CHATML_MARKED) if markers else smol_tokenizer
    turns = (Message("user", "Hi"), Message("assistant", "Hello.", train=False), Message("user", "Bye"),
             Message("assistant", "Bye!"))
    learned = lambda ex: [t for t, lab in zip(ex.input_ids, ex.labels) if lab != X]  # noqa: E731
    plain = encode(tok, Conversation(tuple(Message(m.role, m.content) for m in turns), "t:1"), CFG)
    weighted = encode(tok, Conversation(turns, "t:1"), CFG)
    assert weighted.input_ids == plain.input_ids  # the same text: the turn stays in the prompt
    assert learned(plain)[:3] == [19556, 30, 2] and learned(weighted) == learned(plain)[len(learned(plain)) // 2:]
    assert learned(encode(tok, Conversation(turns, "t:1"), TemplateConfig(supervise="last"))) == learned(weighted)
    first_only = Conversation((*turns[:3], Message("assistant", "Bye!", train=False)), "t:1")
    with pytest.raises(Unusable, match="no supervised tokens"):
        encode(tok, first_only, TemplateConfig(supervise="last"))
    everything = encode(tok, Conversation(turns, "t:1"), TemplateConfig(supervise="all"))
    assert everything.labels == everything.input_ids


def test_a_weight_the_templates_marks_cannot_place_skips_the_row(smol_tokenizer):
    """A template marking the last answer only: two turns, one span. Without weights that span is learned (the
    template's choice); with a turn of weight 0 the row is skipped as weight_unmatched, whichever turn has it."""
    tok = with_template(smol_tokenizer, CHATML_LAST_MARKED)
    turns = [Message("user", "Hi"), Message("assistant", "Hello."), Message("user", "Bye"),
             Message("assistant", "Bye!")]
    plain = encode(tok, Conversation(tuple(turns), "t:1"), CFG)
    assert [t for t, lab in zip(plain.input_ids, plain.labels) if lab != X] == [3087, 85, 17, 2]
    for i in (1, 3):
        weighted = list(turns)
        weighted[i] = Message("assistant", turns[i].content, train=False)
        with pytest.raises(Unusable, match="2 assistant turns, 1 of weight 0, but the chat template marks 1") as e:
            encode(tok, Conversation(tuple(weighted), "t:1"), CFG)
        assert e.value.kind == "weight_unmatched" and e.value.tokens == len(plain.input_ids)


def test_end_of_turn_token_is_supervised_even_though_pad_is_eos(smol_tokenizer):
    assert smol_tokenizer.pad_token_id == smol_tokenizer.eos_token_id  # the trap this test guards
    ex = encode(smol_tokenizer, conv(("user", "Hi"), ("assistant", "Hello.")), CFG)
    eos_positions = [i for i, t in enumerate(ex.input_ids) if t == smol_tokenizer.eos_token_id]
    assert ex.labels[eos_positions[-1]] == smol_tokenizer.eos_token_id


def test_pad_tokens_are_never_supervised(smol_tokenizer):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    short = encode(smol_tokenizer, conv(("user", "Hi"), ("assistant", "Hello.")), CFG)
    long = encode(smol_tokenizer, conv(("user", "Hi there, how are you?"), ("assistant", "Fine, thanks.")), CFG)
    collate = DataCollatorForLanguageModeling(pad_token_id=smol_tokenizer.pad_token_id)
    batch = collate([{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in (short, long)])
    pad = batch["attention_mask"] == 0
    assert pad.sum() > 0 and (batch["labels"][pad] == X).all()
    assert batch["labels"][0, : len(short.labels)].tolist() == list(short.labels)  # the eos inside stays supervised


def test_prompt_and_answer_are_tokenised_together(smol_tokenizer):
    ex = encode(smol_tokenizer, conv(("user", "Hi"), ("assistant", "Hello.")), CFG)
    whole = smol_tokenizer.apply_chat_template([{"role": "user", "content": "Hi"},
                                                {"role": "assistant", "content": "Hello."}], tokenize=False)
    assert list(ex.input_ids) == smol_tokenizer(whole, add_special_tokens=False)["input_ids"]


def test_no_empty_assistant_header_trails_a_finished_conversation(smol_tokenizer):
    ex = encode(smol_tokenizer, conv(("user", "Hi"), ("assistant", "Hello.")), CFG)
    assert list(ex.input_ids[-4:]) == [19556, 30, 2, 198]  # ends on the answer, not on '<|im_start|>assistant\n'
    prompt, reference = prompt_text(smol_tokenizer, conv(("user", "Hi"), ("assistant", "Hello.")))
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") and reference == "Hello."


def test_over_long_row_is_dropped_by_default_and_counted(smol_tokenizer):
    long_input = "This paragraph is long. " * 100
    with pytest.raises(TunesmithError) as err:
        encode(smol_tokenizer, conv(("user", long_input), ("assistant", "A question?")), TemplateConfig(max_length=64))
    assert "test.jsonl:1" in str(err.value) and "longer than template.max_length=64: dropped" in str(err.value)


def test_truncate_cuts_the_input_text_never_the_answer(smol_tokenizer):
    cfg = TemplateConfig(max_length=64, overflow="truncate")
    ex = encode(smol_tokenizer, conv(("user", "This paragraph is long. " * 100), ("assistant", "A question?")), cfg)
    assert ex.truncated and len(ex.input_ids) <= 64
    assert smol_tokenizer.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab != X]) == "A question?<|im_end|>\n"


def test_truncate_drops_the_oldest_exchange_first(smol_tokenizer):
    cfg = TemplateConfig(max_length=44, overflow="truncate")
    c = conv(("user", "old question " * 5), ("assistant", "old answer"), ("user", "new"), ("assistant", "fresh"))
    ex = encode(smol_tokenizer, c, cfg)
    text = smol_tokenizer.decode(list(ex.input_ids))
    assert "old" not in text and text.endswith("new<|im_end|>\n<|im_start|>assistant\nfresh<|im_end|>\n")


def test_answer_longer_than_max_length_is_an_error_even_with_truncate(smol_tokenizer):
    with pytest.raises(TunesmithError, match="the answer alone is longer"):
        encode(smol_tokenizer, conv(("user", "Hi"), ("assistant", "word " * 100)),
               TemplateConfig(max_length=48, overflow="truncate"))


def test_checks_report_shares_eot_and_parity(smol_tokenizer):
    convs = (conv(("user", "Hi"), ("assistant", "Hello.")),)
    good = [encode(smol_tokenizer, convs[0], CFG)]
    result = check(smol_tokenizer, convs, good, [Skip("z.json[3]", "no supervised tokens in this conversation")])
    assert result.zero_supervised == ("z.json[3]",) and not result.end_of_turn_missing and not result.parity_failures
    assert 0 < result.share_min == result.share_median < 0.2
    ids = list(good[0].input_ids)
    ids[5] = 9999  # a prompt token that differs from the inference render
    no_eot = [Example(tuple(ids), tuple(x if x != 2 else X for x in good[0].labels), "test.jsonl:1")]
    bad = check(smol_tokenizer, convs, no_eot, [])
    assert bad.end_of_turn_missing == ("test.jsonl:1",) and bad.parity_failures == ("test.jsonl:1",)


@pytest.mark.parametrize(("template", "want"), [
    ("{% for m in messages %}{{ m.content }", "TemplateSyntaxError (line 1): unexpected '}'"),
    ("{{ messages[5].content }}", "UndefinedError: list object has no element 5")])
def test_a_broken_configured_chat_template_is_an_error_naming_the_key(smol_tokenizer, template: str, want: str):
    from tunesmith.template import fit

    tok = copy.deepcopy(smol_tokenizer)
    with pytest.raises(TunesmithError) as err:
        fit(tok, [conv(("user", "hi"), ("assistant", "hello"))], TemplateConfig(chat_template=template))
    assert str(err.value).startswith("template.chat_template: the chat template cannot render a user/assistant "
                                     f"exchange: {want}")
    assert "set it to auto, plain or chatml" in str(err.value)


def rows(*lengths: int) -> list[Conversation]:
    """Conversations whose user turn repeats a word `n` times (one SmolLM2 token per repeat)."""
    return [Conversation((Message("user", "go " * n), Message("assistant", "Done.")), f"f.jsonl:{i}")
            for i, n in enumerate(lengths, start=1)]


def test_render_dataset_auto_keeps_every_row_up_to_the_context(smol_tokenizer):
    r = render_dataset(smol_tokenizer, rows(10, 200, 90), TemplateConfig(), context=8192)
    assert len(r.examples) == 3 and not r.skipped
    longest = max(len(e.input_ids) for e in r.examples)
    assert r.max_length == -(-longest // 64) * 64 and r.max_length - 64 < longest <= r.max_length
    capped = render_dataset(smol_tokenizer, rows(10, 200, 90), TemplateConfig(), context=128)
    assert [s.kind for s in capped.skipped] == ["too_long"] and capped.max_length == 128  # only the 200-token row
    assert capped.skipped[0].location == "f.jsonl:2" and capped.skipped[0].tokens == longest


def test_render_dataset_merges_a_rejected_system_turn_for_every_caller(smol_tokenizer):
    tok = with_template(smol_tokenizer, GEMMA, ("<start_of_turn>", "<end_of_turn>"))
    c = Conversation((Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello")), "s:1")
    r = render_dataset(tok, [c], TemplateConfig())
    assert r.notices == ("the chat template rejects a system turn; its text is merged into the first user turn",)
    assert r.convs[0].messages[0] == Message("user", "Be brief.\n\nHi") and len(r.examples) == 1


def test_an_explicit_max_length_is_used_as_given(smol_tokenizer):
    r = render_dataset(smol_tokenizer, rows(10, 200), TemplateConfig(max_length=64), context=8192)
    assert r.max_length == 64 and [s.location for s in r.skipped] == ["f.jsonl:2"]


# --- segments rows (Axolotl's template-free input_output) ------------------------------------------------------

def _segments(*parts: tuple[bool, str]) -> Conversation:
    return validate([("segment", text, label) for label, text in parts], "seg.jsonl:1", None)


SEGMENT_ROW = ((False, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), (True, "Hello.<|im_end|>"),
               (False, "\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"), (True, "Bye!<|im_end|>"))


@pytest.mark.parametrize(("supervise", "learned"), [("assistant", (1, 3)), ("last", (3,)), ("all", (0, 1, 2, 3))])
def test_segments_are_tokenised_as_written_and_learned_where_labelled(smol_tokenizer, supervise: str,
                                                                     learned: tuple[int, ...]):
    """Each part tokenised alone with no special tokens added (the row writes its own), joined; a part's tokens are
    labels exactly where its label is true (supervise: last keeps the last of them, all every part)."""
    parts = [smol_tokenizer(text, add_special_tokens=False)["input_ids"] for _, text in SEGMENT_ROW]
    ex = encode(smol_tokenizer, _segments(*SEGMENT_ROW), TemplateConfig(supervise=supervise))
    assert list(ex.input_ids) == [t for p in parts for t in p]
    assert list(ex.labels) == [t for i, p in enumerate(parts) for t in (p if i in learned else [X] * len(p))]
    assert parts[1][-1] == smol_tokenizer.convert_tokens_to_ids("<|im_end|>")  # markup in the text is the token


def test_a_segments_row_prompts_with_the_parts_before_its_last_learned_one(smol_tokenizer):
    prompt, reference = prompt_text(smol_tokenizer, _segments(*SEGMENT_ROW))
    assert prompt == "".join(text for _, text in SEGMENT_ROW[:3]) and reference == "Bye!"
    ex = encode(smol_tokenizer, _segments(*SEGMENT_ROW), CFG)  # what generation feeds is what training saw
    assert check(smol_tokenizer, (_segments(*SEGMENT_ROW),), [ex], []).parity_failures == ()


def test_a_segments_row_longer_than_max_length_is_dropped_not_cut(smol_tokenizer):
    with pytest.raises(Unusable) as err:
        encode(smol_tokenizer, _segments(*SEGMENT_ROW), TemplateConfig(max_length=16, overflow="truncate"))
    assert err.value.kind == "too_long"


# --- function calling: the model's own template where it writes calls, else toolcalls' text form

TOOLS = '[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]'


def tool_conv(tools: str | None = TOOLS) -> Conversation:
    call = ToolCall("weather", '{"city": "서울"}')
    return Conversation((Message("user", "Weather?"), Message("assistant", "", tool_calls=(call,)),
                         Message("tool", "sunny"), Message("tool", "3 C"), Message("assistant", "Sunny, 3 C.")),
                        "t.jsonl:1", tools=tools)


def learned(tok, ex: Example) -> list[str]:
    """The supervised runs of an example, decoded."""
    runs, run = [], []
    for t, lab in zip([*ex.input_ids, None], [*ex.labels, X]):
        if lab != X:
            run.append(t)
        elif run:
            runs, run = [*runs, tok.decode(run)], []
    return runs


def test_a_template_without_tool_support_gets_calls_and_outputs_as_text(smol_tokenizer):
    """SmolLM2's template drops a call: the tools go into the system turn, the call is the answer's text, the two
    outputs one user turn; the call and the final answer are learned, the outputs are not."""
    assert not supports_tools(smol_tokenizer)
    r = render_dataset(smol_tokenizer, [tool_conv()], CFG)
    assert "calls written as <tool_call>" in r.notices[0]
    [c] = r.convs
    assert [m.role for m in c.messages] == ["system", "user", "assistant", "user", "assistant"] and c.tools is None
    assert '<tools>\n{"type": "function", "function": {"name": "weather"' in c.messages[0].content
    assert c.messages[3].content == "<tool_response>\nsunny\n</tool_response>\n<tool_response>\n3 C\n</tool_response>"
    assert learned(smol_tokenizer, r.examples[0]) == [
        '<tool_call>\n{"name": "weather", "arguments": {"city": "서울"}}\n</tool_call><|im_end|>\n',
        "Sunny, 3 C.<|im_end|>\n"]
    assert r.checks.parity_failures == () and r.checks.end_of_turn_missing == ()


@pytest.mark.parametrize("markers", [True, False])
def test_a_template_that_writes_calls_renders_them_itself(smol_tokenizer, markers: bool):
    """With the model's own tool support the conversation goes to the template as it is (tools= and tool_calls),
    by its {% generation %} marks or by prefix difference alike; a tool-call answer's reference is what the
    template writes for it."""
    tok = with_template(smol_tokenizer, CHATML_TOOLS if markers else
                        CHATML_TOOLS.replace("{% generation %}", "").replace("{% endgeneration %}", ""))
    assert supports_tools(tok)
    r = render_dataset(tok, [tool_conv()], CFG)
    assert r.notices == () and r.convs[0] == tool_conv()
    text = tok.decode(list(r.examples[0].input_ids))
    assert text.startswith('<|im_start|>system\nTools:\n{"type": "function"') and "<|im_start|>tool\n3 C" in text
    call = '<call>{"name": "weather", "arguments": {"city": "서울"}}</call><|im_end|>'
    assert [s.rstrip("\n") for s in learned(tok, r.examples[0])] == [call, "Sunny, 3 C.<|im_end|>"]
    asked = Conversation(tool_conv().messages[:2], "t.jsonl:2", tools=TOOLS)
    prompt, reference = prompt_text(tok, asked)
    assert prompt.endswith("Weather?<|im_end|>\n<|im_start|>assistant\n") and reference == call[:-len("<|im_end|>")]


def test_truncate_drops_an_old_exchange_with_its_tool_turns(smol_tokenizer):
    old = tool_conv(None).messages
    c = Conversation((Message("user", "old " * 20), *old[1:], Message("user", "new"), Message("assistant", "fresh")),
                     "t.jsonl:1")
    ex = encode(smol_tokenizer, c, TemplateConfig(max_length=60, overflow="truncate"))
    text = smol_tokenizer.decode(list(ex.input_ids))
    assert ex.truncated and "old" not in text and "sunny" not in text and text.endswith("fresh<|im_end|>\n")
