"""The judge against a real local HTTP server speaking the /v1/chat/completions shape, with transparent rules."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from tests.conftest import serve  # noqa: F401  (lives in conftest; tests/test_evaluate.py imports it from here)
from tunesmith.errors import TunesmithError
from tunesmith.judge import judge_pairs, parse_verdict
from tunesmith.records import Generation

SECRET = "sk-test-SECRET-4242"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNESMITH_JUDGE_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-less-specific")


def chat(text: str | None) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}


def sections(body: dict) -> dict[str, str]:
    """'[Answer A]\\n...' blocks of the judge prompt, by name."""
    return dict(re.findall(r"\[(.+?)\]\n(.*?)(?=\n\n\[|\Z)", body["messages"][-1]["content"], re.S))


def prefers_reference_word(body: dict, headers: dict) -> tuple[int, object]:
    """Picks the answer holding the reference's first word; both or neither: tie."""
    s = sections(body)
    word = s["Reference answer"].split()[0]
    a, b = word in s["Answer A"], word in s["Answer B"]
    return 200, chat(f"Checked for {word!r}.\nVerdict: {'A' if a and not b else 'B' if b and not a else 'tie'}")


ROWS = [  # (reference, base answer, tuned answer)
    ("Rest first, then revise.", "Study harder.", "Rest a little, then revise."),  # tuned has 'Rest'
    ("푹 쉬세요.", "푹 주무시고 쉬세요.", "공부하세요."),  # base has '푹'
    ("Drink water.", "Drink tea.", "Drink juice."),  # both: tie
    ("Call a friend.", "Be alone.", "Call someone."),  # tuned
]


def pairs(rows: list[tuple[str, str, str]] = ROWS) -> tuple[list[Generation], list[Generation]]:
    base = [Generation(f"d.jsonl:{i}", f"question {i}", ref, b) for i, (ref, b, _) in enumerate(rows, 1)]
    tuned = [Generation(f"d.jsonl:{i}", f"question {i}", ref, t) for i, (ref, _, t) in enumerate(rows, 1)]
    return base, tuned


def test_each_row_is_asked_in_both_orders_and_scored_tuned_win_minus_base_win(serve):
    url, seen = serve(prefers_reference_word)
    result = judge_pairs(*pairs(), url=url, model="judge-1", workers=2)
    assert len(seen) == 8 and {path for path, _, _ in seen} == {"/v1/chat/completions"}
    assert {body["model"] for _, _, body in seen} == {"judge-1"}
    first = sorted((sections(body)["Answer A"], sections(body)["Answer B"]) for _, _, body in seen
                   if sections(body)["Request"] == "question 1")
    assert first == [("Rest a little, then revise.", "Study harder."), ("Study harder.", "Rest a little, then revise.")]
    assert [r.winner for r in result.rows] == ["tuned", "base", "tie", "tuned"]
    assert result.rows[0].picks == ("tuned", "tuned") and result.rows[2].picks == ("tie", "tie")
    assert (result.tuned_wins, result.base_wins, result.ties, result.unparsed) == (2, 1, 1, 0)
    assert result.difference.mean == pytest.approx((2 - 1) / 4) and result.difference.rows == 4
    assert result.summary().net_win_share == pytest.approx(0.25)


def test_a_judge_that_always_says_a_is_neutralised_into_ties_by_swapping(serve):
    url, _ = serve(lambda body, headers: (200, chat("Verdict: A")))
    result = judge_pairs(*pairs(), url=url + "/chat/completions", model="biased")
    assert {r.picks for r in result.rows} == {("base", "tuned")}
    assert result.ties == 4 and result.difference.mean == 0 and result.difference.verdict == "no clear difference"


def test_unparseable_replies_are_counted_and_make_the_row_a_tie(serve):
    def shy_when_base_first(body: dict, headers: dict) -> tuple[int, object]:
        s = sections(body)
        if s["Answer A"] in [b for _, b, _ in ROWS]:  # base is shown first
            return 200, chat("Both answers have merit." if s["Request"] != "question 4" else None)
        return prefers_reference_word(body, headers)

    url, _ = serve(shy_when_base_first)
    result = judge_pairs(*pairs(), url=url, model="shy")
    assert result.unparsed == 4 and result.summary().unparsed_replies == 4
    assert result.rows[0].picks == ("unparsed", "tuned") and result.rows[0].winner == "tie"
    assert result.rows[0].replies[0] == "Both answers have merit." and result.rows[3].replies[0] == ""
    assert result.ties == 4


@pytest.mark.parametrize("reply, want", [
    ("Verdict: A", "A"), ("verdict: **B**", "B"), ("Final verdict: [[A]]", "A"), ("My verdict is a tie.", "tie"),
    ("A leads, but B is right.\nVerdict: B", "B"), ("[[B]]", "B"), ("tie", "tie"), ("Answer A.\n\nA", "A"),
    ("A is better", None), ("I cannot decide.", None), ("", None), ("verdict: a", None),
])
def test_parse_verdict_reads_the_last_verdict_only(reply, want):
    assert parse_verdict(reply) == want


def test_the_key_is_sent_only_as_the_authorization_header(serve, monkeypatch):
    url, seen = serve(prefers_reference_word)
    result = judge_pairs(*pairs(), url=url, model="judge-1")
    assert {headers["Authorization"] for _, headers, _ in seen} == {f"Bearer {SECRET}"}  # the specific one wins
    assert all(SECRET not in json.dumps(body) for _, _, body in seen)
    assert SECRET not in repr(result) + str(result.summary()) + "".join(r for p in result.rows for r in p.replies)

    monkeypatch.delenv("TUNESMITH_JUDGE_KEY")
    monkeypatch.delenv("OPENAI_API_KEY")
    seen.clear()
    judge_pairs(*pairs(ROWS[:1]), url=url, model="judge-1")
    assert len(seen) == 2 and all("Authorization" not in headers for _, headers, _ in seen)


def test_a_refused_key_explains_the_fix_without_showing_the_key(serve):
    url, _ = serve(lambda body, headers: (401, f"invalid key: {headers['Authorization']}"))
    with pytest.raises(TunesmithError) as err:
        judge_pairs(*pairs(), url=url, model="judge-1")
    text = str(err.value)
    assert "HTTP 401" in text and f"{url}/chat/completions" in text and "TUNESMITH_JUDGE_KEY" in text
    assert "invalid key: Bearer ***" in text and SECRET not in text + repr(err.value)


def test_a_wrong_url_fails_fast_with_the_model_name_in_the_fix(serve):
    url, seen = serve(lambda body, headers: (404, {"error": "no such route"}))
    with pytest.raises(TunesmithError, match=r"HTTP 404(.|\n)*'judge-1'"):
        judge_pairs(*pairs(ROWS * 5), url=url, model="judge-1", workers=1)
    assert len(seen) < 5  # the queued requests were cancelled, not all sent


def test_busy_servers_are_asked_again_and_non_chat_replies_are_errors(serve):
    busy = iter([True])

    def busy_once(body: dict, headers: dict) -> tuple[int, object]:
        return (503, "busy") if next(busy, False) else prefers_reference_word(body, headers)

    url, seen = serve(busy_once)
    assert judge_pairs(*pairs(ROWS[:1]), url=url, model="j", workers=1).tuned_wins == 1 and len(seen) == 3

    url, _ = serve(lambda body, headers: (200, {"error": {"message": "unknown model"}}))
    with pytest.raises(TunesmithError, match="did not answer with a chat completion(.|\n)*unknown model"):
        judge_pairs(*pairs(), url=url, model="j")


def test_unreachable_and_slow_judges_say_where_and_how_to_fix(serve):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # a free port; nothing listens once closed
    with pytest.raises(TunesmithError, match=rf"cannot reach the judge at {url}/chat(.|\n)*how to fix"):
        judge_pairs(*pairs(), url=url, model="j")

    def slow(body: dict, headers: dict) -> tuple[int, object]:
        time.sleep(1)
        return 200, chat("Verdict: A")

    url, _ = serve(slow)
    with pytest.raises(TunesmithError, match=r"did not answer within 0.2 s"):
        judge_pairs(*pairs(ROWS[:1]), url=url, model="j", timeout=0.2)


def test_base_and_tuned_must_be_the_same_rows():
    base, tuned = pairs()
    with pytest.raises(ValueError):
        judge_pairs(base, tuned[::-1], url="http://127.0.0.1:9/v1", model="j")


def test_redact_url_hides_userinfo_and_key_like_query_values():
    from tunesmith.endpoint import redact_url

    assert redact_url("https://bob:hunter2@judge.example:8443/v1?api-key=abc&model=x&sig=s1") == \
        "https://***@judge.example:8443/v1?api-key=***&model=x&sig=***"
    assert redact_url("http://localhost:8000/v1") == "http://localhost:8000/v1"


def test_a_url_with_user_and_password_sends_basic_auth_and_never_prints_them(serve, monkeypatch):
    import base64

    monkeypatch.delenv("TUNESMITH_JUDGE_KEY")
    monkeypatch.delenv("OPENAI_API_KEY")
    url, seen = serve(prefers_reference_word)
    with_creds = url.replace("http://", "http://bob:hunter2@")
    assert judge_pairs(*pairs(ROWS[:1]), url=with_creds, model="j").tuned_wins == 1
    assert {h["Authorization"] for _, h, _ in seen} == {"Basic " + base64.b64encode(b"bob:hunter2").decode()}

    url, _ = serve(lambda body, headers: (401, f"bad credentials {headers['Authorization']}"))
    with pytest.raises(TunesmithError) as err:
        judge_pairs(*pairs(ROWS[:1]), url=url.replace("http://", "http://bob:hunter2@"), model="j")
    text = str(err.value)
    assert f"the judge at {url}/chat/completions answered HTTP 401" in text and "user:password in the judge url" in text
    assert "hunter2" not in text and base64.b64encode(b"bob:hunter2").decode() not in text

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TunesmithError, match=rf"cannot reach the judge at http://127.0.0.1:{port}/v1/chat"):
        judge_pairs(*pairs(ROWS[:1]), url=f"http://bob:hunter2@127.0.0.1:{port}/v1", model="j")


def test_user_password_in_the_url_and_an_api_key_are_refused_together(serve):
    url, seen = serve(prefers_reference_word)
    with pytest.raises(TunesmithError, match=r"judge url http://\*\*\*@127.0.0.1:\d+/v1 holds user:password@"):
        judge_pairs(*pairs(ROWS[:1]), url=url.replace("http://", "http://bob:hunter2@"), model="j")
    assert not seen
