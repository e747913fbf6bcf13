"""Function calling written as text, for a chat template that has no tool support (SmolLM2's, Gemma's, the plain
and ChatML fallbacks): the one text form train, eval, chat and serve share, and its parse back.

The form is the Hermes one Qwen2.5's template writes natively, so a model trained this way calls tools as Qwen
does, and tools that read Qwen's calls read these: the tools offered in the system turn inside <tools></tools> (a
schema per line), each call an assistant turn writes as <tool_call>{"name": ..., "arguments": {...}}</tool_call>,
and the tools' outputs as the user's next turn, each inside <tool_response></tool_response>. template.fit chooses
it (and says so) where the model's own template does not render a probe call; otherwise the template's own form is
used.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re

from tunesmith.records import Conversation, Message, ToolCall

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
PREAMBLE = ("You can call functions to answer. Their signatures are inside <tools></tools>:\n<tools>\n{tools}\n"
            "</tools>\n\nTo call one, write a JSON object with its name and arguments inside <tool_call></tool_call>:"
            "\n<tool_call>\n{{\"name\": <function name>, \"arguments\": <arguments as an object>}}\n</tool_call>\n"
            "Each function's output comes back inside <tool_response></tool_response>.")
_CALL = re.compile(re.escape(CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(CALL_CLOSE), re.S)


def call_text(call: ToolCall) -> str:
    return f"{CALL_OPEN}\n{{\"name\": {json.dumps(call.name, ensure_ascii=False)}, " \
           f"\"arguments\": {call.arguments}}}\n{CALL_CLOSE}"


def answer_text(m: Message) -> str:
    """An assistant turn with its calls written out after its text."""
    return "\n".join([*([m.content] if m.content else []), *(call_text(c) for c in m.tool_calls)])


def names(tools: str) -> list[str]:
    """The function names of a conversation's tools (its JSON text)."""
    return [t["function"]["name"] for t in json.loads(tools)]


def tools_text(tools: str) -> str:
    return PREAMBLE.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in json.loads(tools)))


def as_text(conv: Conversation) -> Conversation:
    """The conversation with its tools, calls and outputs written as text: user and assistant turns only, in turn,
    as every chat template renders. A conversation without them is returned as it is."""
    if not conv.calls_tools:
        return conv
    msgs = list(conv.messages)
    if conv.tools is not None:
        offered = tools_text(conv.tools)
        msgs = ([Message("system", f"{msgs[0].content}\n\n{offered}")] + msgs[1:] if msgs[0].role == "system"
                else [Message("system", offered), *msgs])
    out: list[Message] = []
    for prev, m in zip([None, *msgs], msgs):
        if m.role == "tool" and prev is not None and prev.role == "tool":  # outputs of one turn's calls: one turn
            out[-1] = Message("user", f"{out[-1].content}\n{_response(m)}")
        elif m.role == "tool":
            out.append(Message("user", _response(m)))
        else:
            out.append(dataclasses.replace(m, content=answer_text(m), tool_calls=()) if m.tool_calls else m)
    return dataclasses.replace(conv, messages=tuple(out), tools=None)


def without_tools(system: str) -> str | None:
    """A system prompt less the tools as_text offered in it (a run's training rows had them there, so its chat
    uses them): what is left of it, or None. For a request that offers tools of its own."""
    at = system.find(PREAMBLE[:PREAMBLE.index("{tools}")])
    return system if at < 0 else system[:at].rstrip() or None


def offered_names(system: str | None) -> list[str]:
    """The function names a system prompt offers in the text form (tools_text wrote them there: a run's training
    rows had them), in order; [] where it offers none."""
    at = (system or "").find(PREAMBLE[:PREAMBLE.index("{tools}")])
    if at < 0:
        return []
    block = system[at:].split("<tools>\n", 1)[-1].split("\n</tools>", 1)[0]  # type: ignore[index]
    found = []
    for line in block.splitlines():
        try:
            found.append(json.loads(line)["function"]["name"])
        except (ValueError, KeyError, TypeError):  # a line the form did not write: not a tool of it
            continue
    return found


def _response(m: Message) -> str:
    return f"<tool_response>\n{m.content}\n</tool_response>"


def parse(text: str) -> tuple[str, tuple[ToolCall, ...]]:
    """A generation's text without its <tool_call> blocks, and the calls they hold; a block that is not a call's
    JSON (the model wrote it wrongly) stays in the text, so that nothing it said is lost."""
    found: list[ToolCall] = []

    def take(match: re.Match) -> str:
        called = _named_args(_object(match.group(1)))
        if called is None:
            return match.group(0)
        try:
            found.append(ToolCall.of(*called))
        except (TypeError, ValueError):  # a Python literal JSON has no form for (a set, bytes)
            return match.group(0)
        return ""

    rest = _CALL.sub(take, text)
    return rest.strip(), tuple(found)


def forced(text: str, name: str) -> ToolCall | None:
    """The call a model makes when its answer was started as a call of `name` (serve's forced tool_choice) and
    `text` is what it wrote from the arguments' "{" on: the arguments are that JSON object, whatever follows (a
    model that does not close the call still made it); None where the object is not JSON."""
    try:
        args, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except (ValueError, RecursionError):
        return None
    try:
        return ToolCall.of(name, args) if isinstance(args, dict) else None
    except (TypeError, ValueError):
        return None


def _named_args(obj: object) -> tuple[str, dict] | None:
    """(name, arguments) of an object that is a call: a "name" and its "arguments" (or Llama's "parameters")."""
    args = obj.get("arguments", obj.get("parameters")) if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not isinstance(args, dict):
        return None
    return obj["name"], args


def _object(text: str) -> object:
    """A call block's object: JSON, or a Python dict literal as Hermes' function-calling data writes its calls
    ({'name': ..., 'arguments': {...}}; read with ast.literal_eval, which evaluates literals only, never code)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text) if len(text) < 100_000 else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def unwrapped_response(text: str) -> str:
    """A tool's output without the <tool_response> marks a text-form file wrapped it in (they are the form's)."""
    stripped = text.strip()
    if stripped.startswith("<tool_response>") and stripped.endswith("</tool_response>") and \
            stripped.count("<tool_response>") == 1:
        return stripped[len("<tool_response>"):-len("</tool_response>")].strip()
    return text


def calls_in(text: str) -> tuple[tuple[str, str], ...]:
    """The function calls a text makes, whatever form the model's template writes them in: every JSON object with
    a "name" and its "arguments" (or Llama's "parameters") object, in order, as (name, arguments with sorted keys),
    so that eval compares what was called, not how it was spaced or which key came first. Where the text has
    <tool_call> blocks, only what they hold is a call (a tool output the model goes on to imagine is not)."""
    tagged = _CALL.findall(text)
    if tagged:
        return tuple((c.name, json.dumps(json.loads(c.arguments), ensure_ascii=False, sort_keys=True))
                     for c in parse(text)[1])
    decoder, found, at = json.JSONDecoder(), [], text.find("{")
    while at != -1:
        try:
            obj, end = decoder.raw_decode(text, at)
        except (ValueError, RecursionError):
            at = text.find("{", at + 1)
            continue
        called = _named_args(obj)
        if called is not None:
            found.append((called[0], json.dumps(called[1], ensure_ascii=False, sort_keys=True)))
            at = text.find("{", end)
        else:
            at = text.find("{", at + 1)  # an object that is not a call may hold one (OpenAI's {"function": ...})
    return tuple(found)
