"""LLaMA-Factory's dataset_info.json beside a data file: its columns and tags read the file as LLaMA-Factory does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_json
from tunesmith.data import formats, llamafactory
from tunesmith.errors import TunesmithError


def _info(folder: Path, entries: dict) -> None:
    (folder / llamafactory.INFO).write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")


def test_an_alpaca_entry_names_the_columns_of_a_korean_qa_file(tmp_path: Path):
    path = write_json(tmp_path / "qa.json", [{"질문": f"q{i}", "답": f"a{i}", "지시": "친절하게"} for i in range(3)])
    _info(tmp_path, {"other": {"file_name": "x.json"},
                     "my_qa": {"file_name": "qa.json", "columns": {"prompt": "질문", "response": "답", "system": "지시"}}})
    res = formats.load(path)
    assert res.format == "alpaca" and len(res.conversations) == 3 and res.unused == {}
    assert [(m.role, m.content) for m in res.conversations[0].messages] == [
        ("system", "친절하게"), ("user", "q0"), ("assistant", "a0")]
    assert res.described_by == (f"described by {tmp_path / llamafactory.INFO} (LLaMA-Factory), entry 'my_qa': "
                                "columns instruction=질문, output=답, system=지시")


def test_a_sharegpt_entry_names_the_turn_keys_and_roles_and_what_it_does_not_read(tmp_path: Path):
    turns = lambda i: [{"speaker": "client", "text": f"q{i}"}, {"speaker": "counselor", "text": f"a{i}"}]  # noqa: E731
    path = write_json(tmp_path / "chat.json", [{"dialog": turns(i), "funcs": "[]", "pics": []} for i in range(2)])
    _info(tmp_path, {"chat": {"file_name": "chat.json", "formatting": "sharegpt",
                              "columns": {"messages": "dialog", "tools": "funcs", "images": "pics"},
                              "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "client",
                                       "assistant_tag": "counselor", "observation_tag": "observation"}}})
    res = formats.load(path)
    assert res.format == "sharegpt" and len(res.conversations) == 2
    assert res.roles == {"client": "user", "counselor": "assistant"}
    assert res.described_by.endswith("columns conversations=dialog, tools=funcs, role=speaker, content=text; roles "
                                     "client=user, counselor=assistant, observation=tool; not read: its images "
                                     "column 'pics'")
    # the config's own settings win over the entry's
    mine = formats.load(path, roles={"counselor": "user", "client": "assistant"})
    assert mine.roles == {"client": "assistant", "counselor": "user"}


def test_entries_that_do_not_describe_the_file_change_nothing_and_a_broken_info_file_says_so(tmp_path: Path):
    path = write_json(tmp_path / "d.json", [{"instruction": "q", "output": "a"}])
    _info(tmp_path, {"elsewhere": {"file_name": "other.json"}})
    assert formats.load(path).described_by == ""
    (tmp_path / llamafactory.INFO).write_text("{not json", encoding="utf-8")
    with pytest.raises(TunesmithError) as err:
        formats.load(path)
    assert err.value.where == str(tmp_path / llamafactory.INFO) and "columns of d.json" in err.value.what


def test_a_folder_named_as_the_file_name_describes_the_files_in_it(tmp_path: Path):
    """LLaMA-Factory's file_name may name a folder of files: dataset_info.json is then one folder up; a walk of
    the data folder passes dataset_info.json over (it describes the data, it is not data)."""
    (tmp_path / "parts").mkdir()
    path = write_json(tmp_path / "parts" / "a.json", [{"q": "x", "a": "y"}])
    _info(tmp_path, {"parts": {"file_name": "parts", "columns": {"prompt": "q", "response": "a"}}})
    res = formats.load(path)
    assert res.format == "alpaca" and [m.content for m in res.conversations[0].messages] == ["x", "y"]
    from tunesmith.data import readers

    assert readers.expand(tmp_path) == [path]
    _info(tmp_path, {"parts": {"file_name": "other"}})
    assert llamafactory.describe(path) is None


def test_a_ranking_entry_names_the_fields_of_preference_pairs(tmp_path: Path):
    """LLaMA-Factory's preference data (ranking: true) with its own column names reads as pairs; its columns do
    not touch the SFT reader."""
    from tunesmith.data import preference

    rows = [{"질문": f"q{i}", "좋은답": f"good {i}", "나쁜답": f"bad {i}"} for i in range(4)]
    path = write_json(tmp_path / "pref.json", rows)
    _info(tmp_path, {"prefs": {"file_name": "pref.json", "ranking": True,
                               "columns": {"prompt": "질문", "chosen": "좋은답", "rejected": "나쁜답"}}})
    assert preference.looks_like_preferences(path)
    read = preference.load(path)
    assert read.format == "alpaca_ranking" and len(read.pairs) == 4 and read.unused == {}
    assert (read.pairs[0].prompt[-1].content, read.pairs[0].chosen, read.pairs[0].rejected) == ("q0", "good 0", "bad 0")
    assert read.described_by.endswith("entry 'prefs': columns instruction=질문, chosen=좋은답, rejected=나쁜답")
    with pytest.raises(TunesmithError) as err:  # among instructions (a folder of both): said, not misread
        formats.load(path)
    assert err.value.what.startswith("these rows hold preference pairs") and "objective=dpo" in err.value.fix


def test_a_kto_entry_makes_each_conversation_a_rated_answer(tmp_path: Path):
    """LLaMA-Factory's KTO data (sharegpt turns + a kto_tag column): the last turn is the answer, marked good or
    bad by the tag, the turns before it the prompt; among instructions it says what it holds."""
    from tunesmith.data import preference

    turn = lambda role, text: {"from": role, "value": text}  # noqa: E731
    rows = [{"conversations": [turn("human", f"q{i}"), turn("gpt", f"a{i}")], "tag": i % 2 == 0} for i in range(4)]
    path = write_json(tmp_path / "kto.json", rows)
    _info(tmp_path, {"kto": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {"kto_tag": "tag"}}})
    assert preference.looks_like_preferences(path)
    read = preference.load(path)
    assert read.format == "kto" and [(x.prompt[-1].content, x.completion, x.good) for x in read.rated] == [
        ("q0", "a0", True), ("q1", "a1", False), ("q2", "a2", True), ("q3", "a3", False)]
    with pytest.raises(TunesmithError) as err:
        formats.load(path)
    assert err.value.what.startswith("these rows hold rated answers") and "objective=kto" in err.value.fix
