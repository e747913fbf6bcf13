"""Chat logs: messages by named people with their times, as a messenger exports a chat room. KakaoTalk's "대화 내보내기"
writes a .txt (the PC app: `[이름] [오후 3:04] 메시지` under `----- 2024년 1월 1일 월요일 -----` lines; the phone
apps: `2024년 1월 1일 오후 3:04, 이름 : 메시지`, iOS `2024. 1. 1. 오후 3:04, 이름 : 메시지`; a 24-hour clock, and the apps in
English: `[John] [2:30 PM] ...`, `January 1, 2024, 2:30 PM, John : ...`) or, on a phone or a Mac, a .csv of Date,
User, Message. Either reads as one record per message, `{"date", "user", "message"}`, at the line it
starts on (a message of several lines is one record).

A log becomes conversations here (formats.load maps each person to a role first): a new conversation starts where
the chat went quiet for GAP or longer; one side's messages in a row are one turn, one message a line (in a group
chat each names who wrote it); a conversation's turns before the first question and after the last answer are set
aside, as are the apps' placeholders for what is not text (사진, 이모티콘, a deleted message) and their notices
(someone joined or left).
Everything set aside is counted (ReadResult.set_aside), never dropped silently.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunesmith.format_names import CHAT_LOG
from tunesmith.records import RawRecord

__all__ = ["CHAT_LOG", "canonical", "conversations", "fields_of", "kakao_records"]
GAP = datetime.timedelta(hours=1)  # a pause this long ends a conversation (chats resume hours or days later)
# what set_aside counts, as inspect prints it
PLACEHOLDERS = "messages that stand for a photo, emoticon, file or deleted message"
NOTICES = "the app's notices (someone joined, left, or a message was hidden)"
OPENINGS = "turns before a conversation's first question (the answering side spoke first)"
UNANSWERED = "turns after a conversation's last answer"

# Korean (오후 3:04, or 15:04) and English (3:04 PM) clocks and dates; the PC app's day lines set the day of the
# messages under them, the phone apps stamp each message; a stamp without "name : " is a notice.
_KO_TIME = r"(?:(?P<ampm>오전|오후) )?(?P<h>\d{1,2}):(?P<mi>\d{2})"
_EN_TIME = r"(?P<h>\d{1,2}):(?P<mi>\d{2}) (?P<ampm>AM|PM)"
_KO_DATE = r"(?P<y>\d{4})(?:년 |\. ?)(?P<mo>\d{1,2})(?:월 |\. ?)(?P<d>\d{1,2})(?:일|\.)"
_EN_DATE = r"(?P<month>[A-Z][a-z]+) (?P<d>\d{1,2}), (?P<y>\d{4})"
_CLOCKS = ((_KO_DATE, _KO_TIME), (_EN_DATE, _EN_TIME))
_MESSAGES = [re.compile(r"^\[(?P<user>[^\]]+)\] \[" + t + r"\] (?P<msg>.*)$") for _, t in _CLOCKS] + [
    re.compile(f"^{d},? {t}" + r", (?P<user>.+?) : (?P<msg>.*)$") for d, t in _CLOCKS]
_EVENTS = [re.compile(f"^{d},? {t}" + r"(?:,|:)? (?P<msg>.*)$") for d, t in _CLOCKS]
_PC_DAYS = [re.compile(r"^-{5,} " + _KO_DATE + r" .*-{5,}$"), re.compile(r"^-{5,} \w+, " + _EN_DATE + r" -{5,}$")]
_DAY_LINES = [re.compile(f"^{d}" + r"( [월화수목금토일]요일)?" + f"( {t})?$") for d, t in _CLOCKS[:1]] + [
    re.compile(r"^(\w+, )?" + _EN_DATE + f"( {_EN_TIME})?$")]  # the phone apps' line before each day's messages
_PLACEHOLDER = re.compile(r"^(사진|동영상|이모티콘|음성메시지|삭제된 메시지입니다\.|사진 \d+장|파일: .+|Photo|Video|Emoticon)$")
_NOTICE = re.compile(r"님이 (들어왔습니다|나갔습니다|.+님을 초대했습니다|.+님을 내보냈습니다)\.?$|"
                     r"^채팅방 관리자가 메시지를 가렸습니다\.$| (joined|left) this chatroom\.$")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


def _first(patterns: list[re.Pattern], line: str) -> re.Match | None:
    return next((m for p in patterns if (m := p.match(line))), None)


def kakao_records(path: Path, text: str) -> list[RawRecord] | None:
    """The messages of a KakaoTalk .txt export, or None when the text is not one (fewer than 2 message lines, or
    under a fifth of its non-blank lines)."""
    lines = text.split("\n")
    records: list[tuple[int, dict[str, Any]]] = []
    day: datetime.date | None = None
    starts = 0
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if m := _first(_PC_DAYS, line):
            day = _date(m)
        elif m := _first(_MESSAGES, line):
            when = _date(m) if "y" in m.groupdict() else day
            records.append((n, {"date": _stamp(when, m), "user": m["user"].strip(), "message": m["msg"]}))
            starts += 1
        elif m := _first(_EVENTS, line) or _NOTICE.search(line):  # a notice: no speaker
            records.append((n, {"date": None, "user": None, "message": m["msg"] if m.groupdict() else line}))
        elif records and not _first(_DAY_LINES, line):
            records[-1][1]["message"] += "\n" + line  # the message goes on over this line
    if starts < 2 or starts * 5 < sum(1 for line in lines if line.strip()):
        return None
    return [RawRecord(f"{path.name}:{n}", {**fields, "message": fields["message"].strip()}) for n, fields in records]


def _date(m: re.Match) -> datetime.date | None:
    groups = m.groupdict()
    name = groups.get("month")
    month = int(groups["mo"]) if groups.get("mo") else _MONTHS.index(name) + 1 if name in _MONTHS else 0
    try:
        return datetime.date(int(m["y"]), month, int(m["d"]))
    except ValueError:  # not a day of the calendar: the message keeps no time (and starts no conversation)
        return None


def _stamp(day: datetime.date | None, m: re.Match) -> str | None:
    """The message's time as ISO text (None before the PC export's first day line, or on a time that is none)."""
    hour, minute = int(m["h"]), int(m["mi"])
    if m["ampm"]:  # a 12-hour clock: 12 AM is 0 h, 12 PM is 12 h
        hour = hour % 12 + (12 if m["ampm"] in ("오후", "PM") else 0)
    if day is None or minute > 59 or hour > 23:
        return None
    return datetime.datetime.combine(day, datetime.time(hour, minute)).isoformat(timespec="minutes")


_FIELDS = {"date": ("date", "datetime", "time", "날짜", "일시", "시간"),
           "user": ("user", "speaker", "sender", "name", "보낸사람", "작성자", "이름"),
           "message": ("message", "text", "메시지", "내용")}


def fields_of(row: Any) -> dict[str, str] | None:
    """{date, user, message} -> the row's field names, where a row has one of each (compared case-insensitively)."""
    if not isinstance(row, dict):
        return None
    by = {str(k).strip().lower(): k for k in row}
    found = {slot: next((by[n] for n in names if n in by), None) for slot, names in _FIELDS.items()}
    return found if all(found.values()) and len(row) == 3 else None  # type: ignore[return-value]


def canonical(rec: RawRecord) -> RawRecord | None:
    """The record with its fields named date, user and message (a CSV's Date, User, Message), or None where it is
    not a chat log's."""
    keys = fields_of(rec.fields)
    return None if keys is None else RawRecord(rec.location, {slot: rec.fields[k] for slot, k in keys.items()})


def conversations(records: list[RawRecord], sides: Mapping[str, str]
                  ) -> tuple[list[tuple[str, list[tuple[str, str]]]], Counter]:
    """(location, turns) of each conversation in the log (records as `canonical` gives them), and what was set
    aside, by what. `sides`: each person's role. Where a side is several people (a group chat), each of its messages starts with who wrote it ("민지: ...")."""
    crowded = {role for role in sides.values() if sum(r == role for r in sides.values()) > 1}
    aside: Counter = Counter()
    convs: list[tuple[str, list[tuple[str, str]]]] = []
    last: datetime.datetime | None = None
    for rec in records:
        user, when, text = rec.fields["user"], _when(rec.fields["date"]), str(rec.fields["message"] or "")
        if user is None or _NOTICE.search(text):
            aside[NOTICES] += 1
            continue
        if _PLACEHOLDER.match(text.strip()):
            aside[PLACEHOLDERS] += 1
            continue
        if not convs or (when and last and when - last >= GAP):
            convs.append((rec.location, []))
        last = when or last
        role, turns = sides[str(user)], convs[-1][1]
        text = f"{user}: {text}" if role in crowded else text
        if turns and turns[-1][0] == role:
            turns[-1] = (role, turns[-1][1] + "\n" + text)
        else:
            turns.append((role, text))
    trimmed = [(where, _trim(turns, aside)) for where, turns in convs]
    return [(where, turns) for where, turns in trimmed if turns], aside  # one left empty: its turns are counted


def _when(value: Any) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(str(value).strip()) if value else None
    except ValueError:
        return None


def _trim(turns: list[tuple[str, str]], aside: Counter) -> list[tuple[str, str]]:
    """The turns from the first question to the last answer (what is cut is counted)."""
    first = next((i for i, (role, _) in enumerate(turns) if role == "user"), len(turns))
    end = max((i + 1 for i, (role, _) in enumerate(turns) if role == "assistant" and i > first), default=first)
    aside[OPENINGS] += first
    aside[UNANSWERED] += len(turns) - end
    return turns[first:end]
