"""Optional LLM-as-judge: which of two answers is better, asked of any OpenAI-compatible chat endpoint.

Public API:
    judge_pairs(base, tuned, *, url, model, timeout=60.0, workers=4, resamples=2000, seed=0) -> JudgeResult
    JudgeResult(model, rows, difference): .tuned_wins .base_wins .ties .unparsed .summary()
    Preference(source, picks, replies): .winner ('tuned' | 'base' | 'tie') and .score (+1 | -1 | 0)
    parse_verdict(reply) -> 'A' | 'B' | 'tie' | None

Judges favour whichever answer they read first (Zheng et al. 2023, "Judging LLM-as-a-judge", section 3.3),
so every row is asked twice, base shown first and then tuned shown first; a model wins the row only when
both orders pick it, anything else is a tie. A reply with no readable verdict counts as no preference for
that order and is counted in `unparsed`, never dropped.

The API key is read from TUNESMITH_JUDGE_KEY or OPENAI_API_KEY when each request is made, sent only as the
Authorization header, and never stored, printed or put into an error (a server that echoes it is redacted).
A `user:password@` in the url is sent as HTTP Basic auth instead (when no key is set) and, like key-like query
parameters, is shown as *** wherever the url is printed (`redact_url`).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tunesmith.errors import TunesmithError
from tunesmith.metrics import paired_bootstrap
from tunesmith.records import Generation, JudgeResult, Preference

KEY_VARIABLES = ("TUNESMITH_JUDGE_KEY", "OPENAI_API_KEY")
ORDERS = (("base", "tuned"), ("tuned", "base"))  # who is answer A, who is answer B
RETRY_STATUS = {429, 500, 502, 503, 504}  # rate limits and overloaded servers pass; ask again
ATTEMPTS = 3

SYSTEM = ("You compare two answers to the same request. Decide which answer better does what the request asks. "
          "The reference answer shows what a good answer looks like; an answer may differ from it and still be "
          "good. Do not let length or the order of the answers sway you. Explain briefly, then end with one "
          "line: 'Verdict: A', 'Verdict: B' or 'Verdict: tie'.")

# 'Verdict: A', 'verdict is **B**', 'Final verdict: [[A]]', 'verdict: a tie'; A/B must be capitals ('a' is a word)
_VERDICT = re.compile(r"(?i:verdict\W*(?:is\W+)?(?:a\s+)?)(A|B|(?i:tie))\b|\[\[(A|B|(?i:tie))\]\]")
_BARE = re.compile(r"\W*(A|B|(?i:tie))\W*")


def parse_verdict(reply: str) -> str | None:
    """The last verdict in a reply, or a bare 'A'/'B'/'tie' as its last line; None when there is none.

    >>> parse_verdict("B is kinder, but A answers the question.\\nVerdict: **A**")
    'A'
    >>> parse_verdict("[[B]]"), parse_verdict("Both are fine.\\nTie."), parse_verdict("A is better")
    ('B', 'tie', None)
    """
    found = [m.group(1) or m.group(2) for m in _VERDICT.finditer(reply)]
    lines = reply.strip().splitlines()
    bare = _BARE.fullmatch(lines[-1]) if lines else None
    choice = found[-1] if found else bare.group(1) if bare else None
    return "tie" if choice and choice.lower() == "tie" else choice


# Query parameters that carry credentials in the wild (Azure's api-key, signed urls' sig, access_token ...).
_SECRET_PARAM = re.compile(r"key|token|secret|password|passwd|sig|auth", re.I)


def redact_url(url: str) -> str:
    """The url as it may be printed: user:password@ and credential-like query values replaced by ***.

    >>> redact_url("https://bob:hunter2@judge.example/v1?api-key=abc&model=x")
    'https://***@judge.example/v1?api-key=***&model=x'
    >>> redact_url("http://localhost:8000/v1")
    'http://localhost:8000/v1'
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _split_credentials(url: str) -> tuple[str, str | None]:
    """(url without user:password@, the Basic auth header value or None); urllib would take them as the host."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    token = base64.b64encode(unquote(userinfo).encode()).decode()
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), f"Basic {token}"


def judge_pairs(base: Sequence[Generation], tuned: Sequence[Generation], *, url: str, model: str,
                timeout: float = 60.0, workers: int = 4, resamples: int = 2000, seed: int = 0) -> JudgeResult:
    """Ask the judge about every row in both orders; `url` is the API base (…/v1) or the full
    …/chat/completions address.

    >>> judge_pairs(before.generations, after.generations, url="http://localhost:8000/v1",
    ...             model="qwen2.5-7b-instruct").summary().net_win_share  # doctest: +SKIP
    0.35
    """
    if [(g.source, g.prompt) for g in base] != [(g.source, g.prompt) for g in tuned]:
        raise ValueError("base and tuned generations must be the same rows in the same order")
    endpoint, basic = _split_credentials(url)
    endpoint = endpoint.rstrip("/")
    endpoint = endpoint if endpoint.endswith("/chat/completions") else endpoint + "/chat/completions"
    if basic and _api_key():
        raise TunesmithError(f"the judge url {redact_url(url)} holds user:password@ and an API key is set too; "
                             "both would be the Authorization header", where="judge",
                             fix=f"drop user:password@ from the url, or unset {' and '.join(KEY_VARIABLES)}")
    asks = [_messages(b, *({"base": b, "tuned": t}[who] for who in order))
            for b, t in zip(base, tuned) for order in ORDERS]
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        replies = list(pool.map(lambda m: _ask(endpoint, model, m, timeout, basic), asks))
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, don't send the requests still queued
    per_row = zip(replies[::2], replies[1::2])  # (base shown first, tuned shown first)
    rows = tuple(Preference(b.source, (_pick(first, ORDERS[0]), _pick(second, ORDERS[1])), (first, second))
                 for b, (first, second) in zip(base, per_row))
    scores = [float(r.score) for r in rows]
    return JudgeResult(model, rows, paired_bootstrap([0.0] * len(scores), scores, resamples, seed))


def _messages(row: Generation, a: Generation, b: Generation) -> list[dict[str, str]]:
    user = (f"[Request]\n{row.prompt}\n\n[Reference answer]\n{row.reference}\n\n"
            f"[Answer A]\n{a.generation}\n\n[Answer B]\n{b.generation}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _pick(reply: str, order: tuple[str, str]) -> str:
    choice = parse_verdict(reply)
    return {"A": order[0], "B": order[1], "tie": "tie", None: "unparsed"}[choice]


def _api_key() -> str | None:
    return next((os.environ[v] for v in KEY_VARIABLES if os.environ.get(v)), None)


def _ask(endpoint: str, model: str, messages: list[dict[str, str]], timeout: float, basic: str | None = None
         ) -> str:
    """One chat completion's text; TunesmithError on anything a user has to fix (the url in it redacted)."""
    key = _api_key()
    auth = f"Bearer {key}" if key else basic
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    shown = redact_url(endpoint)
    body = json.dumps({"model": model, "messages": messages, "temperature": 0}).encode()
    attempt = 0
    while True:
        attempt += 1
        request = urllib.request.Request(endpoint, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return _content(response.read(), shown)
        except urllib.error.HTTPError as err:
            if err.code in RETRY_STATUS and attempt < ATTEMPTS:
                time.sleep(attempt)
                continue
            raise _http_error(shown, model, err, key or basic) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, TimeoutError):
                raise TunesmithError(f"the judge at {shown} did not answer within {timeout:g} s", where="judge",
                                     fix="raise the judge timeout, or use fewer workers") from None
            raise TunesmithError(f"cannot reach the judge at {shown}: {reason}", where="judge",
                                 fix="start the server, or check the url (the API base, e.g. "
                                 "http://localhost:8000/v1) and that this machine can reach it") from None


def _http_error(endpoint: str, model: str, err: urllib.error.HTTPError, key: str | None) -> TunesmithError:
    """`endpoint` is already redacted; `key` is the credential sent, blanked out of what the server said."""
    said = err.read(300).decode("utf-8", "replace").strip()
    if key:
        said = said.replace(key, "***").replace(key.removeprefix("Basic "), "***")
    basic = bool(key and key.startswith("Basic "))
    fixes = {401: "check the user:password in the judge url (sent as HTTP Basic auth)" if basic else
                  f"set {' or '.join(KEY_VARIABLES)} to a key this server accepts" + ("" if key else " (none is set)"),
             404: f"check the url (the API base, e.g. http://localhost:8000/v1) and the model name {model!r}"}
    fixes[403] = fixes[401]
    return TunesmithError(f"the judge at {endpoint} answered HTTP {err.code} {err.reason}", where="judge",
                          problems=[f"server said: {said}"] if said else [],
                          fix=fixes.get(err.code, "check the server's log; tunesmith sent an OpenAI-style "
                                        f"chat completion request for model {model!r}"))


def _content(raw: bytes, endpoint: str) -> str:
    try:
        return json.loads(raw)["choices"][0]["message"]["content"] or ""  # None (a refusal, a tool call): unparsed
    except (ValueError, KeyError, IndexError, TypeError):
        raise TunesmithError(f"the judge at {endpoint} did not answer with a chat completion", where="judge",
                             problems=[f"got: {raw[:300].decode('utf-8', 'replace')}"],
                             fix="use an OpenAI-compatible server's /v1 base url") from None
