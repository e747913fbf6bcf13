"""Where questions and answers come from: a local model through tunesmith's render path (chat.prompt_for +
chat.stream, the way `tunesmith chat` answers), or any OpenAI-compatible endpoint (tunesmith.endpoint)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from tunesmith.errors import TunesmithError
from tunesmith.records import Message

KEY_VARIABLES = ("TUNESMITH_SYNTH_KEY", "OPENAI_API_KEY")


class Generator(Protocol):
    name: str  # for provenance: the model, and the url it was asked at
    model: str  # the model alone (a resumed run must use the same)

    def chat(self, messages: list[Message], *, temperature: float, max_tokens: int, seed: int) -> tuple[str, bool]:
        """(text, whether it ended by itself rather than at max_tokens)"""


class LocalGenerator:
    """A model spec or run folder, loaded once in this process (chat.open_session)."""

    def __init__(self, target: str, say: Callable[[str], None]) -> None:
        from tunesmith import chat

        self.session = chat.open_session(target, say=say)
        self.session.system = None  # synth's prompts bring their own system turn
        self.name = self.model = self.session.what

    def chat(self, messages: list[Message], *, temperature: float, max_tokens: int, seed: int) -> tuple[str, bool]:
        from tunesmith import chat

        settings = self.session.settings.model_copy(update={"temperature": temperature,
                                                            "max_new_tokens": max_tokens})
        prompt = chat.prompt_for(self.session, messages)
        reply = [x for x in chat.stream(self.session.model, self.session.tokenizer, prompt, settings, seed=seed)
                 if isinstance(x, chat.Reply)][0]
        return reply.text, reply.stopped


class EndpointGenerator:
    """An OpenAI-compatible chat endpoint; the model name is asked of GET /v1/models when not given."""

    def __init__(self, url: str, model: str | None) -> None:
        from tunesmith.endpoint import Endpoint, redact_url

        endpoint = Endpoint.open(url, model or "", KEY_VARIABLES, who="generator")
        # --api-model unset: the server's first model (one key and auth path for both requests)
        self.endpoint = endpoint if model else dataclasses.replace(endpoint, model=endpoint.first_model())
        self.model = self.endpoint.model
        self.name = f"{self.model} at {redact_url(url)}"

    def chat(self, messages: list[Message], *, temperature: float, max_tokens: int, seed: int) -> tuple[str, bool]:
        text, finish = self.endpoint.complete([{"role": m.role, "content": m.content} for m in messages],
                                              temperature=temperature, max_tokens=max_tokens, seed=seed, timeout=300)
        return text, finish != "length"


def open_generator(spec: str, api_model: str | None, say: Callable[[str], None]) -> Any:
    if spec.startswith(("http://", "https://")):
        return EndpointGenerator(spec, api_model)
    if api_model:
        raise TunesmithError("--api-model goes with a generator url", where="synth",
                             fix="drop --api-model, or pass --generator http://HOST:PORT/v1")
    return LocalGenerator(spec, say)
