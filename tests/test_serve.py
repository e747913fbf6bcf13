"""tunesmith serve, started as a user starts it, driven by the official `openai` client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunesmith import chat
from tunesmith.records import Message

KEY = "sk-test-7d1f"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_run: Path) -> Iterator[str]:
    """`tunesmith serve RUN --model base` on a free port, with an API key from the environment."""
    port = _free_port()
    log = tiny_run.parent / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tunesmith", "serve", str(tiny_run), "--model", "base",
                                 "--port", str(port)], env={**os.environ, "TUNESMITH_API_KEY": KEY},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(log.read_text())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert KEY not in log.read_text()  # the key is never logged


def _client(url: str, key: str = KEY):  # noqa: ANN202
    from openai import OpenAI

    return OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)


def test_models_lists_the_tuned_run_and_its_base(server, tiny_run):
    assert sorted(m.id for m in _client(server).models.list()) == sorted([tiny_run.name, "base"])


def test_a_completion_is_chat_s_answer_with_usage(server, tiny_run):
    client = _client(server)
    # sampled (the tiny model's greedy answer is blank lines): the request's seed makes it chat's answer
    res = client.chat.completions.create(model=tiny_run.name, max_tokens=6, temperature=1.0, seed=5,
                                         messages=[{"role": "user", "content": "How do I sleep better?"}])
    session = chat.open_session(str(tiny_run), say=lambda _: None,
                                options={"max_new_tokens": 6, "temperature": 1.0, "seed": 5})
    reply = chat.respond(session, "How do I sleep better?")
    choice = res.choices[0]
    assert reply.text.strip() and choice.message.content == reply.text and choice.message.role == "assistant"
    assert choice.finish_reason == ("stop" if reply.stopped else "length")
    assert (res.usage.prompt_tokens, res.usage.completion_tokens) == (reply.prompt_tokens, reply.new_tokens)
    assert res.usage.total_tokens == reply.prompt_tokens + reply.new_tokens


def test_streaming_sends_the_same_text_in_pieces(server, tiny_run):
    client = _client(server)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    whole = client.chat.completions.create(model=tiny_run.name, messages=messages, max_tokens=8)
    chunks = list(client.chat.completions.create(model=tiny_run.name, messages=messages, max_tokens=8,
                                                 stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == whole.choices[0].message.content and len(chunks) >= 3
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_a_wrong_or_missing_key_is_401(server):
    import httpx
    import openai

    with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        _client(server, "sk-wrong").models.list()
    res = httpx.get(f"{server}/models", timeout=30)  # no Authorization header at all
    assert res.status_code == 401 and res.json()["error"]["code"] == "invalid_api_key"


def test_bad_requests_get_openai_style_400_and_404(server, tiny_run):
    import httpx
    import openai

    client = _client(server)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model=tiny_run.name, messages=[])
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client.chat.completions.create(model=tiny_run.name, max_tokens=10_000,
                                       messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=tiny_run.name, temperature=5,
                                       messages=[{"role": "user", "content": "hi"}])
    res = httpx.post(f"{server}/chat/completions", content=b"{not json", timeout=30,
                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_json"


def test_two_concurrent_requests_get_their_own_answers(server, tiny_run):
    client = _client(server)
    asks = {"a": ("Tell me about cats.", 1), "b": ("What is the capital of France?", 2)}

    def ask(k: str) -> str:
        question, seed = asks[k]
        return client.chat.completions.create(model=tiny_run.name, max_tokens=8, temperature=1.0, seed=seed,
                                              messages=[{"role": "user", "content": question}]
                                              ).choices[0].message.content

    alone = {k: ask(k) for k in asks}
    assert alone["a"] != alone["b"] and all(v.strip() for v in alone.values())
    together: dict[str, str] = {}
    threads = [threading.Thread(target=lambda k=k: together.__setitem__(k, ask(k))) for k in asks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_base_and_tuned_answer_differently_through_the_same_template(server, tiny_run):
    client = _client(server)
    messages = [{"role": "user", "content": "How do I sleep better?"}]
    tuned, base = (client.chat.completions.create(model=m, max_tokens=8, messages=messages)
                   for m in (tiny_run.name, "base"))
    assert tuned.usage.prompt_tokens == base.usage.prompt_tokens  # same render of the same messages
    session = chat.open_session(str(tiny_run), say=lambda _: None, base=True, options={"max_new_tokens": 8})
    assert base.choices[0].message.content == chat.respond(session, messages[0]["content"]).text
    assert chat.prompt_for(session, [Message("user", "x")]).count("x") == 1


def test_two_models_of_one_name_are_refused_before_any_loads(tmp_path):
    from tunesmith import serve as serving
    from tunesmith.errors import TunesmithError

    # neither folder exists: loading would fail differently, so this error comes first
    with pytest.raises(TunesmithError, match="both named 'a'"):
        serving.open_sessions([f"a={tmp_path / 'x'}", f"a={tmp_path / 'y'}"], say=lambda _: None)
