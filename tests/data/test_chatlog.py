"""Chat logs (data/chatlog.py): KakaoTalk's .txt exports (PC, Android, iOS) and its .csv, read as conversations with
one person as the assistant side; what is set aside is counted. The logs are written here in the apps' layouts
(texts ours)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tunesmith
from tunesmith.data import chatlog, formats
from tunesmith.errors import TunesmithError

PC = """민지 님과 카카오톡 대화
저장한 날짜 : 2024-01-02 10:00:00

--------------- 2024년 1월 1일 월요일 ---------------
민지님이 들어왔습니다.
[지훈] [오후 3:04] 요즘 잠을 잘 못 자
[민지] [오후 3:05] 헐 왜?
[민지] [오후 3:05] 무슨 일 있어?
[지훈] [오후 3:06] 시험 때문에 그런가 봐
걱정이 많아
[민지] [오후 3:06] 사진
[민지] [오후 3:07] 많이 힘들겠다. 언제 시험이야?
--------------- 2024년 1월 2일 화요일 ---------------
[민지] [오전 9:00] 잘 잤어?
[지훈] [오전 9:01] 응 조금
[민지] [오전 9:02] 다행이다
[지훈] [오전 9:03] 이모티콘
"""

ANDROID = """민지 님과 카카오톡 대화
저장한 날짜 : 2024년 1월 2일 오전 10:00

2024년 1월 1일 오후 3:04
2024년 1월 1일 오후 3:04, 지훈 : 요즘 잠을 잘 못 자
2024년 1월 1일 오후 3:05, 민지 : 헐 왜?
2024년 1월 1일 오후 3:06, 지훈님이 나갔습니다.
2024년 1월 1일 오후 5:30, 지훈 : 아까 말한 거
시험 때문이야
2024년 1월 1일 오후 5:31, 민지 : 그랬구나
2024년 1월 2일 오전 12:10
2024년 1월 2일 오전 12:10, 지훈 : 잘 자
"""

IOS = """민지 님과 카카오톡 대화
저장한 날짜 : 2024. 1. 2. 오전 10:00

2024년 1월 1일 월요일
2024. 1. 1. 오후 12:04, 지훈 : 요즘 잠을 잘 못 자
2024. 1. 1. 오후 12:05, 민지 : 헐 왜?
"""


def _read(tmp_path: Path, name: str, text: str, **kw):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return formats.load(path, roles={"민지": "assistant"}, **kw)


def _turns(res) -> list[list[tuple[str, str]]]:
    return [[(m.role, m.content) for m in c.messages] for c in res.conversations]


def test_the_pc_export_reads_as_conversations_split_where_the_chat_went_quiet(tmp_path: Path):
    """One person's messages in a row are one turn; the next day is a new conversation; its opening message by
    the answering side, the photo and emoticon placeholders and the join notice are set aside, and counted."""
    res = _read(tmp_path, "talk.txt", PC)
    assert res.format == chatlog.CHAT_LOG and res.skipped == () and res.records == 11
    assert _turns(res) == [[("user", "요즘 잠을 잘 못 자"), ("assistant", "헐 왜?\n무슨 일 있어?"),
                            ("user", "시험 때문에 그런가 봐\n걱정이 많아"), ("assistant", "많이 힘들겠다. 언제 시험이야?")],
                           [("user", "응 조금"), ("assistant", "다행이다")]]
    assert [c.source for c in res.conversations] == ["talk.txt:6", "talk.txt:14"]
    assert res.set_aside == {chatlog.NOTICES: 1, chatlog.PLACEHOLDERS: 2, chatlog.OPENINGS: 1}
    assert res.roles == {"민지": "assistant", "지훈": "user"} and res.rows_read == 2


def test_the_phone_exports_read_with_their_own_stamps(tmp_path: Path):
    """Android: the day lines are not messages, a message goes on over the next line, a notice has a stamp, a
    pause of 2 h 24 min splits (3:06 -> 5:30 pm), 12:10 am is just after midnight; iOS's dotted dates."""
    res = _read(tmp_path, "android.txt", ANDROID)
    assert _turns(res) == [[("user", "요즘 잠을 잘 못 자"), ("assistant", "헐 왜?")],
                           [("user", "아까 말한 거\n시험 때문이야"), ("assistant", "그랬구나")]]
    assert res.set_aside == {chatlog.NOTICES: 1, chatlog.UNANSWERED: 1} and res.skipped == ()  # 잘 자: unanswered
    records = chatlog.kakao_records(Path("android.txt"), ANDROID)
    assert records is not None and records[-1].fields == {"date": "2024-01-02T00:10", "user": "지훈", "message": "잘 자"}
    ios = chatlog.kakao_records(Path("ios.txt"), IOS)
    assert [r.fields["date"] for r in ios or []] == ["2024-01-01T12:04", "2024-01-01T12:05"]
    assert _turns(_read(tmp_path, "ios.txt", IOS)) == [[("user", "요즘 잠을 잘 못 자"), ("assistant", "헐 왜?")]]


def test_english_exports_and_24_hour_clocks_read_the_same(tmp_path: Path):
    """The apps in English ("[John] [2:30 PM]" under "----- Monday, January 1, 2024 -----"; "January 1, 2024, 11:59
    PM, John : ..."), and a 24-hour clock ("2024. 1. 1. 15:04, 지훈 : ..."): the same log and times."""
    pc = ("Mina with KakaoTalk Chats\n--------------- Monday, January 1, 2024 ---------------\n"
          "John joined this chatroom.\n[John] [2:30 PM] I can't sleep\n[Mina] [2:31 PM] Since when?\n"
          "[John] [12:05 AM] Photo\n")
    phone = ("January 1, 2024\nJanuary 1, 2024, 11:59 PM, John : I can't sleep\n"
             "January 2, 2024, 12:01 AM, Mina : Since when?\n")
    h24 = "2024. 1. 1. 15:04, John : I can't sleep\n2024. 1. 1. 15:05, Mina : Since when?\n"
    for name, text, times in (("pc.txt", pc, ["2024-01-01T14:30", "2024-01-01T14:31"]),
                              ("phone.txt", phone, ["2024-01-01T23:59", "2024-01-02T00:01"]),
                              ("h24.txt", h24, ["2024-01-01T15:04", "2024-01-01T15:05"])):
        records = chatlog.kakao_records(Path(name), text) or []
        assert [r.fields["date"] for r in records if r.fields["user"]][:2] == times, name
        res = formats.load(_write(tmp_path / name, text), roles={"Mina": "assistant"})
        assert _turns(res) == [[("user", "I can't sleep"), ("assistant", "Since when?")]], name
    assert formats.load(tmp_path / "pc.txt", roles={"mina": "assistant"}).set_aside == {
        chatlog.NOTICES: 1, chatlog.PLACEHOLDERS: 1}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_csv_export_is_the_same_log(tmp_path: Path):
    text = ("Date,User,Message\n2024-01-01 15:04:00,지훈,요즘 잠을 잘 못 자\n2024-01-01 15:05:00,민지,헐 왜?\n"
            "2024-01-01 15:06:00,민지,사진\n2024-01-01 18:00:00,지훈,또 나야\n2024-01-01 18:01:00,민지,응 말해\n")
    res = _read(tmp_path, "talk.csv", text)
    assert res.format == chatlog.CHAT_LOG
    assert _turns(res) == [[("user", "요즘 잠을 잘 못 자"), ("assistant", "헐 왜?")],
                           [("user", "또 나야"), ("assistant", "응 말해")]]
    assert res.set_aside == {chatlog.PLACEHOLDERS: 1}


def test_a_log_with_no_one_named_as_the_assistant_stops_with_the_people_and_the_flag(tmp_path: Path):
    path = tmp_path / "talk.txt"
    path.write_text(PC, encoding="utf-8")
    with pytest.raises(TunesmithError, match=r"a chat log of 2 people: whose replies should the model learn\? "
                                             r"People: 민지 \(6x\), 지훈 \(4x\)") as err:
        formats.load(path)
    assert err.value.suggest == {"roles": {"민지": "assistant"}}
    with pytest.raises(TunesmithError, match="the user or the assistant side, not system"):
        formats.load(path, roles={"민지": "system"})
    out = tunesmith("inspect", str(path))
    assert out.returncode == 2 and "--role '민지=assistant'" in out.stderr and "Traceback" not in out.stderr
    shown = tunesmith("inspect", str(path), "--role", "민지=assistant")
    assert shown.returncode == 0, shown.stderr
    assert "format chat_log" in shown.stdout and f"not read as turns: 2 {chatlog.PLACEHOLDERS}" in shown.stdout


def test_in_a_group_chat_each_message_of_the_crowded_side_names_who_wrote_it(tmp_path: Path):
    text = ("--------------- 2024년 1월 1일 월요일 ---------------\n[지훈] [오후 3:04] 다들 뭐 해?\n"
            "[서연] [오후 3:04] 과제 중\n[민지] [오후 3:05] 나도 과제\n[지훈] [오후 3:06] 같이 하자\n")
    res = _read(tmp_path, "group.txt", text)
    assert _turns(res) == [[("user", "지훈: 다들 뭐 해?\n서연: 과제 중"), ("assistant", "나도 과제")]]
    assert res.set_aside == {chatlog.UNANSWERED: 1}
    assert res.roles == {"민지": "assistant", "서연": "user", "지훈": "user"}


def test_plain_text_with_a_stray_chat_line_stays_plain_text(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("첫 줄입니다.\n[지훈] [오후 3:04] 이 한 줄만 채팅처럼 보입니다.\n셋째 줄.\n", encoding="utf-8")
    res = formats.load(path)
    assert res.format == "text" and len(res.conversations) == 3
