"""Golden label masks on the embedded SmolLM2 tokenizer, and one test per masking mistake real users made."""

from __future__ import annotations

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, Message
from tunesmith.template import IGNORE, encode, prompt_text


def conv(*turns: tuple[str, str]) -> Conversation:
    return Conversation(tuple(Message(r, c) for r, c in turns), "test.jsonl:1")


def supervised_text(tok, ex) -> list[str]:
    """Decode each maximal run of supervised tokens."""
    runs, cur = [], []
    for i, lab in zip(ex.input_ids, ex.labels):
        if lab != IGNORE:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


def test_golden_single_turn(smol_tokenizer):
    ex = encode(smol_tokenizer, conv(("user", "I failed my exam."), ("assistant", "That sounds hard.")), 256)
    full = smol_tokenizer.decode(list(ex.input_ids))
    assert full == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nI failed my exam.<|im_end|>\n<|im_start|>assistant\n"
                    "That sounds hard.<|im_end|>\n")
    # Exactly the answer, its end-of-turn token and the template's newline are supervised.
    assert supervised_text(smol_tokenizer, ex) == ["That sounds hard.<|im_end|>\n"]
    assert all(lab in (IGNORE, tok) for tok, lab in zip(ex.input_ids, ex.labels))


def test_golden_multi_turn_with_system(smol_tokenizer):
    c = conv(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Bye"), ("assistant", "Bye!"))
    ex = encode(smol_tokenizer, c, 256)
    assert supervised_text(smol_tokenizer, ex) == ["Hello.<|im_end|>\n", "Bye!<|im_end|>\n"]
    assert "You are a helpful AI assistant" not in smol_tokenizer.decode(list(ex.input_ids))


def test_whole_prompt_is_not_trained(smol_tokenizer):
    ex = encode(smol_tokenizer, conv(("user", "question " * 20), ("assistant", "answer")), 256)
    n_answer = len(smol_tokenizer("answer<|im_end|>\n", add_special_tokens=False)["input_ids"])
    assert ex.supervised_tokens == n_answer < len(ex.input_ids) // 5


def test_end_of_turn_token_is_supervised_even_though_pad_is_eos(smol_tokenizer):
    assert smol_tokenizer.pad_token_id == smol_tokenizer.eos_token_id  # the trap this test guards
    ex = encode(smol_tokenizer, conv(("user", "Hi"), ("assistant", "Hello.")), 256)
    eos_positions = [i for i, t in enumerate(ex.input_ids) if t == smol_tokenizer.eos_token_id]
    assert ex.labels[eos_positions[-1]] == smol_tokenizer.eos_token_id


def test_prompt_and_answer_are_tokenised_together(smol_tokenizer):
    c = conv(("user", "Hi"), ("assistant", "Hello."))
    ex = encode(smol_tokenizer, c, 256)
    whole = smol_tokenizer.apply_chat_template([{"role": "user", "content": "Hi"},
                                                {"role": "assistant", "content": "Hello."}], tokenize=False)
    assert list(ex.input_ids) == smol_tokenizer(whole, add_special_tokens=False)["input_ids"]


def test_no_generation_prompt_after_a_finished_conversation(smol_tokenizer):
    ex = encode(smol_tokenizer, conv(("user", "Hi"), ("assistant", "Hello.")), 256)
    assert not smol_tokenizer.decode(list(ex.input_ids)).endswith("<|im_start|>assistant\n")
    prompt, reference = prompt_text(smol_tokenizer, conv(("user", "Hi"), ("assistant", "Hello.")))
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") and reference == "Hello."


def test_answer_truncated_away_is_an_error_not_a_silent_row(smol_tokenizer):
    long_input = "This paragraph is long. " * 100
    with pytest.raises(TunesmithError) as err:
        encode(smol_tokenizer, conv(("user", long_input), ("assistant", "A question?")), 64)
    assert "test.jsonl:1" in str(err.value) and "max_length=64" in str(err.value)


def test_truncation_keeps_the_start_of_the_answer(smol_tokenizer):
    ex = encode(smol_tokenizer, conv(("user", "Hi"), ("assistant", "word " * 100)), 48)
    assert len(ex.input_ids) == len(ex.labels) == 48 and ex.supervised_tokens > 0


def test_truncated_rows_are_flagged(smol_tokenizer):
    short = encode(smol_tokenizer, conv(("user", "Hi"), ("assistant", "Hello.")), 256)
    long = encode(smol_tokenizer, conv(("user", "Hi"), ("assistant", "word " * 100)), 48)
    assert not short.truncated and long.truncated
