"""`tunesmith serve`: an OpenAI-compatible HTTP API (FastAPI + uvicorn) over one or more models.

GET /v1/models and POST /v1/chat/completions (with and without `stream: true`, as server-sent events). Each model
is a chat.Session: the same render path and generation settings as chat and eval; a request's temperature,
top_p, max_tokens, stop and seed override the model's eval settings for that request only. One generation runs
at a time (an asyncio lock: a small CPU model gains nothing from interleaving, and requests never share a
batch, so outputs cannot mix); the others wait their turn. Errors have OpenAI's body shape. Loopback by default;
an API key, when set, is compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunesmith import chat
from tunesmith.config import EvalConfig
from tunesmith.records import Message, Reply


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send name, tool fields...
    role: Literal["system", "user", "assistant", "developer"]
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # unknown OpenAI options (logprobs, ...) are ignored, not refused
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


def create_app(sessions: dict[str, chat.Session], api_key: str | None = None) -> FastAPI:
    """The API over `sessions` (model id -> Session); `api_key` None = no key needed (loopback use)."""
    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None)
    lock = asyncio.Lock()
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_error(err.errors()).body, status_code=400)

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        if api_key and not _key_ok(request.headers.get("authorization", ""), api_key):
            err = ApiError(401, "Incorrect API key provided", code="invalid_api_key")
            return JSONResponse(err.body, status_code=401)
        return await call_next(request)

    @app.get("/v1/models")
    async def _models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "tunesmith"} for name in sessions]}

    @app.post("/v1/chat/completions")
    async def _completions(request: Request) -> Any:
        body = await _json(request)
        try:
            req = ChatRequest.model_validate(body)
        except ValidationError as err:
            raise _validation_error(err.errors()) from None
        session = sessions.get(req.model)
        if session is None:
            raise ApiError(404, f"The model '{req.model}' does not exist; served: {', '.join(sessions)}",
                           param="model", code="model_not_found")
        prompt, settings = _prepare(session, req)
        if req.stream:
            return StreamingResponse(_events(session, req, prompt, settings, lock), media_type="text/event-stream")
        async with lock:
            reply = await asyncio.to_thread(_generate, session, prompt, settings, req)
        return _completion(req.model, reply)

    return app


def _key_ok(header: str, key: str) -> bool:
    given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
    return hmac.compare_digest(given.encode(), key.encode())


async def _json(request: Any) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"The request body is not valid JSON: {err}", code="invalid_json") from None


def _validation_error(errors: Sequence[Any]) -> ApiError:
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return ApiError(400, f"Invalid request: {where or 'body'}: {first.get('msg', 'invalid')}", param=where or None,
                    code="invalid_request")


def _prepare(session: chat.Session, req: ChatRequest) -> tuple[str, EvalConfig]:
    """The prompt (the session's render path) and this request's generation settings; too long is a 400."""
    messages = [Message("system" if m.role == "developer" else m.role, m.content) for m in req.messages]
    if messages[-1].role != "user":
        raise ApiError(400, "The last message must be from the user", param="messages", code="invalid_messages")
    prompt = chat.prompt_for(session, messages)
    update = {"temperature": req.temperature, "top_p": req.top_p,
              "max_new_tokens": req.max_completion_tokens or req.max_tokens}
    settings = session.settings.model_copy(update={k: v for k, v in update.items() if v is not None})
    used = len(session.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    context = getattr(session.model.config, "max_position_embeddings", None)
    if context and used + settings.max_new_tokens > context:
        raise ApiError(400, f"This model's maximum context length is {context} tokens; the messages use {used} "
                       f"and max_tokens asks for {settings.max_new_tokens} more", param="messages",
                       code="context_length_exceeded")
    return prompt, settings


def _stops(req: ChatRequest) -> list[str]:
    return [req.stop] if isinstance(req.stop, str) else list(req.stop or [])


def _generate(session: chat.Session, prompt: str, settings: EvalConfig, req: ChatRequest) -> Reply:
    return list(chat.stream(session.model, session.tokenizer, prompt, settings, stop=_stops(req), seed=req.seed))[-1]


def _completion(model: str, reply: Reply) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                                         "finish_reason": "stop" if reply.stopped else "length"}],
            "usage": _usage(reply)}


def _usage(reply: Reply) -> dict[str, int]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.new_tokens,
            "total_tokens": reply.prompt_tokens + reply.new_tokens}


async def _events(session: chat.Session, req: ChatRequest, prompt: str, settings: EvalConfig, lock: Any
                  ) -> AsyncIterator[str]:
    """Server-sent events: a role chunk, one chunk per piece of text, a finish chunk with usage, [DONE]."""
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": req.model}

    def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        return "data: " + json.dumps({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                                      **extra}, ensure_ascii=False) + "\n\n"

    async with lock:
        yield chunk({"role": "assistant", "content": ""})
        pieces = chat.stream(session.model, session.tokenizer, prompt, settings, stop=_stops(req), seed=req.seed)
        while (item := await asyncio.to_thread(next, pieces, None)) is not None:
            if isinstance(item, Reply):
                yield chunk({}, "stop" if item.stopped else "length", usage=_usage(item))
            else:
                yield chunk({"content": item})
    yield "data: [DONE]\n\n"


def open_sessions(targets: Sequence[str], say: Any = print) -> dict[str, chat.Session]:
    """One Session per target, named by `NAME=SPEC`, else the run or model folder's name (or the spec);
    `base` is the base model of the first run folder among the targets (compare base and tuned in an app).
    Names are checked before any model loads."""
    from pathlib import Path

    from tunesmith import rundir
    from tunesmith.errors import TunesmithError

    named: dict[str, str] = {}
    for target in targets:
        name, _, spec = target.partition("=") if "=" in target else ("", "", target)
        name = name or (Path(spec).name if Path(spec).exists() else spec)
        if name in named:
            raise TunesmithError(f"two served models are both named {name!r}", fix="name them: --model NAME=SPEC")
        named[name] = spec
    runs = [spec for spec in named.values() if rundir.RunDir(Path(spec)).config.is_file()]
    sessions: dict[str, chat.Session] = {}
    for name, spec in named.items():
        base = spec == "base" and bool(runs)
        sessions[name] = chat.open_session(runs[0] if base else spec, say=say, base=base)
        say(f"serving {sessions[name].what} as model {name!r}")
    return sessions


def serve(targets: Sequence[str], *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          say: Any = print) -> None:
    import uvicorn

    app = create_app(open_sessions(targets, say), api_key)
    say(f"OpenAI-compatible API on http://{host}:{port}/v1" + (" (API key required)" if api_key else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning")
