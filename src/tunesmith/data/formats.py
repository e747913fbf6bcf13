"""Turn raw records into validated Conversations. The format is detected over all rows, not the first.

`FORMATS` is a plain registry: name -> (does this row look like it?, row -> list of (role, content), or of
(role, content, weight) where an OpenAI message has a weight).
Three shapes are file-level, not row-level: a flat list of role/content turns (paired into conversations), a chat
log of messages by named people (data/chatlog.py: KakaoTalk's exports) and CSV columns of numbered turns
(사람문장1, 시스템응답1, ...). A row that does not fit the detected format,
or fails validation, is skipped with its location and reason; unknown role names stop the read with the fix.
Function calling (a turn's calls, the tools' outputs, a row's tools) is read by data/calls.py: validate makes the
calls an assistant turn's and the schemas the conversation's.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from tunesmith import thinking, toolcalls
from tunesmith.data import calls, chatlog, exports, llamafactory, parts, preference, readers
from tunesmith.errors import TunesmithError, did_you_mean
from tunesmith.format_names import ALL_FORMATS, CALL, FLAT_TURNS, KNOWN_ROLES, SEGMENT, TOOL
from tunesmith.records import Conversation, Message, RawRecord, ReadResult, Skip

Turns = list[tuple[Any, ...]]  # (role, content) or (role, content, weight); a CALL turn's content: data/calls.py

# Role names other tools write for the same roles (ShareGPT's human/gpt, Gemma's model).

# The field names people give a prompt, its context and its answer, compared case-insensitively and without
# spaces, '_' or '-': Alpaca (instruction/input/output), Dolly (instruction/context/response), the Korean chatbot
# CSV (Q,A,label), Korean headers. `input` is the context beside an `instruction`, the prompt without one.
# Two fields that could each fill one slot (`answer` and `response`) make the row ambiguous: load() asks.
PROMPT_FIELDS = ("prompt", "question", "query", "q", "질문", "입력", "input")
CONTEXT_FIELDS = ("input", "context", "맥락", "문맥", "지문")
ANSWER_FIELDS = ("completion", "answer", "response", "output", "a", "답변", "대답", "응답", "출력")


def _norm(key: Any) -> str:
    return re.sub(r"[\s_\-]+", "", str(key)).lower()


def single_turn_fields(row: Any) -> tuple[tuple[str, str | None, str] | None, list[str]]:
    """((prompt, context or None, answer) field names of a one-question row, or None; what is ambiguous)."""
    if not isinstance(row, dict):
        return None, []
    by: dict[str, list[str]] = {}
    for key in row:
        by.setdefault(_norm(key), []).append(key)
    named = lambda names: [k for n in names for k in by.get(n, [])]  # noqa: E731
    # `prompt` and `completion` (TRL's names, and what --column maps a field to) are never ambiguous.
    if "instruction" in by and "prompt" not in by:
        prompts, contexts = by["instruction"], named(CONTEXT_FIELDS)
    else:
        prompts, contexts = by.get("prompt") or named(PROMPT_FIELDS), named(c for c in CONTEXT_FIELDS if c != "input")
    answers = by.get("completion") or named(ANSWER_FIELDS)
    if not prompts or not answers:
        return None, []
    ambiguous = [f"{' and '.join(repr(k) for k in keys)} could each be the {what}" for what, keys in
                 (("prompt", prompts), ("context", contexts), ("answer", answers)) if len(keys) > 1]
    return (None if ambiguous else (prompts[0], contexts[0] if contexts else None, answers[0])), ambiguous


def _one_turn(row: dict) -> Turns:
    """The row's question and answer, after its own system prompt and earlier turns where it has them
    (LLaMA-Factory's Alpaca columns: `system`, and `history` as [[instruction, response], ...])."""
    prompt, context, answer = single_turn_fields(row)[0]  # type: ignore[misc]
    extra = row.get(context) if context else None
    if isinstance(row[prompt], list) or isinstance(row[answer], list):
        return _conversational(row, prompt, answer, extra)
    thought = _reasoning_field(row)
    said = _Thought(row[thought], row[answer]) if thought and row[thought] not in (None, "") else row[answer]
    text = row[prompt]
    if isinstance(text, str) and isinstance(extra, str) and extra.strip():
        text = f"{text}\n\n{extra}"  # the context joins the user turn, as Alpaca's own template puts it
    system, history = _extra_fields(row)
    before: Turns = [("system", row[system])] if system else []
    for pair in row[history] if history else ():
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise TypeError(f"{history!r} must be a list of [instruction, response] pairs, not {pair!r:.60}")
        before += [("user", pair[0]), ("assistant", pair[1])]
    return [*before, ("user", text), ("assistant", said)]


class _Thought(NamedTuple):
    """An answer's text with the reasoning its message or row gives beside it (thinking.py), until validate."""

    reasoning: Any
    content: Any


def _reasoning_field(row: dict) -> str | None:
    """A one-question row's field holding the answer's reasoning (thinking.ROW_FIELDS: Complex_CoT, rationale,
    reasoning, thinking...), or None; two such fields are a malformed row (which is the answer's is not clear)."""
    found = [k for k in row if _norm(k) in thinking.ROW_FIELDS]
    if "reasoning" in found:  # the canonical name (data.columns maps a field to it): the others stay unused
        return "reasoning"
    if len(found) > 1:
        raise TypeError(f"{' and '.join(map(repr, found))} could each be the answer's reasoning: name one with "
                        "data.columns (reasoning: FIELD)")
    return found[0] if found else None


def _message_reasoning(t: dict) -> Any:
    """A message's reasoning under any of thinking.MESSAGE_KEYS (reasoning_content, reasoning, thinking), or None;
    two keys that say different things are a malformed row. A flag under one of them ("thinking": false, a
    switch some exports write) is not reasoning."""
    found = {k: t[k] for k in thinking.MESSAGE_KEYS if t.get(k) not in (None, "") and not isinstance(t[k], bool)}
    if len({json.dumps(v, sort_keys=True, default=str) for v in found.values()}) > 1:
        raise TypeError(f"the turn gives its reasoning twice, differently: in {' and '.join(found)}")
    return next(iter(found.values()), None)


def _conversational(row: dict, prompt: str, answer: str, context: Any) -> Turns:
    """TRL's conversational prompt-completion row: the prompt's turns, then the completion's (either side may be a
    string: one user turn, one assistant answer), after the row's `system` field where it has one. As in TRL, the
    completion is what is learned: an assistant turn inside the prompt is context (weight 0)."""
    if context or _extra_fields(row)[1]:
        raise TypeError("a context or history field beside a prompt given as turns: put those turns in the prompt")
    side = lambda value, role: [_turn(t) for t in value] if isinstance(value, list) else [(role, value)]  # noqa: E731
    asked = [(role, content, 0) for role, content, *_ in side(row[prompt], "user")]  # only an answer heeds it
    return _with_system(row, [*asked, *side(row[answer], "assistant")])


def _with_system(row: dict, turns: Turns) -> Turns:
    """A conversation row's turns after its own system prompt, where the row has one beside its turns
    (LLaMA-Factory's ShareGPT `system` key; missing or empty: none). One in both places is a malformed row."""
    system = _extra_fields(row)[0]
    if not system:
        return turns
    if turns and str(turns[0][0]).strip().lower() == "system":
        raise TypeError(f"the row has a system prompt both in its {system!r} field and as its first turn")
    return [("system", row[system]), *turns]


def _extra_fields(row: dict) -> tuple[str | None, str | None]:
    """The row's `system` field when it holds a system prompt (non-empty), and its `history` field when it holds
    earlier turns (a non-empty list): (field names, or None)."""
    keys = {_norm(k): k for k in row}
    system, history = keys.get("system"), keys.get("history")
    return (system if isinstance(row.get(system), str) and row[system].strip() else None,
            history if isinstance(row.get(history), list) and row[history] else None)


def _is_alpaca(row: Any) -> bool:
    fields = single_turn_fields(row)[0]
    return fields is not None and _norm(fields[0]) == "instruction"


def _is_pair(row: Any) -> bool:
    fields = single_turn_fields(row)[0]
    return fields is not None and _norm(fields[0]) != "instruction"


_alpaca = _prompt_completion = _one_turn  # one conversion; the names say which shape was detected


def _question_field(row: Any) -> str | None:
    """A function-calling row's question: its first prompt-like field holding text."""
    return next((k for k in row if _norm(k) in ("query", "question", "prompt", "instruction", "input", "user")
                 and isinstance(row[k], str)), None) if isinstance(row, dict) else None


def _is_function_calls(row: Any) -> bool:
    return calls.answer_calls_field(row) is not None and _question_field(row) is not None


def _function_calls(row: dict) -> Turns:
    """xLAM's rows: the question, answered by the calls alone (its `answers`), with the row's tools offered."""
    answer = row[calls.answer_calls_field(row)]  # type: ignore[index]
    listed = json.loads(answer) if isinstance(answer, str) else answer
    return _with_system(row, [("user", row[_question_field(row)]), (CALL, {"tool_calls": listed})])  # type: ignore


# Numbered-turn CSV columns: prefix words that mark the user's and the assistant's side (AI-Hub: 사람문장N/시스템응답N).
_NUMBERED = re.compile(r"^(.*?)(\d+)$")
_USER_PREFIX = ("사람", "사용자", "질문", "user", "human", "q", "client")
_ASSISTANT_PREFIX = ("시스템", "챗봇", "응답", "답변", "assistant", "bot", "gpt", "a", "system", "counselor")

# C0/C1 control characters other than tab, newline and carriage return: invisible, and they poison tokenizers.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


# A turn's keys: OpenAI's role/content, or ShareGPT's from/value; either under `messages` or `conversations`, as
# LLaMA-Factory's and Axolotl's settings and Unsloth's standardize_sharegpt (role/content under conversations) write.
_TURN_KEYS = (("role", "content"), ("from", "value"))


def _is_turn_list(value: Any) -> bool:
    """A list of turns, each with one of _TURN_KEYS (a message that calls a tool may leave its content out, as
    OpenAI's do)."""
    return isinstance(value, list) and bool(value) and all(isinstance(t, dict) and any(
        role in t and (content in t or _calls_tool(t)) for role, content in _TURN_KEYS) for t in value)


def _calls_tool(t: dict) -> bool:
    return bool(t.get("tool_calls") or t.get("function_call"))


def _numbered_columns(row: Any) -> tuple[str, str, int] | None:
    """(user prefix, assistant prefix, highest turn number) when a row has numbered turn columns."""
    if not isinstance(row, dict):
        return None
    numbers: dict[str, set[int]] = {}
    for key in row:
        m = _NUMBERED.match(str(key).strip())
        if m and m.group(1):
            numbers.setdefault(m.group(1), set()).add(int(m.group(2)))
    prefixes = [p for p, ns in numbers.items() if 1 in ns]
    if len(prefixes) != 2:
        return None
    a, b = prefixes
    if a.lower().startswith(_ASSISTANT_PREFIX) and not a.lower().startswith(_USER_PREFIX):
        a, b = b, a  # otherwise the first column in file order is the user's side
    return a, b, max(numbers[a] | numbers[b])


def _numbered(row: dict) -> Turns:
    user, assistant, last = _numbered_columns(row)  # type: ignore[misc]
    turns: Turns = []
    for n in range(1, last + 1):
        u, a = row.get(f"{user}{n}"), row.get(f"{assistant}{n}")
        if not (u or "").strip() and not (a or "").strip():
            break  # empty trailing turns: the conversation ended
        turns += [("user", u), ("assistant", a)]
    return turns



def _turn(t: dict) -> tuple[Any, ...]:
    """(role, content), or (role, content, weight) where it has one, of an OpenAI-style message or a ShareGPT turn
    (from/value); one that calls tools (tool_calls, or the older function_call) is a CALL turn whose content is the
    message itself (validate reads its calls and its text with data/calls.py)."""
    reasoning = _message_reasoning(t) if isinstance(t, dict) else None
    thought = (lambda content: content) if reasoning is None else (lambda content: _Thought(reasoning, content))
    if _calls_tool(t):
        return (CALL, thought(t), t["weight"]) if "weight" in t else (CALL, thought(t))
    keys = next((keys for keys in _TURN_KEYS if isinstance(t, dict) and keys[0] in t), None)
    if keys is None:
        raise TypeError(f"a turn needs a role and its content (role/content or from/value), not {t!r:.60}")
    role, content = keys
    return (t[role], thought(t[content]), t["weight"]) if "weight" in t else (t[role], thought(t[content]))


def _is_segments(row: Any) -> bool:
    """Axolotl's template-free rows: {"segments": [{"label": false, "text": ...}, {"label": true, ...}]}."""
    segs = row.get("segments") if isinstance(row, dict) else None
    return isinstance(segs, list) and bool(segs) and all(isinstance(s, dict) and "text" in s for s in segs)


FORMATS: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Turns]]] = {
    "messages": (lambda r: isinstance(r, dict) and _is_turn_list(r.get("messages")),
                 lambda r: _with_system(r, [_turn(t) for t in r["messages"]])),
    "sharegpt": (lambda r: isinstance(r, dict) and _is_turn_list(r.get("conversations")),
                 lambda r: _with_system(r, [_turn(t) for t in r["conversations"]])),
    "function_calls": (_is_function_calls, _function_calls),
    "alpaca": (_is_alpaca, _alpaca),
    "prompt_completion": (_is_pair, _prompt_completion),
    "numbered_turns": (lambda r: _numbered_columns(r) is not None, _numbered),
    "turns": (_is_turn_list, lambda r: [_turn(t) for t in r]),
    "pairs": (lambda r: isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r),
              lambda r: [("user", r[0]), ("assistant", r[1])]),
    "text": (lambda r: isinstance(r, str) or isinstance(r, dict) and set(r) == {"text"},  # a bare string: a text
             lambda r: [("text", r if isinstance(r, str) else r["text"])]),
    "segments": (_is_segments, lambda r: [(SEGMENT, s["text"], s.get("label")) for s in r["segments"]]),
    exports.CHATGPT: (exports.is_chatgpt, exports.chatgpt_turns),
    exports.CLAUDE: (exports.is_claude, exports.claude_turns),
}
# formats whose files name their roles
NAMED_ROLES = {"messages", "sharegpt", "turns", FLAT_TURNS, exports.CHATGPT, exports.CLAUDE}


def _is_flat_turn(row: Any) -> bool:
    return isinstance(row, dict) and "role" in row and "content" in row


def detect(records: list[RawRecord]) -> tuple[str, Counter]:
    """The format most rows fit (ties go to the earlier registry entry), with the per-format counts as evidence."""
    votes: Counter = Counter()
    for rec in records:
        for name, (fits, _) in FORMATS.items():
            if fits(rec.fields):
                votes[name] += 1
        if _is_flat_turn(rec.fields):
            votes[FLAT_TURNS] += 1
        if chatlog.fields_of(rec.fields):
            votes[chatlog.CHAT_LOG] += 1
    if not votes:
        return "unknown", votes
    best = max(ALL_FORMATS, key=lambda n: (votes[n], -ALL_FORMATS.index(n)))
    return best, votes


def _pair_flat_turns(records: list[RawRecord]) -> list[tuple[str, Turns]]:
    """Group a flat list of turns into conversations: a new one starts at a system turn, or at a user turn
    that follows an assistant turn. Roles here are already mapped."""
    convs: list[tuple[str, Turns]] = []
    prev = None
    for rec in records:
        role = rec.fields["_role"]
        if not convs or role == "system" or (role == "user" and prev == "assistant"):
            convs.append((rec.location, []))
        convs[-1][1].append((role, rec.fields["content"]))
        prev = role
    return convs


def _clean(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


class BadRow(ValueError):
    """Why a row must be skipped: `kind` is one of skips.SKIP_KINDS, the message the row's own detail."""

    def __init__(self, kind: str, what: str) -> None:
        super().__init__(what)
        self.kind = kind


def validate(turns: Turns, source: str, system: str | None, tools: Any = None) -> Conversation:
    """Check roles, order and content; raise BadRow with the reason a row must be skipped. A content list of text
    parts is read as its joined text (parts.joined); a CALL turn becomes an assistant turn with its calls, and
    `tools` (the row's own field, as written) the conversation's tool schemas (data/calls.py)."""
    if turns and turns[0][0] == SEGMENT:
        return _segments(turns, source)
    msgs = _calls_written_as_text([_message(i, role, content, rest) for i, (role, content, *rest) in enumerate(turns)])
    if msgs and msgs[0].role == "text":
        return Conversation(tuple(msgs), source)
    if system is not None:
        msgs = [Message("system", system)] + [m for m in msgs if m.role != "system"]
    body = msgs[1:] if msgs and msgs[0].role == "system" else msgs
    _check_order(body)
    try:
        schemas = calls.schemas(tools, "the row")
    except calls.Malformed as err:
        raise BadRow("tool_call", str(err)) from None
    return Conversation(tuple(msgs), source, tools=schemas)


def _message(i: int, role: str, content: Any, rest: list[Any]) -> Message:
    """One turn as a Message, or the BadRow that skips its row."""
    reasoning = None
    if isinstance(content, _Thought):
        reasoning, content = content
    if role == CALL:
        try:
            content, made = calls.calls(content, f"turn {i}")
        except calls.Malformed as err:
            raise BadRow("tool_call", str(err)) from None
    elif role == TOOL and content is None:  # an app export's tool use (exports.py): neither call nor output is text
        raise BadRow("tool_call", f"turn {i}: a tool the app used, whose call and output its export does not hold "
                                  "as text")
    content = _as_text(content, f"turn {i} ({role})", "content")
    if not content.strip() and role not in (CALL, TOOL):  # a call may say nothing beside it; an output be empty
        raise BadRow("empty_turn", f"turn {i} ({role}): empty content")
    _no_control(content, f"turn {i} ({role})")
    thought, content = _thought(i, role, reasoning, _clean(content), bool(role == CALL and made))
    if role == CALL:
        return Message("assistant", content, _trained(rest, "assistant", i), made, thought)
    return Message(role, content, _trained(rest, role, i), reasoning=thought)


def _thought(i: int, role: str, given: Any, content: str, calls_made: bool) -> tuple[str | None, str]:
    """(reasoning, answer) of a turn: the reasoning its message or row gives beside it, or the <think> block its
    answer's text opens with (thinking.split); an empty one is none. Only an answer thinks."""
    if role not in ("assistant", CALL):
        if given is not None:
            raise BadRow("malformed", f"turn {i} ({role}): reasoning on a {role} turn (only an answer has one)")
        return None, content
    inline = thinking.split(content)
    if inline.reasoning is not None and given is not None:
        raise BadRow("malformed", f"turn {i} ({role}): reasoning given twice, beside the answer and as a "
                                  f"{thinking.OPEN} block in its text")
    if not inline.finished:
        raise BadRow("malformed", f"turn {i} ({role}): a {thinking.OPEN} block that never ends ({thinking.CLOSE} "
                                  "missing)")
    if given is None:
        reasoning, content = inline.reasoning, inline.answer
    else:
        reasoning = _reasoning_text(i, role, given)
    if reasoning is not None and not content.strip() and not calls_made:
        raise BadRow("empty_turn", f"turn {i} ({role}): thinks, but gives no answer after its thinking")
    return reasoning or None, content


def _reasoning_text(i: int, role: str, value: Any) -> str:
    text = _as_text(value, f"turn {i} ({role})", "reasoning")
    _no_control(text, f"turn {i} ({role}) reasoning")
    return _clean(text)


def _as_text(value: Any, where: str, what: str) -> str:
    """A turn's content or reasoning as text (a list of text parts joined: parts.joined), or the BadRow that skips
    its row."""
    try:
        value = parts.joined(value, where if what == "content" else f"{where} {what}")
    except parts.NotTextPart as err:
        raise BadRow("not_text", str(err)) from None
    if not isinstance(value, str):
        raise BadRow("not_text", f"{where}: {what} is {type(value).__name__}, expected text")
    return value


def _no_control(text: str, where: str) -> None:
    if bad := _CONTROL.search(text):
        raise BadRow("control_char", f"{where}: control character U+{ord(bad.group()):04X} at position "
                                     f"{bad.start()}")


def _calls_written_as_text(msgs: list[Message]) -> list[Message]:
    """Hermes' function-calling files write each call into the answer's text (<tool_call>{...}</tool_call>, JSON or
    a Python dict) and wrap the output in <tool_response>: where a tool's output follows such an answer, its calls
    are read as calls and the output unwrapped, so that the row trains as any function-calling row does."""
    out = list(msgs)
    for i, m in enumerate(out[:-1]):
        if m.role != "assistant" or m.tool_calls or out[i + 1].role != TOOL or toolcalls.CALL_OPEN not in m.content:
            continue
        text, found = toolcalls.parse(m.content)
        if found:
            out[i] = replace(m, content=text, tool_calls=found)
            j = i + 1
            while j < len(out) and out[j].role == TOOL:
                out[j] = Message(TOOL, toolcalls.unwrapped_response(out[j].content))
                j += 1
    return out


def _check_order(body: list[Message]) -> None:
    """User first, then user and assistant in turn; an assistant turn that calls tools is followed by their outputs
    (one or more tool turns), then the assistant again; the last turn is the assistant's."""
    prev: Message | None = None
    for i, m in enumerate(body):
        if prev is not None and prev.role == "assistant" and prev.tool_calls:
            want: tuple[str, ...] = (TOOL,)
        else:
            want = (TOOL, "assistant") if prev is not None and prev.role == TOOL else \
                ("assistant",) if prev is not None and prev.role == "user" else ("user",)
        if m.role not in want:
            raise BadRow("turn_order", _order_problem(i, m.role, want))
        prev = m
    if not body or body[-1].role != "assistant":
        raise BadRow("no_answer", "no assistant turn to learn from at the end of the conversation")


def _order_problem(i: int, role: str, want: tuple[str, ...]) -> str:
    if want == (TOOL,):
        return f"turn {i}: {role} where the output of the tool just called was expected"
    if role == TOOL:
        return f"turn {i}: a tool's output where no assistant turn called a tool just before"
    if want == (TOOL, "assistant"):
        return f"turn {i}: {role} where the assistant was expected after the tool's output"
    return f"turn {i}: {role} where {want[0]} was expected (turns must alternate, user first)"


def _segments(turns: Turns, source: str) -> Conversation:
    """A segments row as its parts, text kept as written (only NFC: its spaces and newlines are the template) and
    learned where `label` is true, as Axolotl's input_output type does."""
    msgs = []
    for i, (_, text, label) in enumerate(turns):
        if not isinstance(text, str):
            raise BadRow("not_text", f"segment {i}: text is {type(text).__name__}, expected text")
        if not isinstance(label, bool):
            raise BadRow("malformed", f"segment {i}: label {label!r}; a segment's label is true (learned) or false "
                                      "(context only)")
        if bad := _CONTROL.search(text):
            raise BadRow("control_char", f"segment {i}: control character U+{ord(bad.group()):04X} at position "
                                         f"{bad.start()}")
        msgs.append(Message(SEGMENT, unicodedata.normalize("NFC", text), label))
    if not any(m.content.strip() for m in msgs):
        raise BadRow("empty_turn", "every segment is empty")
    return Conversation(tuple(msgs), source)


def _trained(weight: list[Any], role: str, i: int) -> bool:
    """Whether a turn may be trained on: OpenAI's per-message "weight" (0 or 1, 1 where absent), which only an
    assistant turn's training heeds (other turns are prompt)."""
    if weight and weight[0] not in (0, 1):
        raise BadRow("malformed", f"turn {i} ({role}): weight {weight[0]!r}; OpenAI's weight is 0 or 1")
    return not weight or role != "assistant" or weight[0] == 1


def _role_map(roles_seen: Counter, user_roles: Mapping[str, str], path: Path) -> dict[str, str]:
    """Map every role name in the file, or stop with the list of names and the config that fixes it."""
    mapping = {**KNOWN_ROLES, **{k.strip().lower(): v for k, v in user_roles.items()}}
    unknown = sorted(r for r in roles_seen if r not in mapping)
    if unknown:
        seen = ", ".join(f"{r} ({n}x)" for r, n in roles_seen.most_common())
        known = {mapping[r] for r in roles_seen if r in mapping}
        guesses = [r for r in ("user", "assistant") if r not in known] or ["assistant"]
        guess = {r: guesses[min(i, len(guesses) - 1)] for i, r in enumerate(unknown)}
        fix_lines = "".join(f"\n      {r}: {role}" for r, role in guess.items())
        raise TunesmithError(
            f"unknown role name(s) {', '.join(map(repr, unknown))}; roles found: {seen}", where=str(path),
            fix=f"map them in the config's data section:\n    roles:{fix_lines}",
            suggest={"roles": guess})
    bad_targets = sorted({v for v in mapping.values() if v not in ("system", "user", "assistant", TOOL, CALL)})
    if bad_targets:
        raise TunesmithError(f"roles map to {bad_targets}; a role must map to system, user or assistant (or tool: "
                             f"a tool's output, {CALL}: a turn whose text is a function call as JSON)",
                             where=str(path))
    return mapping


def _rename(row: Any, columns: Mapping[str, str]) -> Any:
    """The row with data.columns' fields under their canonical names; `role` and `content` also name the keys of
    the turns in its messages / conversations list ({messages: dialog, role: speaker, content: text})."""
    if not columns or not isinstance(row, dict):
        return row
    out = {k: v for k, v in row.items() if k not in columns.values()}
    out.update({canon: row[src] for canon, src in columns.items() if src in row})
    keys = {columns[k]: k for k in ("role", "content") if k in columns}
    for name in ("messages", "conversations") if keys else ():
        if isinstance(out.get(name), list):
            out[name] = [{keys.get(k, k): v for k, v in t.items()} if isinstance(t, dict) else t for t in out[name]]
    return out


def _check_has_rows(path: Path, raw: list[RawRecord], skipped: list[Skip], format: str) -> None:
    """Stop on a file with nothing in it, or (when the format must be detected) nothing readable in it."""
    if not raw and not skipped:
        raise TunesmithError("the file has no rows", where=str(path),
                             fix="check this is the file you meant (an empty file, or a header with no rows "
                                 "below it, holds nothing to train on), or leave it out of the data")
    if not raw and format == "auto":
        raise TunesmithError(f"none of its {len(skipped)} rows could be read, so its format cannot be told",
                             where=str(path), problems=[f"{s.location}: {s.reason}" for s in skipped[:10]]
                             + ([f"... and {len(skipped) - 10} more"] if len(skipped) > 10 else []),
                             fix="fix these rows, or check this is the file you meant")


def _choose_format(path: Path, records: list[RawRecord], format: str) -> tuple[str, Counter]:
    """The detected (or forced) format; a shape that leaves a field ambiguous, or none, stops with the fix."""
    fmt, votes = detect(records) if format == "auto" else (format, Counter())
    if fmt in ("unknown", "alpaca", "prompt_completion"):
        unclear = [(r.location, why) for r in records for why in [single_turn_fields(r.fields)[1]] if why]
        if unclear and len(unclear) >= votes.get(fmt, 0):
            where, why = unclear[0]
            raise TunesmithError(f"which field is which is not clear: {'; '.join(why)}", where=str(path),
                                 problems=[f"{len(unclear)} of {len(records)} rows have these fields (the first: "
                                           f"{where})"],
                                 fix="name the prompt and the answer field (data.columns in a config)",
                                 suggest={"columns": _guess_columns(records[0].fields)})
    _refuse_preferences(path, records, fmt)
    if fmt not in ALL_FORMATS:
        what = (f"cannot tell the data format: no row looks like any of {', '.join(ALL_FORMATS)}"
                if fmt == "unknown" else f"unknown format {fmt!r}{did_you_mean(fmt, ALL_FORMATS)}")
        fields = records[0].fields if records else None
        seen = (f"its rows have the fields {', '.join(map(repr, fields))}" if isinstance(fields, dict) else
                f"its first row is {str(fields)[:200]!r}")
        turns = _unknown_turns(fields)
        if turns:
            raise TunesmithError(what, where=str(path), problems=[seen, turns[0]],
                                 fix="name the list and its turns' keys (data.columns in a config)",
                                 suggest={"columns": turns[1]})
        raise TunesmithError(what, where=str(path), problems=[seen] if records else [],
                             fix="name the prompt and the answer field (data.columns in a config), or the "
                                 "format (data.format)",
                             suggest={"columns": _guess_columns(fields)} if isinstance(fields, dict) else None)
    return fmt, votes


def _unknown_turns(fields: Any) -> tuple[str, dict[str, str]] | None:
    """Where a row's field holds a list of turns whose keys no format reads: what they are keyed by, and the
    data.columns that names them (the prompt and answer columns a fix would otherwise suggest cannot read it)."""
    lists = {k: v for k, v in fields.items() if isinstance(v, list) and v and isinstance(v[0], dict)} \
        if isinstance(fields, dict) else {}
    for name, turns in lists.items():
        keys = list(dict.fromkeys(k for t in turns if isinstance(t, dict) for k in t))
        if not keys:  # a list of empty objects: nothing to name
            continue
        guess = lambda words, but: next((k for k in keys if _norm(k) in words and k != but), None)  # noqa: E731
        content = guess(("text", "utterance", "message", "msg", "body", "발화", "내용"), None) or keys[-1]
        role = guess(("speaker", "speakerid", "participant", "participantid", "sender", "author", "name", "who",
                      "role", "from", "type", "화자"), content) or next((k for k in keys if k != content), "ROLE_KEY")
        return (f"its field {name!r} holds a list of {len(turns)} turns keyed {', '.join(map(repr, keys[:6]))}; "
                "turns are read with keys role/content or from/value, under messages or conversations",
                {"messages": name, "role": role, "content": content})
    return None


def _refuse_preferences(path: Path, records: list[RawRecord], fmt: str) -> None:
    """Preference rows (chosen/rejected; or a true/false label on each answer, KTO's shape) are not
    instruction data: read as prompt/completion, the rejected or bad answers would be trained as good ones.
    The shapes are preference.detect's, the one place they are defined."""
    shape, votes = preference.detect([r.fields for r in records])
    if shape is None or votes[shape] * 2 <= len(records) or fmt not in ("unknown", "prompt_completion", "messages",
                                                                          "sharegpt", "alpaca"):
        return
    kto = shape == preference.KTO
    kind = "answers labelled true/false (KTO data)" if kto else "chosen and rejected answers (DPO / ORPO data)"
    raise TunesmithError(f"these rows hold preference data: {kind}, not instructions to imitate",
                         where=str(path), problems=[f"{votes[shape]} of {len(records)} rows fit the {shape} shape"],
                         fix="train on it with --set train.objective=" + ("kto" if kto else "dpo (or orpo, simpo)")
                             + "; `tunesmith inspect` shows how it reads (pairs, skips, length bias)")


def _guess_columns(row: Any) -> dict[str, str]:
    """A columns mapping to show in a fix: the first fields that look like a prompt and an answer, else the
    first two fields (the fix says to check it)."""
    keys = [str(k) for k in row] if isinstance(row, dict) else []
    ask = [k for k in keys if any(w in _norm(k) for w in ("question", "prompt", "instruction", "input", "query", "질문"))]
    say = [k for k in keys if k not in ask[:1] and any(w in _norm(k) for w in ("answer", "output", "response",
                                                                              "completion", "답"))]
    prompt = (ask or keys or ["PROMPT_FIELD"])[0]
    answer = (say or [k for k in keys if k != prompt] or ["ANSWER_FIELD"])[0]
    return {"prompt": prompt, "completion": answer}


def _groups(path: Path, records: list[RawRecord], group_by: str | None, fmt: str) -> dict[str, str]:
    """data.group_by: each row's value of that field (a row without it: "(none)"); a field no row has stops."""
    if group_by is None:
        return {}
    if fmt == FLAT_TURNS or not any(isinstance(r.fields, dict) and group_by in r.fields for r in records):
        fields = list(dict.fromkeys(str(k) for r in records if isinstance(r.fields, dict) for k in r.fields))
        raise TunesmithError(f"data.group_by names {group_by!r}, but no row has that field"
                             + (" (a flat list of turns has no per-conversation fields)" if fmt == FLAT_TURNS else ""),
                             where=str(path), problems=[f"the rows' fields: {', '.join(fields) or 'none'}"],
                             fix="name one of the rows' fields, or leave data.group_by unset")
    return {r.location: " ".join(str(r.fields.get(group_by, "(none)")).split()) or "(none)" for r in records
            if isinstance(r.fields, dict)}


def unused_fields(fmt: str, rows: list[Any]) -> dict[str, tuple[int, tuple[str, ...]]]:
    """Fields the rows have that the format does not read: field -> (rows with it, up to 3 distinct values)."""
    return readers.unused_fields(rows, lambda row: _used(fmt, row))


def _used(fmt: str, row: dict) -> set[str]:
    offered = {k for k in ("tools", "functions") if k in row and fmt not in (exports.CHATGPT, exports.CLAUDE)}
    return _read_fields(fmt, row) | offered


def _read_fields(fmt: str, row: dict) -> set[str]:
    if fmt == "function_calls":
        return {k for k in (_question_field(row), calls.answer_calls_field(row)) if k} | \
            {k for k in row if _norm(k) == "system"}
    if fmt in ("alpaca", "prompt_completion"):
        extra = {k for k in row if _norm(k) in ("system", "history")}  # read, even where empty
        try:
            thought = _reasoning_field(row)
        except TypeError:  # two reasoning fields: the row is skipped as malformed, saying so
            thought = None
        return {k for k in (*(single_turn_fields(row)[0] or ()), *extra, thought) if k}
    if fmt == "numbered_turns":
        user, assistant, _ = _numbered_columns(row) or ("", "", 0)
        return {k for k in row if (m := _NUMBERED.match(str(k).strip())) and m.group(1) in (user, assistant)}
    if fmt in ("messages", "sharegpt"):
        return {"messages" if fmt == "messages" else "conversations", *(k for k in row if _norm(k) == "system")}
    # an app's export: the rest of a conversation's record is its metadata (title, times, ids), never text to train
    return {"text": {"text"}, "segments": {"segments"},
            FLAT_TURNS: {"role", "content"}}.get(fmt, set(row))



def load(path: Path, *, format: str = "auto", roles: Mapping[str, str] | None = None,
         columns: Mapping[str, str] | None = None, system: str | None = None,
         encoding: str = "auto", group_by: str | None = None) -> ReadResult:
    """Read one file and convert every row; unusable rows are skipped and counted, never dropped silently.

    >>> load(Path("corpus.json"), roles={"therapist": "assistant"}).format  # doctest: +SKIP
    'flat_turns'
    """
    raw, skipped, enc = readers.read(path, encoding)
    _check_has_rows(path, raw, skipped, format)
    unparsed = len(skipped)
    described = llamafactory.describe(path)
    if described is not None and (described.ranking or described.kto_tag):
        kto = described.kto_tag is not None
        raise TunesmithError(f"these rows hold {'rated answers' if kto else 'preference pairs'}: {described.line()} "
                             f"says {f'kto_tag: {described.kto_tag}' if kto else 'ranking: true'}", where=str(path),
                             fix=f"train on it with --set train.objective={'kto' if kto else 'dpo (or orpo, simpo)'}"
                                 ", given on its own (a run's files are all preference data or all instructions); "
                                 "`tunesmith inspect` shows how it reads")
    columns, roles = _with_described(described, columns or {}, roles or {})
    records = [RawRecord(r.location, _rename(r.fields, columns)) for r in raw]
    fmt, votes = _choose_format(path, records, format)
    if fmt == chatlog.CHAT_LOG:
        return _load_chat_log(path, records, skipped, len(raw) + unparsed, enc, votes, roles, system, group_by)
    usable, turns_by_row, fitted = _convert(records, fmt, format, skipped)
    roles_seen = Counter(str(role).strip().lower() for _, turns in turns_by_row for role, *_ in turns)
    roles_seen.update(str(r.fields["role"]).strip().lower() for r in usable)
    roles_seen.pop("text", None), roles_seen.pop(SEGMENT, None), roles_seen.pop(CALL, None)
    mapping = _role_map(roles_seen, roles, path)
    mapping.update({"text": "text", SEGMENT: SEGMENT, CALL: CALL})
    if fmt == FLAT_TURNS:
        turns_by_row = _pair_flat_turns([RawRecord(r.location, {**r.fields, "_role": mapping[
            str(r.fields["role"]).strip().lower()]}) for r in usable])
    groups = _groups(path, records, group_by, fmt)
    tools = {r.location: calls.tools_field(r.fields) for r in records}
    conversations, part_lists = [], 0
    for location, turns in turns_by_row:
        try:
            mapped = [(mapping[str(role).strip().lower()], content, *weight) for role, content, *weight in turns]
            conversations.append(replace(validate(mapped, location, system, tools.get(location)),
                                         group=groups.get(location)))
            part_lists += sum(isinstance(turn[1], list) for turn in mapped)
        except BadRow as err:
            skipped.append(Skip(location, str(err), err.kind))
    # The unit counted is a conversation: for a flat turn list that is a group of turns, otherwise a record.
    rows = len(records) + unparsed - (len(usable) - len(turns_by_row) if fmt == FLAT_TURNS else 0)
    # Lines the reader could not parse are records of the file too: "4 records -> 2 usable, 2 skipped" adds up.
    return ReadResult(path, enc, fmt, tuple(conversations), tuple(skipped), rows_read=rows,
                      records=len(raw) + unparsed, evidence=dict(votes),
                      roles=dict(sorted((r, mapping[r]) for r in roles_seen)) if fmt in NAMED_ROLES else {},
                      unused={k: v for k, v in unused_fields(fmt, fitted).items() if k != group_by},
                      text_parts=part_lists,
                      set_aside=exports.set_aside(fmt, fitted) if fmt in (exports.CHATGPT, exports.CLAUDE) else {},
                      described_by=described.line() if described is not None else "")


def _convert(records: list[RawRecord], fmt: str, asked: str, skipped: list[Skip]
             ) -> tuple[list[RawRecord], list[tuple[str, Turns]], list[Any]]:
    """Each record in the format's turns (a flat turn list's records kept whole, paired later); one that does
    not fit or does not convert is a Skip. Returns (flat turn records, (location, turns) per row, fitted rows)."""
    fits: Callable[[Any], bool] = _is_flat_turn if fmt == FLAT_TURNS else FORMATS[fmt][0]
    usable, turns_by_row, fitted = [], [], []
    for rec in records:
        if not fits(rec.fields):
            of = "the other rows" if asked == "auto" else "--format / data.format"
            skipped.append(Skip(rec.location, f"does not fit the {fmt} format of {of}", "wrong_format"))
            continue
        fitted.append(rec.fields)
        if fmt == FLAT_TURNS:
            usable.append(rec)
            continue
        try:
            turns_by_row.append((rec.location, FORMATS[fmt][1](rec.fields)))
        except (KeyError, TypeError, AttributeError) as err:
            skipped.append(Skip(rec.location, f"malformed {fmt} row ({type(err).__name__}: {err})", "malformed"))
    return usable, turns_by_row, fitted


def _with_described(described: llamafactory.Description | None, columns: Mapping[str, str],
                    roles: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """data.columns and data.roles with what a dataset_info.json entry says; the config's own win."""
    if described is None:
        return dict(columns), dict(roles)
    return {**described.columns, **columns}, {**described.roles, **roles}


def _load_chat_log(path: Path, records: list[RawRecord], skipped: list[Skip], stored: int, enc: str, votes: Counter,
                   roles: Mapping[str, str], system: str | None, group_by: str | None) -> ReadResult:
    """A chat log (data/chatlog.py): each person mapped to a side, then the messages grouped into conversations;
    the unit counted is a conversation, as for a flat list of turns."""
    if group_by is not None:
        raise TunesmithError(f"data.group_by names {group_by!r}, but a chat log has no per-conversation fields",
                             where=str(path), fix="leave data.group_by unset")
    fitted = []
    for rec in records:
        if (message := chatlog.canonical(rec)) is not None:
            fitted.append(message)
        else:
            skipped.append(Skip(rec.location, "does not fit the chat_log format of the other rows", "wrong_format"))
    sides = _speaker_sides(Counter(str(r.fields["user"]) for r in fitted if r.fields["user"] is not None), roles,
                           path)
    turns_by_conv, aside = chatlog.conversations(fitted, sides)
    conversations = []
    for location, turns in turns_by_conv:
        try:
            conversations.append(validate(turns, location, system))
        except BadRow as err:
            skipped.append(Skip(location, str(err), err.kind))
    return ReadResult(path, enc, chatlog.CHAT_LOG, tuple(conversations), tuple(skipped),
                      rows_read=len(conversations) + len(skipped), records=stored, evidence=dict(votes),
                      roles=dict(sorted(sides.items())), set_aside={k: n for k, n in aside.items() if n})


def _speaker_sides(speakers: Counter, roles: Mapping[str, str], path: Path) -> dict[str, str]:
    """Each person in a chat log -> assistant (named so in data.roles: whose replies the model learns) or user
    (everyone else); a log where no one is named so stops with the people and the flag."""
    named = {str(k).strip().lower(): v for k, v in roles.items()}
    wrong = sorted({v for v in named.values() if v not in ("user", "assistant")})
    if wrong:
        raise TunesmithError(f"in a chat log a person is the user or the assistant side, not {', '.join(wrong)}",
                             where=str(path), fix="map people with --role NAME=assistant (and NAME=user)")
    sides = {s: named.get(s.strip().lower(), "user") for s in speakers}
    if "assistant" not in sides.values():
        people = ", ".join(f"{s} ({n}x)" for s, n in speakers.most_common(8)) + (" ..." if len(speakers) > 8 else "")
        first = speakers.most_common(1)[0][0] if speakers else "NAME"
        raise TunesmithError(f"a chat log of {len(speakers)} {'person' if len(speakers) == 1 else 'people'}: whose "
                             "replies should the model learn? "
                             f"People: {people}", where=str(path),
                             fix="name that person as the assistant (everyone else is the user side)",
                             suggest={"roles": {first: "assistant"}})
    return sides
