"""The chat apps' data exports (data/exports.py): ChatGPT's conversation trees and Claude's message lists, read as
the conversations their apps show, with what is passed over counted. The files are written here in the exports'
own shapes (fields as the apps write them; texts ours)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import tunesmith, write_json
from tunesmith.data import exports, formats


def _msg(mid: str, role: str, parts: list | None = None, *, kind: str = "text", recipient: str = "all",
         hidden: bool = False, **content: Any) -> dict:
    return {"id": mid, "author": {"role": role, "name": None, "metadata": {}}, "create_time": 1.7e9,
            "content": {"content_type": kind, **({"parts": parts} if parts is not None else {}), **content},
            "status": "finished_successfully", "end_turn": True, "weight": 1.0, "recipient": recipient,
            "metadata": {"is_visually_hidden_from_conversation": True} if hidden else {}}


def _chatgpt(cid: str, messages: list[tuple[str, str, dict]], current: str) -> dict:
    """A conversation record: (id, parent id, message) each, under a root node without a message."""
    mapping: dict[str, dict] = {"root": {"id": "root", "message": None, "parent": None, "children": []}}
    for mid, parent, msg in messages:
        mapping[mid] = {"id": mid, "message": msg, "parent": parent, "children": []}
        mapping[parent]["children"].append(mid)
    return {"title": f"chat {cid}", "create_time": 1.7e9, "update_time": 1.7e9, "mapping": mapping,
            "moderation_results": [], "current_node": current, "plugin_ids": None, "conversation_id": cid,
            "id": cid}


def _texts(conv) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in conv.messages]


def test_chatgpt_reads_the_branch_each_conversation_ended_on_and_counts_what_it_passed_over(tmp_path: Path):
    """The regenerated answer current_node points at is read, the first answer is not; the hidden system message,
    the custom instructions and the reasoning are not turns; each is counted. Metadata fields are not listed as
    unused: they are not text."""
    edited = _chatgpt("c1", [
        ("sys", "root", _msg("sys", "system", [""])),
        ("ctx", "sys", _msg("ctx", "user", kind="user_editable_context", hidden=True, user_profile="a student")),
        ("u1", "ctx", _msg("u1", "user", ["I can't sleep lately."])),
        ("a1", "u1", _msg("a1", "assistant", ["That sounds tiring."])),
        ("a1b", "u1", _msg("a1b", "assistant", ["Not sleeping wears you down. ", "Since when?"])),
        ("u2", "a1b", _msg("u2", "user", ["About a month."])),
        ("t2", "u2", _msg("t2", "assistant", kind="thoughts", thoughts=[{"summary": "think", "content": "..."}])),
        ("a2", "t2", _msg("a2", "assistant", ["A month is long. What keeps you up?"])),
    ], current="a2")
    plain = _chatgpt("c2", [("u1", "root", _msg("u1", "user", ["Hi"])),
                            ("a1", "u1", _msg("a1", "assistant", ["Hello!"]))], current="a1")
    res = formats.load(write_json(tmp_path / "conversations.json", [edited, plain]))
    assert res.format == exports.CHATGPT and res.skipped == ()
    assert [_texts(c) for c in res.conversations] == [
        [("user", "I can't sleep lately."), ("assistant", "Not sleeping wears you down. Since when?"),
         ("user", "About a month."), ("assistant", "A month is long. What keeps you up?")],
        [("user", "Hi"), ("assistant", "Hello!")]]
    assert res.set_aside == {exports.BRANCHES: 1, exports.HIDDEN: 2, exports.REASONING: 1}
    assert res.unused == {} and res.roles == {"assistant": "assistant", "user": "user"}


def test_chatgpt_rows_with_tools_images_or_broken_links_are_skipped_with_their_kind(tmp_path: Path):
    tool = _chatgpt("t", [("u", "root", _msg("u", "user", ["plot it"])),
                          ("c", "u", _msg("c", "assistant", kind="code", recipient="python", text="plot()")),
                          ("o", "c", _msg("o", "tool", kind="execution_output", text="ok")),
                          ("a", "o", _msg("a", "assistant", ["Here it is."]))], current="a")
    image = _chatgpt("i", [("u", "root", _msg("u", "user", [{"content_type": "image_asset_pointer"}, "what is it?"],
                                               kind="multimodal_text")),
                           ("a", "u", _msg("a", "assistant", ["A cat."]))], current="a")
    loop = _chatgpt("l", [("u", "root", _msg("u", "user", ["x"])), ("a", "u", _msg("a", "assistant", ["y"]))],
                    current="a")
    loop["mapping"]["root"]["parent"] = "a"
    missing = _chatgpt("m", [("u", "root", _msg("u", "user", ["x"]))], current="gone")
    res = formats.load(write_json(tmp_path / "conversations.json", [tool, image, loop, missing]))
    assert res.format == exports.CHATGPT and res.conversations == ()
    kinds = {s.location: s.kind for s in res.skipped}
    assert kinds == {"conversations.json[0]": "tool_call", "conversations.json[1]": "not_text",
                     "conversations.json[2]": "malformed", "conversations.json[3]": "malformed"}
    reasons = {s.location[-2]: s.reason for s in res.skipped}
    assert "a part of type 'image_asset_pointer'" in reasons["1"]
    assert "loop" in reasons["2"] and "'gone'" in reasons["3"]
    assert res.rows_read == 4


def test_claude_reads_text_parts_leaves_out_thinking_and_counts_attachments(tmp_path: Path):
    def message(sender: str, *content: dict, text: str = "", attachments: tuple = ()) -> dict:
        return {"uuid": "u", "text": text, "content": list(content), "sender": sender, "created_at": "2026-01-01",
                "updated_at": "2026-01-01", "attachments": list(attachments), "files": []}

    part = lambda t: {"type": "text", "text": t, "citations": []}  # noqa: E731
    rows = [{"uuid": "c1", "name": "sleep", "created_at": "2026-01-01", "updated_at": "2026-01-01",
             "account": {"uuid": "me"}, "chat_messages": [
                 message("human", part("I can't sleep."),
                         attachments=({"file_name": "diary.txt", "extracted_content": "day 1 ..."},)),
                 message("assistant", {"type": "thinking", "thinking": "be kind"}, part("That is hard. "),
                         part("Since when?"))]},
            {"uuid": "c2", "name": "old", "chat_messages": [message("human", text="Hi"),
                                                            message("assistant", text="Hello!")]},
            {"uuid": "c3", "name": "search", "chat_messages": [
                message("human", part("look it up")), message("assistant", {"type": "tool_use", "name": "web"}),
                message("assistant", part("Found it."))]}]
    res = formats.load(write_json(tmp_path / "conversations.json", rows))
    assert res.format == exports.CLAUDE
    assert [_texts(c) for c in res.conversations] == [[("user", "I can't sleep."),
                                                       ("assistant", "That is hard. Since when?")],
                                                      [("user", "Hi"), ("assistant", "Hello!")]]
    assert [s.kind for s in res.skipped] == ["tool_call"]
    assert res.set_aside == {exports.REASONING: 1, exports.ATTACHMENTS: 1}
    assert res.roles == {"assistant": "assistant", "human": "user", "tool": "tool"}  # the tool use, a TOOL turn


def test_inspect_names_the_export_and_what_it_did_not_read(tmp_path: Path):
    conv = _chatgpt("c", [("s", "root", _msg("s", "system", [""])), ("u", "s", _msg("u", "user", ["Hi"])),
                          ("a", "u", _msg("a", "assistant", ["Hello!"])), ("b", "u", _msg("b", "assistant", ["Hey"]))],
                    current="b")
    path = write_json(tmp_path / "conversations.json", [conv])
    out = tunesmith("inspect", str(path))
    assert out.returncode == 0, out.stderr
    assert "format chatgpt_export" in out.stdout and "1 records -> 1 usable, 0 skipped" in out.stdout
    assert f"not read as turns: 1 {exports.BRANCHES}" in out.stdout
    assert f"not read as turns: 1 {exports.HIDDEN}" in out.stdout and "[assistant] Hey" in out.stdout
