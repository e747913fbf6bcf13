"""tunesmith serve, started as a user starts it, driven by the official `openai` client."""

from __future__ import annotations

import json
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
    session = chat.open_session(str(tiny_run), say=lambda _: None, base=True,
                                options={"max_new_tokens": 8, "precision": "fp32"})  # serve's default precision
    assert base.choices[0].message.content == chat.respond(session, messages[0]["content"]).text
    assert chat.prompt_for(session, [Message("user", "x")]).count("x") == 1


def test_two_models_of_one_name_are_refused_before_any_loads(tmp_path):
    from tunesmith import serve as serving
    from tunesmith.errors import TunesmithError

    # neither folder exists: loading would fail differently, so this error comes first
    with pytest.raises(TunesmithError, match="both named 'a'"):
        serving.open_sessions([f"a={tmp_path / 'x'}", f"a={tmp_path / 'y'}"], say=lambda _: None)


# --- Hostile use (issue 26): a live server on loopback in this process, over real tiny models -------------------

@pytest.fixture(scope="module")
def live(smol_dir, smol_tokenizer, tiny_model_dir, tmp_path_factory) -> Iterator[dict]:
    """uvicorn on a free loopback port in a thread, serving `long` (a tiny Llama with a 4,096-token context:
    thousands of tokens take seconds), `short` (512 tokens) and `smol` (SmolLM2: real text), each model's forward
    calls counted (one per generated token)."""
    import uvicorn

    from tests.conftest import tiny_llama
    from tunesmith import serve as serving

    quiet = lambda _: None  # noqa: E731
    long_dir = tiny_llama(smol_tokenizer, tmp_path_factory.mktemp("long"), context=4096)
    sessions = {name: chat.open_session(str(path), say=quiet, options={"precision": "fp32"})  # as serve does
                for name, path in (("long", long_dir), ("short", tiny_model_dir), ("smol", smol_dir))}
    counts = dict.fromkeys(sessions, 0)
    for name, session in sessions.items():
        session.model.register_forward_hook(lambda *_, n=name: counts.__setitem__(n, counts[n] + 1))
    server = uvicorn.Server(uvicorn.Config(serving.create_app(sessions), host="127.0.0.1", port=_free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{server.config.port}/v1", "counts": counts}
    server.should_exit = True
    thread.join(timeout=30)


def _ask(url: str, model: str, content: str = "Tell me a story.", **extra) -> dict:
    import httpx

    res = httpx.post(f"{url}/chat/completions", timeout=120,
                     json={"model": model, "messages": [{"role": "user", "content": content}], **extra})
    assert res.status_code == 200, res.text
    return res.json()


def _settled(counts: dict, name: str) -> int:
    """The forward count once it stops growing (checked every 0.5 s for up to 5 s)."""
    last = -1
    for _ in range(10):
        if counts[name] == last:
            return last
        last = counts[name]
        time.sleep(0.5)
    pytest.fail(f"generation on {name} still running 5 s after its client left: {counts[name]} tokens")


@pytest.mark.parametrize("temperature", [1.0, 0.0], ids=["sampled", "greedy-batched"])
@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_goes_away_cancels_its_generation(live, stream, temperature):
    import json

    import httpx

    url, counts = live["url"], live["counts"]
    seeded = {"max_tokens": 12, "temperature": 1.0, "seed": 7}
    alone = _ask(url, "smol", "Name a colour.", **seeded)["choices"][0]["message"]["content"]
    before = counts["long"]
    body = {"model": "long", "messages": [{"role": "user", "content": "Go on forever."}], "max_tokens": 4000,
            "temperature": temperature, "seed": 1, "stream": stream}  # uncancelled: 4,000 tokens, ~13 s here
    if stream:
        with httpx.Client(timeout=60) as client, client.stream("POST", f"{url}/chat/completions", json=body) as res:
            for line in res.iter_lines():  # leave after the first piece of text
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break
    else:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up after 1 s
            httpx.post(f"{url}/chat/completions", json=body, timeout=1.0)
    generated = _settled(counts, "long") - before
    assert 0 < generated < 1000, generated  # stopped within a second or two of the client leaving
    # nothing runs beside the next request: a seeded answer is what it is alone
    assert _ask(url, "smol", "Name a colour.", **seeded)["choices"][0]["message"]["content"] == alone


def _post(url: str, content: bytes | str | None = None, json_body: object = None,
          content_type: str = "application/json"):  # noqa: ANN202
    import httpx

    return httpx.post(f"{url}/chat/completions", content=content, json=json_body, timeout=60,
                      headers={"Content-Type": content_type} if content_type else {})


HI = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "today's weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
BAD = {  # the reproductions: each a 4xx with OpenAI's error body, streaming or not
    "500 stop strings": ({"stop": ["x"] * 500}, 400, "at most 4"),
    "a 200,000-character stop string": ({"stop": "x" * 200_000}, 400, "at most 256"),
    "seed 2**64": ({"seed": 2**64}, 400, "seed"),
    "temperature above 2": ({"temperature": 5}, 400, "temperature"),
    "messages over a million characters": ({"messages": [{"role": "user", "content": "x" * 600_000}] * 2}, 400,
                                           "1,000,000"),
    "more characters than the context holds": ({"messages": [{"role": "user", "content": "x" * 900_000}]}, 400,
                                               "maximum context length"),
    "n = 2": ({"n": 2}, 400, "n"),
    "a tool's output no call asked for": ({"messages": [*HI, {"role": "tool", "content": "x"}]}, 400,
                                          "a tool's output follows"),
    "call arguments that are not JSON": ({"messages": [*HI, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{x"}}]}, {"role": "tool", "content": "1"}]},
        400, "not valid JSON"),
    "call arguments nested too deeply": ({"messages": [*HI, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "[" * 100_000}}]},
        {"role": "tool", "content": "1"}]},
        400, "nested too deeply"),
    "a tool message making calls": ({"messages": [*HI, {"role": "tool", "content": "1", "tool_calls": [
        {"type": "function", "function": {"name": "f"}}]}]}, 400, "only an assistant"),
    "a user message without content": ({"messages": [{"role": "user", "content": None}]}, 400, "content"),
    "forcing a function not offered": ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {
        "name": "w"}}}, 400, "not among the tools offered: weather"),
    "a call required with no tools": ({"tool_choice": "required"}, 400, "no tools are offered"),
    "129 tools": ({"tools": [WEATHER] * 129}, 400, "tools"),
    "a tool without a name": ({"tools": [{"type": "function", "function": {"description": "x"}}]}, 400, "name"),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", list(BAD))
def test_each_bad_request_is_a_4xx_json_error(live, case, stream):
    extra, status, says = BAD[case]
    res = _post(live["url"], json_body={"model": "long", "messages": HI, "max_tokens": 4, "stream": stream, **extra})
    assert res.status_code == status and says in res.json()["error"]["message"], res.text


@pytest.mark.parametrize(("raw", "content_type", "status", "code"), [
    ('{"model": "long", "messages": [{"role": "user", "content": "\\ud800"}]}', "application/json", 400,
     "invalid_request"),  # a lone surrogate: valid JSON, not text a tokenizer takes
    ('{"model": "long", "stream": true, "messages": [{"role": "user", "content": "a\\udfffb"}]}',
     "application/json", 400, "invalid_request"),
    ("[" * 100_000, "application/json", 400, "invalid_json"),  # was a RecursionError: HTTP 500
    ("{not json", "application/json", 400, "invalid_json"),
    ('{"model": "long", "messages": [{"role": "user", "content": "hi"}]}', "text/plain", 415,
     "unsupported_media_type"),
    ('{"model": "long", "messages": [{"role": "user", "content": "hi"}]}', None, 415, "unsupported_media_type"),
])
def test_bodies_that_are_not_json_text_are_4xx(live, raw, content_type, status, code):
    res = _post(live["url"], content=raw, content_type=content_type)
    assert res.status_code == status and res.json()["error"]["code"] == code, res.text


def test_a_huge_body_is_refused_before_it_is_read_and_holds_nobody_up(live):
    import httpx

    url = live["url"]
    done: dict[str, float] = {}

    def huge() -> None:
        start = time.monotonic()
        res = _post(url, content=b'{"model": "long", "messages": [{"role": "user", "content": "'
                    + b"x" * 10_000_000 + b'"}]}')
        done["huge"] = time.monotonic() - start
        assert res.status_code == 413 and res.json()["error"]["code"] == "request_too_large"

    def long_message() -> None:  # under the body limit, over what 4,096 tokens hold: refused before tokenizing
        start = time.monotonic()
        res = _post(url, json_body={"model": "long", "messages": [{"role": "user", "content": "word " * 180_000}]})
        done["long"] = time.monotonic() - start
        assert res.status_code == 400 and "context length" in res.json()["error"]["message"]

    threads = [threading.Thread(target=f) for f in (huge, long_message)]
    for t in threads:
        t.start()
    start = time.monotonic()
    assert httpx.get(f"{url}/models", timeout=30).status_code == 200
    models_s = time.monotonic() - start
    for t in threads:
        t.join()
    # before: 9.5 s to refuse a 10 MB message, and /v1/models waited 9.85 s behind it
    assert set(done) == {"huge", "long"} and max(done.values()) < 3 and models_s < 3, (done, models_s)


def test_a_tiny_temperature_decodes_greedily(live):
    greedy = _ask(live["url"], "smol", "Name a colour.", max_tokens=12, temperature=0)
    tiny = _ask(live["url"], "smol", "Name a colour.", max_tokens=12, temperature=1e-300)  # was nan: HTTP 500
    assert tiny["choices"][0]["message"]["content"] == greedy["choices"][0]["message"]["content"]
    assert greedy["choices"][0]["message"]["content"].strip()


def test_stop_strings_end_the_answer_where_they_appear(live):
    full = _ask(live["url"], "smol", "Count from 1 to 20, separated by commas.", max_tokens=40)
    text = full["choices"][0]["message"]["content"]
    assert "5" in text, text
    cut = _ask(live["url"], "smol", "Count from 1 to 20, separated by commas.", max_tokens=40, stop=["5"])
    assert cut["choices"][0]["message"]["content"] == text[:text.index("5")].strip()
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] < full["usage"]["completion_tokens"]  # generation stopped there too


def test_a_failure_inside_a_stream_ends_it_with_an_error_event_and_done(tiny_model_dir):
    import json

    from fastapi.testclient import TestClient

    from tunesmith import serve as serving

    session = chat.open_session(str(tiny_model_dir), say=lambda _: None)
    calls = []

    def fail_on_the_third(*_: object) -> None:  # as a GPU running out of memory mid-answer would
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory")

    session.model.register_forward_hook(fail_on_the_third)
    client = TestClient(serving.create_app({"m": session}))
    body = {"model": "m", "messages": HI, "max_tokens": 20, "temperature": 1.0, "seed": 3}
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as res:
        events = [line[6:] for line in res.iter_lines() if line.startswith("data: ")]
    assert res.status_code == 200 and events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "generation_failed" and "out of memory" in error["message"]
    calls.clear()
    res = client.post("/v1/chat/completions", json=body)  # not streaming: OpenAI's error body, not a traceback
    assert res.status_code == 500 and "out of memory" in res.json()["error"]["message"]
    calls.extend([1] * 10)  # the failing call is past: the same app answers again
    assert client.post("/v1/chat/completions", json=body).status_code == 200


def test_eight_mixed_requests_at_once_answer_what_they_answer_alone(live):
    import json

    import httpx

    url = live["url"]
    asks = [(model, stream, seed) for model in ("smol", "short") for stream in (False, True) for seed in (1, 2)]

    def ask(model: str, stream: bool, seed: int) -> str:
        body = {"model": model, "max_tokens": 10, "temperature": 1.0, "seed": seed, "stream": stream,
                "messages": [{"role": "user", "content": f"Say something about the number {seed}."}]}
        if not stream:
            res = httpx.post(f"{url}/chat/completions", json=body, timeout=120)
            return res.json()["choices"][0]["message"]["content"]
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=120) as res:
            events = [json.loads(x[6:]) for x in res.iter_lines() if x.startswith("data: {")]
        return "".join(e["choices"][0]["delta"].get("content") or "" for e in events).strip()

    alone = [ask(*a) for a in asks]
    together: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i, a=a: together.__setitem__(i, ask(*a))) for i, a in enumerate(asks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [together[i] for i in range(len(asks))] == alone
    assert len(set(alone[:2])) == 2  # the seeds give different answers: the comparison can fail


def test_fuzz_the_openapi_document_no_5xx_and_the_server_stays_up(live):
    """Schemathesis draws requests from the server's own OpenAPI document (its bounds included); a third keep
    the random model name, the others name a served model and end on a user's question, so that generation runs
    too (the drawn messages, tool outputs and calls among them, stay before it)."""
    import collections

    import httpx
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    root = live["url"].removesuffix("/v1")
    schema = schemathesis.openapi.from_url(f"{root}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(o.method, o.path) for o in operations} == {("get", "/v1/models"), ("post", "/v1/chat/completions")}

    def served(pair: tuple) -> object:
        case, name = pair
        if name and isinstance(case.body, dict):
            case.body["model"] = name
            if isinstance(case.body.get("messages"), list):
                case.body["messages"].append({"role": "user", "content": "Why?"})
        return case

    seen: collections.Counter = collections.Counter()
    cases = st.tuples(st.one_of(*[o.as_strategy() for o in operations]),
                      st.sampled_from(["short", "short", None])).map(served)

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def no_server_errors(case) -> None:  # noqa: ANN001
        res = case.call(base_url=root)
        seen[res.status_code] += 1
        assert res.status_code < 500, (case.body, res.text)

    no_server_errors()
    print(f"fuzz: {sum(seen.values())} requests, by status {dict(sorted(seen.items()))}")
    assert seen[200] > 10 and seen[400] > 10  # both generation and refusal were reached
    assert httpx.get(f"{live['url']}/models", timeout=30).status_code == 200


def test_serve_refuses_a_public_address_without_a_key_before_loading(tmp_path):
    from tests.conftest import fails, tunesmith

    res = tunesmith("serve", str(tmp_path / "no-such-model"), "--host", "0.0.0.0", timeout=120)
    fails(res, "--host 0.0.0.0 without --api-key", "--allow-remote")


def _streamed(url: str, model: str, content: str, **extra) -> str:
    import json

    import httpx

    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": True, **extra}
    pieces = []
    with httpx.Client(timeout=120) as client, client.stream("POST", f"{url}/chat/completions", json=body) as res:
        for line in res.iter_lines():
            if line.startswith("data: {"):
                pieces.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
    return "".join(pieces)


def test_concurrent_greedy_requests_generate_together_and_answer_as_alone(live):
    from concurrent.futures import ThreadPoolExecutor

    url, counts = live["url"], live["counts"]
    prompts = [f"Name {n} animals that live in {place}." for n, place in
               [("two", "water"), ("three", "trees"), ("four", "deserts"), ("two", "cold places"),
                ("three", "caves"), ("four", "farms"), ("two", "cities"), ("three", "mountains")]]
    ask = lambda i: (_streamed if i % 4 == 0 else  # noqa: E731  (two of the eight stream)
                     lambda *a, **k: _ask(*a, **k)["choices"][0]["message"]["content"])(url, "smol", prompts[i],
                                                                                       max_tokens=20)
    alone = [ask(i) for i in range(8)]
    assert len(set(alone)) > 4  # different prompts, different answers
    before = counts["smol"]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, range(8)))
    assert [t.strip() for t in together] == [a.strip() for a in alone]
    # One forward pass per generated token of the batch, not per request: far fewer than 8 x 20 one after another.
    assert counts["smol"] - before <= 3 * 21, counts["smol"] - before


CALL_1 = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Seoul"}'}}
TOOL_TURNS = [{"role": "user", "content": "Weather in Seoul?"},
              {"role": "assistant", "content": None, "tool_calls": [CALL_1]},
              {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 3 C"}]


def test_a_request_with_tools_is_rendered_as_training_renders_the_same_row(live, smol_tokenizer):
    """OpenAI's function-calling request (tools, an assistant's tool_calls, the tool's output) gives the prompt that
    training and eval give the same conversation read from a data file: SmolLM2's template has no tool support,
    so both write it in toolcalls' text form."""
    from tunesmith import serve as serving, template
    from tunesmith.config import TemplateConfig
    from tunesmith.data import formats
    from tunesmith.format_names import CALL

    req = serving.ChatRequest(model="smol", messages=TOOL_TURNS, tools=[WEATHER])
    row = formats.validate([("user", TOOL_TURNS[0]["content"]), (CALL, TOOL_TURNS[1]), ("tool", "sunny, 3 C"),
                            ("assistant", "x")], "f:1", None, [WEATHER])
    fitted, _ = template.fit(smol_tokenizer, [row], TemplateConfig())
    want = template.prompt_text(smol_tokenizer, fitted[0])[0]
    got = chat.prompt_for(chat.Session(None, smol_tokenizer, "smol", None, TemplateConfig()),  # type: ignore[arg-type]
                          [m.message() for m in req.messages], tools=req.offered())
    assert got == want and "<tools>\n" in got and "<tool_response>\nsunny, 3 C\n</tool_response>" in got
    assert got.endswith("<|im_start|>assistant\n")
    body = {"model": "smol", "messages": TOOL_TURNS, "tools": [WEATHER], "max_tokens": 8}
    plain = _post(live["url"], json_body=body).json()
    streamed = _post(live["url"], json_body={**body, "stream": True}).text
    message = plain["choices"][0]["message"]
    assert message["role"] == "assistant" and (message["content"] or message["tool_calls"])
    chunks = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-1]]  # offered tools: text until a call may begin, then
    assert "".join(d.get("content", "") for d in deltas) == (message["content"] or "")  # the rest and the calls
    assert [c["function"] for d in deltas for c in d.get("tool_calls", [])] == \
        [c["function"] for c in message.get("tool_calls") or []]
    assert chunks[-1]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]


@pytest.mark.parametrize(("text", "content", "calls"), [
    ('Checking.\n<tool_call>\n{"name": "weather", "arguments": {"city": "Seoul"}}\n</tool_call>', "Checking.",
     [("weather", '{"city": "Seoul"}')]),
    ('{"name": "weather", "parameters": {"city": "Seoul"}}', None, [("weather", '{"city": "Seoul"}')]),
    ("It is sunny.", "It is sunny.", []),
    ("<tool_call>{not json}</tool_call>", "<tool_call>{not json}</tool_call>", []),
])
def test_an_answer_s_calls_become_openai_tool_calls(text, content, calls):
    from tunesmith import serve as serving

    message, finish = serving._message(chat.Reply(text, True, 10, 5), tools=True)
    assert message["content"] == content
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])] == calls
    assert finish == ("tool_calls" if calls else "stop")
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in message.get("tool_calls", []))
    assert serving._message(chat.Reply(text, True, 10, 5), tools=False) == ({"content": text}, "stop")


@pytest.mark.parametrize(("pieces", "streamed"), [
    (["Let me ", "check.", "\n<tool", "_call>\n{\"name\": \"w\", \"arguments\": {}}\n</tool_call>"],
     ["Let me", " check."]),
    (["It is ", "<", "b>sunny</b>", " today.\n"], ["It is", " <b>sunny</b>", " today."]),
    (["  {\"name\": \"w\", ", "\"parameters\": {}}"], []),
    (["Done <tool"], ["Done"]),  # a tail that could start a call waits: here the answer simply ended
])
def test_a_tool_offering_stream_sends_text_until_a_call_may_begin(pieces, streamed):
    """What streams is always a prefix of the final content, so the last chunk adds the rest without repeating."""
    from tunesmith import serve as serving

    watch = serving._CallWatch()
    said = [s for s in (watch.more(p) for p in pieces) if s]
    assert said == streamed
    message, _ = serving._message(chat.Reply("".join(pieces).strip(), True, 3, 4), tools=True)
    assert "".join(said) + watch.rest(message["content"]) == (message["content"] or "")


CURRENCY = {"type": "function", "function": {"name": "convert_currency", "description": "convert an amount of money",
                                             "parameters": {"type": "object", "properties": {"amount": {
                                                 "type": "number"}}}}}


@pytest.mark.parametrize(("choice", "called"), [
    ("required", "convert_currency"), ({"type": "function", "function": {"name": "weather"}}, "weather")],
    ids=["required", "named"])
def test_a_forced_call_is_the_answer_s_start_and_comes_back_as_tool_calls(live, smol_tokenizer, choice, called):
    """tool_choice required (or naming a function) makes the answer start as a call in the template's form (here
    SmolLM2's: the text form) through the arguments' "{"; required calls the offered function the model finds
    likeliest (asked about money, the untuned SmolLM2 picks convert_currency over weather), and the model writes
    the arguments: the call comes back as tool_calls (what it wrote as content where it is not a JSON object).
    Streamed, no part of the call streams as text, and the last chunk brings the same message."""
    from tunesmith import template

    body = {"model": "smol", "messages": [{"role": "user", "content": "How many euros are 100 dollars?"}],
            "tools": [WEATHER, CURRENCY], "tool_choice": choice, "max_tokens": 40}
    plain = _post(live["url"], json_body=body).json()
    message = plain["choices"][0]["message"]
    if message.get("tool_calls"):
        assert [c["function"]["name"] for c in message["tool_calls"]] == [called] and message["content"] is None
        assert isinstance(json.loads(message["tool_calls"][0]["function"]["arguments"]), dict)
        assert plain["choices"][0]["finish_reason"] == "tool_calls"
    else:  # the model did not write a JSON object: what it wrote, from the call's forced start
        assert message["content"].startswith(template.call_prefix(smol_tokenizer, called))
    streamed = _post(live["url"], json_body={**body, "stream": True}).text
    chunks = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-1]]
    assert "".join(d.get("content", "") for d in deltas) == (message["content"] or "")
    assert [c["function"] for d in deltas for c in d.get("tool_calls", [])] == \
        [c["function"] for c in message.get("tool_calls") or []]


def test_the_call_prefix_is_the_start_of_a_call_as_each_template_writes_it(smol_tokenizer):
    import copy

    from trl.chat_template_utils import qwen3_chat_template

    from tests.fixtures.templates import CHATML_TOOLS
    from tunesmith import template, toolcalls

    assert template.call_prefix(smol_tokenizer) == '<tool_call>\n{"name": "'  # the text form
    assert template.call_prefix(smol_tokenizer, "weather") == '<tool_call>\n{"name": "weather", "arguments": {'
    qwen3 = copy.deepcopy(smol_tokenizer)
    qwen3.chat_template = qwen3_chat_template
    assert template.call_prefix(qwen3, 'say "hi"') == \
        '<think>\n\n</think>\n\n<tool_call>\n{"name": "say \\"hi\\"", "arguments": {'
    native = copy.deepcopy(smol_tokenizer)
    native.chat_template = CHATML_TOOLS
    prefix = template.call_prefix(native, "weather")
    assert prefix.endswith('"weather", "arguments": {') and toolcalls.CALL_OPEN not in prefix
