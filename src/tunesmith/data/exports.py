"""The chat apps' own data exports, read as conversations: ChatGPT's `conversations.json` (Settings -> Data controls
-> Export) and Claude's (Settings -> Privacy -> Export data). People who want a model that writes as their chats
do have these files, and neither is a training format:

- ChatGPT keeps each conversation as a tree (`mapping`: message id -> message, parent, children); editing a
  question or regenerating an answer starts a branch. The turns read are the branch the conversation ended on
  (`current_node`, followed by its parents to the root), the one its app shows.
- Claude keeps a list (`chat_messages`, sender human/assistant); a message's text is its `content` parts' texts,
  else its `text`.

What a reader passes over on purpose is counted, never dropped silently (`set_aside`, printed by inspect): the other
branches, messages the app hides (an empty system message, ChatGPT's custom instructions), the model's reasoning
(ChatGPT's "thoughts" / "reasoning_recap" messages, Claude's "thinking" parts) and attachments' extracted text. A
tool call or a tool's output makes the turn a TOOL turn (the row is skipped as function calling); an image or audio
part is not text (skipped as not_text), as in every other format.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tunesmith.format_names import TOOL

CHATGPT, CLAUDE = "chatgpt_export", "claude_export"
_REASONING = ("thoughts", "reasoning_recap")  # ChatGPT's o-series reasoning, shown collapsed above the answer
# what set_aside counts, as inspect prints it
BRANCHES = "messages on other branches (an edited question or a regenerated answer)"
HIDDEN = "messages the app hides (an empty system message, custom instructions)"
REASONING = "the model's reasoning (shown collapsed in the app; not the answer)"
ATTACHMENTS = "attachments' extracted text"


def is_chatgpt(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("mapping"), dict) and "current_node" in row


def is_claude(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("chat_messages"), list) and all(
        isinstance(m, dict) and "sender" in m for m in row["chat_messages"])


def _branch(row: dict) -> list[dict]:
    """The messages from the root to `current_node`, in order (nodes without a message, the root, left out)."""
    nodes, path, node_id = row["mapping"], [], row["current_node"]
    while node_id is not None:
        if len(path) > len(nodes):
            raise TypeError(f"the mapping's parent links loop (at node {node_id!r})")
        if node_id not in nodes:
            raise TypeError(f"message {node_id!r} (current_node or a parent) is not in its mapping")
        node = nodes[node_id]
        path.append(node)
        node_id = node.get("parent")
    return [n["message"] for n in reversed(path) if n.get("message")]


def _chatgpt_kind(msg: dict) -> str:
    """'hidden', 'reasoning', 'tool' or 'turn': what a ChatGPT message is to a conversation of turns."""
    content, meta = msg["content"], msg.get("metadata") or {}
    kind = content.get("content_type")
    if meta.get("is_visually_hidden_from_conversation") or kind == "user_editable_context" or (
            msg["author"]["role"] == "system" and not any(p for p in content.get("parts") or () if p)):
        return "hidden"
    if kind in _REASONING:
        return "reasoning"
    if msg["author"]["role"] == "tool" or msg.get("recipient", "all") != "all":
        return "tool"
    return "turn"


def chatgpt_turns(row: dict) -> list[tuple[Any, Any]]:
    """(role, content) of each message on the branch the conversation ended on; content is one text for a "text"
    message, else its parts as text parts (a non-text part, an image, fails as not_text in validate)."""
    turns: list[tuple[Any, Any]] = []
    for msg in _branch(row):
        kind = _chatgpt_kind(msg)
        if kind == "tool":
            turns.append((TOOL, None))
        elif kind == "turn":
            turns.append((msg["author"]["role"], _chatgpt_content(msg["content"])))
    return turns


def _chatgpt_content(content: dict) -> Any:
    """A "text" message's parts as one text; any other message's parts as text parts (strings) and the parts they
    are not (an image's content_type), which validate skips as not_text."""
    parts = content.get("parts")
    if not isinstance(parts, list):  # code, execution output, ...: nothing a turn's text is made of
        return [{"type": content.get("content_type", "unknown")}]
    return _text_or_parts([{"type": "text", "text": p} if isinstance(p, str) else
                           {"type": p.get("content_type", "unknown") if isinstance(p, dict) else type(p).__name__}
                           for p in parts])


def _text_or_parts(parts: list) -> Any:
    """Parts that are all text as one text (these apps' own way to write a turn); else the parts as they are."""
    if parts and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                     for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def claude_turns(row: dict) -> list[tuple[Any, Any]]:
    """(sender, text) of each message: its content's text parts joined (thinking parts left out), else `text`; a
    tool use or tool result makes it a TOOL turn."""
    turns: list[tuple[Any, Any]] = []
    for msg in row["chat_messages"]:
        parts = [p for p in msg.get("content") or () if not (isinstance(p, dict) and p.get("type") == "thinking")]
        if any(isinstance(p, dict) and p.get("type") in ("tool_use", "tool_result") for p in parts):
            turns.append((TOOL, None))
        else:
            turns.append((msg["sender"], _text_or_parts(parts) if parts else msg.get("text")))
    return turns


def set_aside(fmt: str, rows: list[Any]) -> dict[str, int]:
    """What the reader passed over on purpose in these rows, by what it is (only what there was)."""
    counts: Counter = Counter()
    for row in rows:
        try:
            counts.update(_chatgpt_aside(row) if fmt == CHATGPT else _claude_aside(row))
        except (KeyError, TypeError, AttributeError):
            continue  # a malformed row is skipped as such, with its reason
    return {k: n for k, n in counts.items() if n}


def _chatgpt_aside(row: dict) -> Counter:
    branch = _branch(row)
    kinds = Counter(_chatgpt_kind(m) for m in branch)
    with_message = sum(1 for n in row["mapping"].values() if n.get("message"))
    return Counter({BRANCHES: with_message - len(branch), HIDDEN: kinds["hidden"], REASONING: kinds["reasoning"]})


def _claude_aside(row: dict) -> Counter:
    msgs = row["chat_messages"]
    thinking = sum(1 for m in msgs for p in m.get("content") or ()
                   if isinstance(p, dict) and p.get("type") == "thinking")
    attached = sum(1 for m in msgs for a in m.get("attachments") or ()
                   if isinstance(a, dict) and a.get("extracted_content"))
    return Counter({REASONING: thinking, ATTACHMENTS: attached})
