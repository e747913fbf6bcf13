"""An OpenAI-compatible chat endpoint, as the judge and synth ask it (any server: `tunesmith serve`, vLLM,
llama.cpp's server, OpenAI itself).

    ep = Endpoint.open("http://127.0.0.1:8000/v1", "my-model", KEYS, who="judge")
    ep.chat([{"role": "user", "content": "Hi"}], temperature=0.0) -> str

The API key is read from the first set variable of `keys` when each request is made, sent only as the
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
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import TunesmithError

RETRY_STATUS = {429, 500, 502, 503, 504}  # rate limits and overloaded servers pass; ask again
ATTEMPTS = 3
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


@dataclass(frozen=True)
class Endpoint:
    """Where to send chat completions; holds no secret (the key is read per request)."""

    url: str  # …/chat/completions, without user:password@
    model: str
    keys: tuple[str, ...]  # environment variables the API key may be in, first set wins
    who: str = "endpoint"  # how errors name it: "the judge", "the generator"
    basic: str | None = None  # the Basic auth header from user:password@ in the url given

    @classmethod
    def open(cls, url: str, model: str, keys: tuple[str, ...], who: str = "endpoint") -> Endpoint:
        """`url` is the API base (…/v1) or the full …/chat/completions address."""
        endpoint, basic = _split_credentials(url)
        endpoint = endpoint.rstrip("/")
        endpoint = endpoint if endpoint.endswith("/chat/completions") else endpoint + "/chat/completions"
        ep = cls(endpoint, model, keys, who, basic)
        if basic and ep.api_key():
            raise TunesmithError(f"the {who} url {redact_url(url)} holds user:password@ and an API key is set "
                                 "too; both would be the Authorization header", where=who,
                                 fix=f"drop user:password@ from the url, or unset {' and '.join(keys)}")
        return ep

    @property
    def shown(self) -> str:
        return redact_url(self.url)

    def api_key(self) -> str | None:
        return next((os.environ[v] for v in self.keys if os.environ.get(v)), None)

    def chat(self, messages: list[dict[str, str]], *, temperature: float = 0.0, max_tokens: int | None = None,
             timeout: float = 60.0, seed: int | None = None) -> str:
        """One chat completion's text; TunesmithError on anything a user has to fix (the url in it redacted)."""
        return self.complete(messages, temperature=temperature, max_tokens=max_tokens, timeout=timeout,
                             seed=seed)[0]

    def complete(self, messages: list[dict[str, str]], *, temperature: float = 0.0, max_tokens: int | None = None,
                 timeout: float = 60.0, seed: int | None = None) -> tuple[str, str | None]:
        """(text, finish_reason: 'stop', 'length' or None where the server does not say)."""
        key = self.api_key()
        headers = {"Content-Type": "application/json", **self._auth(key)}
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature}
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if seed is not None:
            payload["seed"] = seed
        body = json.dumps(payload).encode()
        attempt = 0
        while True:
            attempt += 1
            request = urllib.request.Request(self.url, body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return self._content(response.read())
            except urllib.error.HTTPError as err:
                if err.code in RETRY_STATUS and attempt < ATTEMPTS:
                    time.sleep(attempt)
                    continue
                raise self._http_error(err, key or self.basic) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                reason = getattr(err, "reason", err)
                if isinstance(reason, TimeoutError):
                    raise TunesmithError(f"the {self.who} at {self.shown} did not answer within {timeout:g} s",
                                         where=self.who, fix=f"raise the {self.who} timeout, or use fewer "
                                         "workers") from None
                raise TunesmithError(f"cannot reach the {self.who} at {self.shown}: {reason}", where=self.who,
                                     fix="start the server, or check the url (the API base, e.g. "
                                     "http://localhost:8000/v1) and that this machine can reach it") from None

    def _auth(self, key: str | None) -> dict[str, str]:
        auth = f"Bearer {key}" if key else self.basic
        return {"Authorization": auth} if auth else {}

    def first_model(self) -> str:
        """The first model the server lists at …/models (tunesmith serve, vLLM and llama.cpp list theirs)."""
        base = self.url.removesuffix("/chat/completions")
        request = urllib.request.Request(base + "/models", headers=self._auth(self.api_key()))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())["data"][0]["id"]
        except Exception as err:  # noqa: BLE001 (any failure means the same thing to the user)
            raise TunesmithError(f"cannot list the models of the {self.who} at {self.shown}: {err}", where=self.who,
                                 fix="start the server, or name the model") from None

    def _http_error(self, err: urllib.error.HTTPError, key: str | None) -> TunesmithError:
        """`key` is the credential sent, blanked out of what the server said."""
        said = err.read(300).decode("utf-8", "replace").strip()
        if key:
            said = said.replace(key, "***").replace(key.removeprefix("Basic "), "***")
        basic = bool(key and key.startswith("Basic "))
        fixes = {401: f"check the user:password in the {self.who} url (sent as HTTP Basic auth)" if basic else
                      f"set {' or '.join(self.keys)} to a key this server accepts" + ("" if key else " (none is set)"),
                 404: f"check the url (the API base, e.g. http://localhost:8000/v1) and the model name {self.model!r}"}
        fixes[403] = fixes[401]
        return TunesmithError(f"the {self.who} at {self.shown} answered HTTP {err.code} {err.reason}", where=self.who,
                              problems=[f"server said: {said}"] if said else [],
                              fix=fixes.get(err.code, "check the server's log; tunesmith sent an OpenAI-style "
                                            f"chat completion request for model {self.model!r}"))

    def _content(self, raw: bytes) -> tuple[str, str | None]:
        try:
            choice = json.loads(raw)["choices"][0]
            # content None (a refusal, a tool call) reads as ""
            return choice["message"]["content"] or "", choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError):
            raise TunesmithError(f"the {self.who} at {self.shown} did not answer with a chat completion",
                                 where=self.who, problems=[f"got: {raw[:300].decode('utf-8', 'replace')}"],
                                 fix="use an OpenAI-compatible server's /v1 base url") from None
