"""The one render path for train, eval and chat: a conversation -> token ids and loss labels.

Most stock chat templates (SmolLM2's included) have no `{% generation %}` markers, so the supervised
spans are found by prefix difference: render messages[:i] with the generation prompt, render
messages[:i+1], and supervise what the second adds. The whole conversation is then tokenised ONCE
(prompt and answer are never tokenised separately) and a token is supervised when its first character
lies in a supervised span. That keeps the end-of-turn token supervised even where pad == eos.
"""

from __future__ import annotations

from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, Example, Message

IGNORE = -100  # the label value PyTorch's cross-entropy skips


def _chat(messages: tuple[Message, ...] | list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def render_text(tokenizer: Any, messages: tuple[Message, ...] | list[Message], *,
                add_generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise TunesmithError("the model's tokenizer has no chat template",
                             fix="use an instruct/chat model, or a model folder whose tokenizer_config has one")
    return tokenizer.apply_chat_template(_chat(messages), tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def supervised_spans(tokenizer: Any, conv: Conversation) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the (start, end) character spans of every assistant turn."""
    full = render_text(tokenizer, conv.messages, add_generation_prompt=False)
    spans = []
    for i, m in enumerate(conv.messages):
        if m.role != "assistant":
            continue
        before = render_text(tokenizer, conv.messages[:i], add_generation_prompt=True)
        upto = render_text(tokenizer, conv.messages[: i + 1], add_generation_prompt=False)
        if not upto.startswith(before) or not full.startswith(upto):
            raise TunesmithError(
                "the chat template does not render conversations as growing prefixes, so the assistant "
                "span cannot be found", where=conv.source,
                fix="use a template without history rewriting, or one with {% generation %} markers")
        spans.append((len(before), len(upto)))
    return full, spans


def is_text(conv: Conversation) -> bool:
    """Plain-text rows (from .txt files) train as completion: no chat template, every token supervised."""
    return len(conv.messages) == 1 and conv.messages[0].role == "text"


def _encode_text(tokenizer: Any, conv: Conversation, max_length: int) -> Example:
    ids = tokenizer(conv.messages[0].content, add_special_tokens=True)["input_ids"]
    ids = ids + [tokenizer.eos_token_id]  # the end token teaches the model where a text stops
    cut = ids[:max_length]
    return Example(tuple(cut), tuple(cut), conv.source, truncated=len(ids) > max_length)


def encode(tokenizer: Any, conv: Conversation, max_length: int) -> Example:
    """Tokenise a whole conversation once; labels are -100 outside assistant spans.

    Raises TunesmithError when truncation to `max_length` leaves no supervised token, since training on such
    a row teaches nothing (the 'answer truncated away by a long input' mistake).

    >>> ex = encode(tok, conv, 256)  # doctest: +SKIP
    >>> ex.supervised_tokens > 0      # doctest: +SKIP
    True
    """
    if is_text(conv):
        return _encode_text(tokenizer, conv, max_length)
    full, spans = supervised_spans(tokenizer, conv)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [tok if any(s <= start < e for s, e in spans) else IGNORE
              for tok, (start, _) in zip(ids, offsets)]
    if not any(x != IGNORE for x in labels):
        raise TunesmithError("no supervised tokens in this conversation", where=conv.source)
    if len(ids) > max_length:
        first = next(i for i, x in enumerate(labels) if x != IGNORE)
        if first >= max_length:
            raise TunesmithError(
                f"the answer starts at token {first}, past template.max_length={max_length}, so truncation "
                "would cut it away", where=conv.source,
                fix="raise template.max_length or shorten the prompt")
        return Example(tuple(ids[:max_length]), tuple(labels[:max_length]), conv.source, truncated=True)
    return Example(tuple(ids), tuple(labels), conv.source)


def prompt_text(tokenizer: Any, conv: Conversation) -> tuple[str, str]:
    """(prompt with generation prompt, reference answer) for the last assistant turn: what eval and chat use.

    A plain-text row is split at its middle word: the model continues the first half, the second is the reference.
    """
    if is_text(conv):
        words = conv.messages[0].content.split(" ")
        half = max(1, len(words) // 2)
        return " ".join(words[:half]), " ".join(words[half:])
    last = max(i for i, m in enumerate(conv.messages) if m.role == "assistant")
    prompt = render_text(tokenizer, conv.messages[:last], add_generation_prompt=True)
    return prompt, conv.messages[last].content
