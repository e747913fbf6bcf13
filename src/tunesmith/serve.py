"""`tunesmith serve`: an OpenAI-compatible HTTP API (FastAPI + uvicorn) over one or more models.

GET /v1/models and POST /v1/chat/completions (with and without `stream: true`, as server-sent events). Each model
is a chat.Session: the same render path and generation settings as chat and eval; a request's temperature,
top_p, max_tokens, stop and seed override the model's eval settings for that request only (a run trained on text
without a chat template continues the last message's text as written, as its chat does). Greedy requests that
arrive together are generated as one batch (batching.py: each answer the same as alone); a sampled one runs alone,
and the others wait their turn. Errors have OpenAI's body shape, and every bad request is a 4xx.

Function calling as OpenAI's API has it: a request's `tools` (tool_choice auto; none; required, or a function named:
the answer then starts as that call, as the template writes one, and the model writes its arguments), an assistant
message's `tool_calls` and `tool` messages go through the same render path as a data file's function-calling rows
(the model's own template where it writes calls, else toolcalls' text form); the calls an answer makes come back as
its `tool_calls` (finish reason "tool_calls"). Streamed, its text goes out until a call may begin; the calls come last.
An answer that thinks first (thinking.py) gives its thinking as `reasoning_content` beside the answer's `content`
(DeepSeek's API and vLLM's reasoning parsers do so; streamed, as `delta.reasoning_content`), and an assistant
message sent back with its `reasoning_content` renders it as training rendered its rows' reasoning.

Hostile use (tests/test_serve.py): every field is bounded in the request model (FastAPI answers 400
before any work); a body over MAX_BODY_BYTES is 413 and a non-JSON content type 415; tokenizing runs off the event
loop, after a character count that needs no tokenizer; a client that goes away cancels its generation at the
next token (streaming or not); a failure inside a stream ends it with an error event and [DONE]. Loopback by
default; any other address needs an API key or --allow-remote; the key is compared in constant time, never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Literal

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.exceptions import HTTPException

from tunesmith import batching, chat, generation, template, thinking, toolcalls
from tunesmith.chat import Reply
from tunesmith.config import EvalConfig
from tunesmith.errors import TunesmithError
from tunesmith.records import Message, ToolCall, compact_json

# Bounds of a request, declared in the model so that a request past them is refused before any work.
MAX_BODY_BYTES = 8 * 2**20  # a 10 MB body took 9.5 s to refuse after tokenizing; now 413 before parsing
MAX_MESSAGES = 1024
MAX_CHARS = 1_000_000  # all messages together; tokenizing 1M characters takes ~1 s (off the event loop)
MAX_STOPS, MAX_STOP_CHARS = 4, 256  # OpenAI's own limit is 4 stop strings
MAX_TOOLS, MAX_NAME = 128, 64  # OpenAI's own limits: 128 tools a request, names of at most 64 characters
CHARS_PER_TOKEN_MAX = 16  # more characters than context x 16 cannot fit: refused without tokenizing
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed takes (2**64 was an OverflowError, HTTP 500)


def _utf8(text: str) -> str:
    """chat.checked_text as a pydantic check: a lone surrogate like '\\ud800' is valid JSON, but the tokenizer
    failed on it (HTTP 500)."""
    try:
        return chat.checked_text(text, "request")
    except TunesmithError as err:
        raise ValueError(err.what) from None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Function(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=MAX_NAME)
    arguments: str | dict[str, Any] = Field("{}", description="the arguments: a JSON object as text (OpenAI's "
                                            "form) or the object itself")

    @field_validator("arguments")
    @classmethod
    def _object(cls, value: str | dict[str, Any]) -> str:
        if isinstance(value, str):
            if len(value) > MAX_CHARS:
                raise ValueError(f"arguments of {len(value):,} characters; at most {MAX_CHARS:,} are accepted")
            try:
                value = json.loads(_utf8(value))
            except ValueError as err:
                raise ValueError(f"arguments are not valid JSON: {err}") from None
            except RecursionError:
                raise ValueError("arguments are JSON nested too deeply") from None
        if not isinstance(value, dict):
            raise ValueError(f"arguments are {type(value).__name__}; a JSON object is expected")
        return _utf8(compact_json(value))


class CallPart(BaseModel):
    """An assistant message's tool call, as OpenAI's clients send it back."""
    model_config = ConfigDict(extra="ignore")  # id: calls are matched to outputs by order, as templates render them
    type: Literal["function"] = "function"
    function: Function


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=MAX_NAME)
    description: str | None = Field(None, max_length=MAX_CHARS)
    parameters: dict[str, Any] | None = Field(None, description="a JSON schema of its arguments")

    @field_validator("name", "description")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else _utf8(value)


class ToolSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: FunctionSpec


class ChosenFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=MAX_NAME)


class ToolChoice(BaseModel):
    """tool_choice naming the function the answer must call (LangChain's with_structured_output sends one)."""
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: ChosenFunction


class _Said(BaseModel):
    """A message's text: OpenAI's content parts ([{"type": "text", "text": ...}]) are joined into one text."""
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send name, tool_call_id...
    content: str | list[TextPart] = Field(description=f"text, or text parts; at most {MAX_CHARS:,} characters")

    @model_validator(mode="before")
    @classmethod
    def _no_calls(cls, data: Any) -> Any:
        """Calls beside another role's message are refused, not passed over (extra fields are ignored)."""
        if isinstance(data, dict) and data.get("tool_calls") and data.get("role") != "assistant":
            raise ValueError("only an assistant message makes tool_calls")
        return data

    @field_validator("content")
    @classmethod
    def _text(cls, value: str | list[TextPart] | None) -> str | None:
        if value is None:
            return None
        text = value if isinstance(value, str) else "".join(p.text for p in value)
        if len(text) > MAX_CHARS:
            raise ValueError(f"{len(text):,} characters; at most {MAX_CHARS:,} are accepted")
        return _utf8(text)

    def message(self) -> Message:
        role = getattr(self, "role")
        calls = tuple(ToolCall(c.function.name, c.function.arguments) for c in getattr(self, "tool_calls", ()))
        return Message("system" if role == "developer" else role, str(self.content or ""), tool_calls=calls,
                       reasoning=getattr(self, "reasoning_content", None) or None)


class SystemMessage(_Said):
    role: Literal["system", "developer"]


class UserMessage(_Said):
    role: Literal["user"]


class ToolMessage(_Said):
    role: Literal["tool"]  # matched to its call by order, as chat templates render them (tool_call_id: not read)


class AssistantMessage(_Said):
    role: Literal["assistant"]
    content: str | list[TextPart] | None = Field(None, description="text; null or left out beside tool_calls")
    tool_calls: list[CallPart] = Field(default_factory=list, max_length=MAX_TOOLS)  # type: ignore[assignment]
    reasoning_content: str | None = Field(None, description="the answer's thinking, as served answers give it")

    @field_validator("reasoning_content")
    @classmethod
    def _thought(cls, value: str | None) -> str | None:
        return None if value is None else cls._text(value)

    @model_validator(mode="after")
    def _said(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls:
            raise ValueError("content is required (null only beside tool_calls)")
        return self


ChatMessage = Annotated[SystemMessage | UserMessage | ToolMessage | AssistantMessage, Field(discriminator="role")]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # unknown OpenAI options (logprobs, ...) are ignored, not refused
    model: str = Field(max_length=512)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2, description="under 0.001 decodes greedily, as 0 does")
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=2**20)
    max_completion_tokens: int | None = Field(None, ge=1, le=2**20)
    stop: str | list[str] | None = Field(None, description=f"at most {MAX_STOPS} strings of at most "
                                         f"{MAX_STOP_CHARS} characters")
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    n: int = Field(1, ge=1, le=1)
    tools: list[ToolSpec] = Field(default_factory=list, max_length=MAX_TOOLS)
    tool_choice: Literal["auto", "none", "required"] | ToolChoice = Field(
        "auto", description="auto; none (the tools are not offered); required (the answer calls one of them); or "
                            "{type: function, function: {name}} (it calls that one)")

    def offered(self) -> str | None:
        """The tools offered to the model, as a conversation's JSON text; None for none (or tool_choice none)."""
        if not self.tools or self.tool_choice == "none":
            return None
        return compact_json([t.model_dump(exclude_none=True) for t in self.tools])

    def forced(self) -> tuple[bool, str | None]:
        """(whether the answer must call a function, the one it must call or None for any)."""
        if isinstance(self.tool_choice, ToolChoice):
            return True, self.tool_choice.function.name
        return self.tool_choice == "required", None

    @field_validator("stop")
    @classmethod
    def _stop_text(cls, value: str | list[str] | None) -> str | list[str] | None:
        texts = [value] if isinstance(value, str) else value or []
        if len(texts) > MAX_STOPS:
            raise ValueError(f"{len(texts)} stop strings; at most {MAX_STOPS} are accepted")
        for text in texts:
            if len(text) > MAX_STOP_CHARS:
                raise ValueError(f"a stop string of {len(text):,} characters; at most {MAX_STOP_CHARS} are accepted")
            _utf8(text)
        return value

    @model_validator(mode="after")
    def _total(self) -> ChatRequest:
        total = sum(len(str(m.content or "")) + len(getattr(m, "reasoning_content", None) or "")
                    + sum(len(c.function.arguments) for c in getattr(m, "tool_calls", ())) for m in self.messages) \
            + sum(len(t.function.model_dump_json()) for t in self.tools)
        if total > MAX_CHARS:
            raise ValueError(f"the messages hold {total:,} characters; at most {MAX_CHARS:,} are accepted")
        return self

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": kind, "param": param, "code": code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


def create_app(sessions: dict[str, chat.Session], api_key: str | None = None) -> FastAPI:
    """The API over `sessions` (model id -> Session); `api_key` None = no key needed (loopback use)."""
    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None)
    queue = asyncio.Lock()  # requests wait here in turn, not in the thread pool
    generating = threading.Lock()  # held by the generating thread: an abandoned generation ends before the next
    batchers: dict[str, batching.Batcher] = {}  # model id -> its batcher, made on its first greedy request
    app.state.batchers = batchers  # each one's `sizes`: the rows of every batch it generated
    created = int(time.time())
    _handlers(app, api_key)

    @app.get("/v1/models")
    async def _models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "tunesmith"} for name in sessions]}

    @app.post("/v1/chat/completions", max_body_size=MAX_BODY_BYTES)  # chunked bodies
    async def _completions(req: ChatRequest, request: Request) -> Any:
        session = sessions.get(req.model)
        if session is None:
            raise ApiError(404, f"The model '{req.model}' does not exist; served: {', '.join(sessions)}",
                           param="model", code="model_not_found")
        prompt, settings, force = await asyncio.to_thread(_prepare, session, req, generating)  # off the loop
        if req.model not in batchers:
            batchers[req.model] = batching.Batcher(session.model, session.tokenizer, session.settings, generating)
        run = _Generation(session, prompt, settings, req, generating, batchers[req.model], force)
        turn = contextlib.nullcontext() if run.batched else queue
        if req.stream:
            return StreamingResponse(_events(run, req.model, turn, _calling(session, req)),
                                     media_type="text/event-stream")
        async with turn:
            reply = await _until_done(run, request)
        return _completion(req.model, run, reply, _calling(session, req)) if reply is not None else None

    return app


def _calling(session: chat.Session, req: ChatRequest) -> bool:
    """Whether the model was offered tools: the request's, or the ones its run's rows offered (in their system
    prompt, or as the template's tools), unless tool_choice is none."""
    return req.tool_choice != "none" and (req.offered() is not None or session.offers_tools)


def _handlers(app: FastAPI, api_key: str | None) -> None:
    """OpenAI-shaped errors for everything (validation, 404/405/413 from the framework), the key, JSON only."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return _validation_error(err.errors()).response()

    @app.exception_handler(HTTPException)
    async def _http(_: Request, err: HTTPException) -> JSONResponse:
        code = {400: "invalid_json", 413: "request_too_large", 404: "not_found",
                405: "method_not_allowed"}.get(err.status_code)
        detail = {400: "The request body could not be parsed as JSON (nested too deeply?)",
                  413: f"The request body is over {MAX_BODY_BYTES:,} bytes"}.get(err.status_code, str(err.detail))
        return ApiError(err.status_code, detail, code=code).response()

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Any:
        if api_key and not _key_ok(request.headers.get("authorization", ""), api_key):
            return ApiError(401, "Incorrect API key provided", code="invalid_api_key").response()
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:  # said, not read: refused first
            return ApiError(413, f"The request body is over {MAX_BODY_BYTES:,} bytes",
                            code="request_too_large").response()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and kind != "application/json":
            return ApiError(415, f"Content-Type must be application/json, not {kind or 'missing'}",
                            code="unsupported_media_type").response()
        return await call_next(request)


def _key_ok(header: str, key: str) -> bool:
    given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
    return hmac.compare_digest(given.encode(), key.encode())


def _validation_error(errors: Sequence[Any]) -> ApiError:
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return ApiError(400, f"The request body is not valid JSON: {first.get('ctx', {}).get('error', '')}",
                        code="invalid_json")
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    what = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return ApiError(400, f"Invalid request: {where or 'body'}: {what}", param=where or None,
                    code="invalid_request")


def _prepare(session: chat.Session, req: ChatRequest, generating: threading.Lock
             ) -> tuple[str, EvalConfig, Force | None]:
    """The prompt (the session's render path), this request's generation settings and the call its tool_choice
    forces (_forced: the prompt then ends with that call's start); too long is a 400."""
    messages = [m.message() for m in req.messages]
    if messages[-1].role not in ("user", "tool"):
        raise ApiError(400, "The last message must be from the user (or a tool's output)", param="messages",
                       code="invalid_messages")
    for i, (before, m) in enumerate(zip([None, *messages], messages)):
        if m.role == "tool" and not (before is not None and (before.tool_calls or before.role == "tool")):
            raise ApiError(400, f"messages.{i}: a tool's output follows the assistant message whose tool_calls "
                           "called it", param=f"messages.{i}", code="invalid_messages")
    update = {"temperature": req.temperature, "top_p": req.top_p,
              "max_new_tokens": req.max_completion_tokens or req.max_tokens}
    settings = session.settings.model_copy(update={k: v for k, v in update.items() if v is not None})
    context = getattr(session.model.config, "max_position_embeddings", None)
    chars = sum(len(m.content) + len(m.reasoning or "") + sum(len(c.arguments) for c in m.tool_calls)
                for m in messages)
    if context and chars > context * CHARS_PER_TOKEN_MAX:
        raise ApiError(400, f"This model's maximum context length is {context} tokens; the messages hold {chars:,} "
                       f"characters, more than any tokenization of them fits", param="messages",
                       code="context_length_exceeded")
    try:
        prompt = chat.prompt_for(session, messages, tools=req.offered(), offer=req.tool_choice != "none")
    except jinja2.TemplateError as err:  # a template's raise_exception() on an order of roles it does not take
        raise ApiError(400, f"The model's chat template cannot render these messages: {err.message}",
                       param="messages", code="invalid_messages") from None
    force = _forced(session, req, prompt, generating)
    prompt += force.prefix if force else ""
    used = len(session.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if context and used + settings.max_new_tokens > context:
        raise ApiError(400, f"This model's maximum context length is {context} tokens; the messages use {used} "
                       f"and max_tokens asks for {settings.max_new_tokens} more", param="messages",
                       code="context_length_exceeded")
    return prompt, settings, force


@dataclasses.dataclass(frozen=True)
class Force:
    """A call tool_choice forces: the start of the answer the prompt ends with (template.call_prefix, through the
    function's name), and that name."""

    prefix: str
    name: str


def _forced(session: chat.Session, req: ChatRequest, prompt: str, generating: threading.Lock) -> Force | None:
    """The call a tool_choice of a named function forces, or of required: the offered function the model finds
    likeliest after a call's opening (generation.likeliest; a model never calls one that is not offered); None
    where it forces none. Forcing with no tools offered, or naming a function not offered, is a 400."""
    must, name = req.forced()
    if not must:
        return None
    offered = req.offered() or session.tools
    names = toolcalls.names(offered) if offered else toolcalls.offered_names(session.system)
    if session.raw or not names:
        raise ApiError(400, "tool_choice asks for a function call, but no tools are offered (the request's "
                       "`tools`, or the ones its run's rows offered)", param="tool_choice", code="invalid_tool_choice")
    if name is not None and name not in names:
        raise ApiError(400, f"tool_choice names the function {name!r}, which is not among the tools offered: "
                       f"{', '.join(names)}", param="tool_choice", code="invalid_tool_choice")
    prefixes = {n: template.call_prefix(session.tokenizer, n) for n in ([name] if name is not None else names)}
    if name is None and len(names) > 1:
        opening = template.call_prefix(session.tokenizer)  # up to the name; a name ends with its closing quote
        ends = [prefixes[n][len(opening):-1] for n in names]  # less the "{"
        with generating:  # the model is not generating for another request meanwhile
            name = names[generation.likeliest(session.model, session.tokenizer, prompt + opening, ends)]
    name = name or names[0]
    return Force(prefixes[name], name)


class _Generation:
    """One request's generation with a cancel event: a greedy one joins the model's batcher (requests that arrive
    together generate together); a sampled one runs alone through chat.stream, holding the generating lock (its
    seed owns torch's RNG). `batched` ones do not wait in the server's queue."""

    def __init__(self, session: chat.Session, prompt: str, settings: EvalConfig, req: ChatRequest,
                 generating: threading.Lock, batcher: batching.Batcher, force: Force | None = None) -> None:
        self.cancel, self.force = threading.Event(), force  # the call the prompt starts the answer with
        self.inside = thinking.opened(prompt)  # DeepSeek-R1's prompt opens the thinking: the answer starts inside it
        # A repetition penalty would count the batch's left padding (often the eos token) against a row's own ending.
        self.batched = settings.temperature < generation.GREEDY_BELOW and settings.repetition_penalty == 1.0
        if self.batched:
            self.pieces = batcher.stream(prompt, settings.max_new_tokens, req.stops(), self.cancel)
        else:
            self.pieces = chat.stream(session.model, session.tokenizer, prompt, settings, stop=req.stops(),
                                      seed=req.seed, cancel=self.cancel, hold=generating)

    def reply(self) -> Reply:
        return list(self.pieces)[-1]

    @property
    def prefix(self) -> str:
        return self.force.prefix if self.force else ""


async def _until_done(run: _Generation, request: Request) -> Reply | None:
    """The whole answer; None when the client went away first (its generation is cancelled at the next token).
    A failure of the generation is a 500 with OpenAI's error body."""
    answer = asyncio.ensure_future(_waiting(run.reply))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            run.cancel.set()
            await asyncio.wait({answer})
            return None
        return answer.result()
    except Exception as err:  # noqa: BLE001 - said to the client; the server stays up
        raise _failed(err) from err
    finally:
        gone.cancel()
        run.cancel.set()  # also when this handler is cancelled (the server stopping)


# Threads that only wait for a generation's next piece or its end. Not asyncio's default pool (6 threads on 2
# cores): eight requests each waiting there for a whole answer left no thread to tokenize the later ones, which
# then missed the batch (batches of 6 and 2 where all 8 had been sent together).
_WAITERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="tunesmith-wait")


async def _waiting(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_WAITERS, fn, *args)


def _failed(err: Exception) -> ApiError:
    """A generation that raised (out of memory, ...), in OpenAI's error body: a 500, or a stream's error event."""
    return ApiError(500, f"generation failed: {type(err).__name__}: {err}", code="generation_failed",
                    kind="server_error")


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone away: the ASGI server's http.disconnect (what StreamingResponse waits
    for too; polling request.is_disconnected() never saw it behind the key middleware)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _events(run: _Generation, model: str, queue: Any, tools: bool = False) -> AsyncIterator[str]:
    """Server-sent events: a role chunk, one chunk per piece of text, a finish chunk with usage, [DONE]. Thinking
    goes out as reasoning_content (_ThinkWatch). Where the model was offered tools, its answer streams until a call
    may begin (_CallWatch), and the rest comes at the end with the answer's tool_calls. A failure ends the stream
    with an error event (OpenAI's error body) and [DONE]; a client that goes away (Starlette cancels this
    generator) cancels the generation."""
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}

    def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        return "data: " + json.dumps({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                                      **extra}, ensure_ascii=False) + "\n\n"

    think, watch, start = _ThinkWatch(run.inside), _CallWatch(), run.prefix  # start: the forced call's, unsent
    try:
        async with queue:
            yield chunk({"role": "assistant", "content": ""})
            while (item := await _waiting(next, run.pieces, None)) is not None:
                if not isinstance(item, Reply):
                    item, start = start + item, ""
                    for key, text in think.more(item):
                        said = text if key != "content" or not tools else watch.more(text)
                        if said:
                            yield chunk({key: said})
                    continue
                for key, text in think.rest():  # an answer's rest comes with its calls below, where it may call
                    if key != "content" or not tools:
                        yield chunk({key: text})
                if tools:
                    message, finish = _message(item, tools, run.force, run.inside)
                    calls = [{"index": i, **c} for i, c in enumerate(message.get("tool_calls", ()))]
                    rest = watch.rest(message["content"])
                    if rest or calls:
                        yield chunk({**({"content": rest} if rest else {}), **({"tool_calls": calls} if calls else {})})
                    yield chunk({}, finish, usage=_usage(item))
                else:
                    yield chunk({}, "stop" if item.stopped else "length", usage=_usage(item))
    except Exception as err:  # noqa: BLE001 - the client hears of any failure; the server stays up
        yield "data: " + json.dumps(_failed(err).body, ensure_ascii=False) + "\n\n"
    finally:
        run.cancel.set()
    yield "data: [DONE]\n\n"


class _ThinkWatch:
    """A streamed answer's pieces as (field, text): an opening <think> block's text as reasoning_content, what
    follows </think> as content (the whitespace at the start of each left out, as thinking.split leaves it); an
    answer that does not think goes out as it comes, once its start cannot be "<think>". A tail that may be the
    start of a mark waits for the next piece. `inside`: the prompt opened the block itself."""

    def __init__(self, inside: bool = False) -> None:
        self.state, self.buf, self.fresh = ("thinking" if inside else "opening"), "", True

    def more(self, piece: str) -> list[tuple[str, str]]:
        self.buf += piece
        out: list[tuple[str, str]] = []
        if self.state == "opening":
            head = self.buf.lstrip()
            if head.startswith(thinking.OPEN):
                self.buf, self.state = head[len(thinking.OPEN):], "thinking"
            elif thinking.OPEN.startswith(head):
                return []
            else:
                self.state, self.fresh = "answer", False
        if self.state == "thinking":
            at = self.buf.find(thinking.CLOSE)
            if at < 0:
                keep = _mark_start(self.buf, thinking.CLOSE)
                said, self.buf = self.buf[:len(self.buf) - keep], self.buf[len(self.buf) - keep:]
                return self._said("reasoning_content", said)
            out, self.buf = self._said("reasoning_content", self.buf[:at]), self.buf[at + len(thinking.CLOSE):]
            self.state, self.fresh = "answer", True
        said, self.buf = self.buf, ""
        return out + self._said("content", said)

    def _said(self, key: str, text: str) -> list[tuple[str, str]]:
        if self.fresh:
            text = text.lstrip()
            self.fresh = not text
        return [(key, text)] if text else []

    def rest(self) -> list[tuple[str, str]]:
        """What waits at the end: a tail of the thinking, or an answer that was only whitespace or "<th"."""
        said, self.buf = self.buf, ""
        if self.state == "opening":
            return [("content", said)] if said else []
        return self._said("reasoning_content" if self.state == "thinking" else "content", said)


def _mark_start(text: str, mark: str) -> int:
    """The length of the longest tail of `text` that is the start of `mark` (0: none): what waits for the next piece
    of a stream before it can be said whether the mark begins there."""
    return next((n for n in range(len(mark) - 1, 0, -1) if text.endswith(mark[:n])), 0)


class _CallWatch:
    """What of a streamed answer is surely text, where the model may call a function: everything before a
    <tool_call> block, less a tail that could be the start of one and the whitespace at either end (a Reply's text
    is stripped); nothing where the answer opens with "{" (Llama 3 writes a call as bare JSON). `rest` is what
    remains of the final content after what was sent."""

    def __init__(self) -> None:
        self.text, self.sent = "", ""

    def more(self, piece: str) -> str:
        self.text += piece
        text = self.text.lstrip()
        if text.startswith("{"):
            return ""
        at = text.find(toolcalls.CALL_OPEN)
        if at < 0:  # a tail that may be the start of "<tool_call>" waits
            at = len(text) - _mark_start(text, toolcalls.CALL_OPEN)
        safe = text[:at].rstrip()  # grows as text does: a prefix of the text, less a tail that only shrinks
        if len(safe) <= len(self.sent):
            return ""
        new, self.sent = safe[len(self.sent):], safe
        return new

    def rest(self, content: str | None) -> str:
        content = content or ""
        return content[len(self.sent):] if content.startswith(self.sent) else content


def _completion(model: str, run: _Generation, reply: Reply, tools: bool) -> dict[str, Any]:
    message, finish = _message(reply, tools, run.force, run.inside)
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                         "finish_reason": finish}],
            "usage": _usage(reply)}


def _message(reply: Reply, tools: bool, force: Force | None = None, inside: bool = False
             ) -> tuple[dict[str, Any], str]:
    """The answer as OpenAI's message fields, and its finish reason. Its thinking (thinking.split) is its
    `reasoning_content`, the rest its content. Where the request offered tools, the calls the answer makes are its
    `tool_calls` (finish reason "tool_calls"): <tool_call> blocks (toolcalls' text form, and Qwen's), or an answer
    that is nothing but call JSON (Llama 3's form); its other text stays its content. A forced call (`force`: the
    answer was started as it) is the forced function with the JSON object the model went on with. `inside`: the
    prompt opened the thinking (DeepSeek-R1's), so the answer starts inside it."""
    finish = "stop" if reply.stopped else "length"
    if force is not None:
        made = toolcalls.forced("{" + reply.text, force.name)  # the prefix opened the arguments' object
        if made is not None:
            return {"content": None, "tool_calls": [_call(made)]}, "tool_calls"
        reply = dataclasses.replace(reply, text=force.prefix + reply.text)  # not a call: what it wrote, whole
    thought = thinking.split(reply.text, opened=inside)
    said = reply.text if thought.reasoning is None else thought.answer
    extra = {"reasoning_content": thought.reasoning} if thought.reasoning else {}
    text, calls = toolcalls.parse(said) if tools else (said, ())
    if tools and not calls and said.strip().startswith("{"):
        found = toolcalls.calls_in(said)
        text, calls = ("", tuple(ToolCall(n, a) for n, a in found)) if found else (text, ())
    if not calls:
        return {"content": said, **extra}, finish
    return {"content": text or None, **extra, "tool_calls": [_call(c) for c in calls]}, \
        "tool_calls" if reply.stopped else finish


def _call(call: ToolCall) -> dict[str, Any]:
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def _usage(reply: Reply) -> dict[str, int]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.new_tokens,
            "total_tokens": reply.prompt_tokens + reply.new_tokens}


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host`.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_sessions(targets: Sequence[str], say: Any = print, precision: str = "fp32") -> dict[str, chat.Session]:
    """One Session per target, named by `NAME=SPEC`, else the run or model folder's name (or the spec);
    `base` is the base model of the first run folder among the targets (compare base and tuned in an app).
    Names are checked before any model loads."""
    from pathlib import Path

    from tunesmith import rundir

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
        sessions[name] = chat.open_session(runs[0] if base else spec, say=say, base=base,
                                           options={"precision": precision})
        say(f"serving {sessions[name].what} as model {name!r}")
    return sessions


def serve(targets: Sequence[str], *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          allow_remote: bool = False, precision: str = "fp32", say: Any = print) -> None:
    """Serve `targets` on host:port; another address than loopback needs `api_key` or `allow_remote` (checked
    before any model loads)."""
    import uvicorn

    if not is_loopback(host) and not api_key and not allow_remote:
        raise TunesmithError(f"--host {host} without --api-key would let anyone who reaches this port use the "
                             "models", where="serve", fix="add --api-key KEY (or set TUNESMITH_API_KEY); "
                             "--allow-remote serves without a key on purpose")
    app = create_app(open_sessions(targets, say, precision), api_key)
    say(f"OpenAI-compatible API on http://{host}:{port}/v1" + (" (API key required)" if api_key else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning")
