"""Function calling as data files write it, read into records: an assistant turn's calls (`ToolCall`) and a row's
tool schemas (`Conversation.tools`).

The shapes read, one meaning each:
- OpenAI's chat fine-tuning files and TRL's tool datasets: an assistant message's `tool_calls`
  ([{"id", "type": "function", "function": {"name", "arguments"}}], arguments a JSON text or an object), its older
  `function_call` ({"name", "arguments"}), and a row's `tools` ([{"type": "function", "function": {...}}]) or older
  `functions` (the schemas without the wrapper).
- LLaMA-Factory's ShareGPT files: a `function_call` turn whose value is the JSON text of one call
  ({"name", "arguments"}) or of a list of them, `observation` turns (the tool's output), and a `tools` column holding
  the JSON text of a list of schemas ({"name", "description", "parameters"}).

Arguments are kept as the file wrote them (a JSON object, re-serialised compactly, key order kept); tool schemas as
the JSON text of a list in Hugging Face's chat-template form ({"type": "function", "function": {...}}). A call
without a name, arguments that are not a JSON object, or a schema without a function name is `Malformed`: the row is
skipped with the turn and the call named (formats.validate), never trained on half-read.
"""

from __future__ import annotations

import json
from typing import Any

from tunesmith.records import ToolCall, compact_json


class Malformed(ValueError):
    """A call or a schema that cannot be read: the message says which, and what was expected."""


def _json(value: Any, what: str) -> Any:
    """A value that may be JSON text (LLaMA-Factory's and OpenAI's way) or already parsed."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as err:
        raise Malformed(f"{what} is not valid JSON ({err.msg} at position {err.pos}): {value[:60]!r}") from None
    except RecursionError:
        raise Malformed(f"{what} is JSON nested too deeply to read: {value[:60]!r}") from None


def _call(raw: Any, what: str) -> ToolCall:
    """One call: OpenAI's {"type": "function", "function": {...}}, or its bare {"name", "arguments"}."""
    raw = _json(raw, what)
    if isinstance(raw, dict) and isinstance(raw.get("function"), dict):
        raw = raw["function"]
    if not isinstance(raw, dict):
        raise Malformed(f"{what} is {type(raw).__name__}; a call is an object with a name and arguments")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise Malformed(f"{what} has no function name (expected {{\"name\": ..., \"arguments\": {{...}}}})")
    args = _json(raw.get("arguments", raw.get("parameters", {})), f"{what}'s arguments")
    if not isinstance(args, dict):
        raise Malformed(f"{what} ({name}): arguments are {type(args).__name__}, expected a JSON object")
    return ToolCall.of(name.strip(), args)


def calls(content: Any, where: str) -> tuple[Any, tuple[ToolCall, ...]]:
    """(the turn's text, its calls) of a turn that calls tools: an OpenAI-style message (a dict with `tool_calls`
    or `function_call`, its `content` the text beside them) or LLaMA-Factory's function_call value (JSON text of a
    call or a list of calls; no text beside them)."""
    if isinstance(content, dict):
        text = content.get("content")
        found = content.get("tool_calls") or content.get("function_call")
    else:
        text, found = "", _json(content, f"{where}: the function call")
    listed = found if isinstance(found, list) else [found]
    if not listed:
        raise Malformed(f"{where}: an empty list of tool calls")
    got = tuple(_call(c, f"{where}: tool call {n}" if len(listed) > 1 else f"{where}: the tool call")
                for n, c in enumerate(listed, start=1))
    return ("" if text is None else text), got


def schemas(value: Any, where: str) -> str | None:
    """A row's tools as the JSON text of a list of schemas in chat-template form; None where it offers none (no
    field, null, an empty list, "[]" or "": LLaMA-Factory's rows without tools)."""
    value = None if isinstance(value, str) and not value.strip() else _json(value, f"{where}: its tools")
    if value is None or value == []:
        return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise Malformed(f"{where}: its tools are {type(value).__name__}, expected a list of function schemas")
    out = []
    for n, tool in enumerate(value, start=1):
        fn = tool.get("function") if isinstance(tool, dict) and isinstance(tool.get("function"), dict) else tool
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise Malformed(f"{where}: tool {n} has no function name (expected {{\"name\": ..., \"description\": "
                            "..., \"parameters\": {...}})")
        out.append({"type": "function", "function": fn})
    return compact_json(out)


# xLAM's single-turn function-calling rows: {"query": ..., "answers": "[{name, arguments}, ...]", "tools": "[...]"}
ANSWER_CALLS = ("answers", "tool_calls", "calls", "function_calls")


def answer_calls_field(row: Any) -> str | None:
    """The field of a row that answers its question with calls alone (xLAM's `answers`: a list of calls, as JSON
    text or a list, each with a name), or None."""
    if not isinstance(row, dict) or tools_field(row) is None:
        return None
    for key in ANSWER_CALLS:
        value = row.get(key)
        try:
            value = json.loads(value) if isinstance(value, str) else value
        except (ValueError, RecursionError):
            continue
        if isinstance(value, list) and value and all(isinstance(c, dict) and "name" in c for c in value):
            return key
    return None


def tools_field(row: Any) -> Any:
    """The row's tools as written: `tools`, or OpenAI's older `functions`; None where it has neither."""
    if not isinstance(row, dict):
        return None
    return row["tools"] if row.get("tools") is not None else row.get("functions")
