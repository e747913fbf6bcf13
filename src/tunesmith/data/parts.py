"""Turn content given as a list of content parts (OpenAI style: [{"type": "text", "text": "..."}, ...]), read as one
text: the parts' texts one after another, as chat templates render such a list. The SFT formats (formats.validate)
and the preference shapes (preference) both read it; a part that is not text (an image, audio) is an error that
each turns into its own skipped row: tunesmith trains text models."""

from __future__ import annotations

from typing import Any

# the part types that hold text: chat completions' "text", the Responses API's "input_text" and "output_text"
TEXT_PARTS = ("text", "input_text", "output_text")


class NotTextPart(ValueError):
    """A content list with a part that is not text; the message names the part and what was expected."""


def joined(content: Any, where: str) -> Any:
    """`content` as one text when it is a non-empty list of text parts; any other content as it is.

    >>> joined([{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}], "turn 0")
    'Hello, world'
    """
    if not isinstance(content, list) or not content:
        return content
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            what = f"a part of type {kind!r}" if isinstance(kind, str) else f"a {type(part).__name__}"
            raise NotTextPart(f"{where}: content part {j} is {what}, expected a text part "
                              '({"type": "text", "text": "..."})')
        texts.append(part["text"])
    return "".join(texts)


def lists_in(value: Any) -> int:
    """How many lists of text parts `value` (a row) holds, at any depth: what `joined` reads as texts."""
    if isinstance(value, dict):
        return sum(lists_in(v) for v in value.values())
    if not isinstance(value, list):
        return 0
    if value and all(isinstance(p, dict) and p.get("type") in TEXT_PARTS for p in value):
        return 1
    return sum(lists_in(v) for v in value)
