"""`tunesmith chat`: talk to a run's tuned model (or any model), answers streamed as they are generated.

Every prompt goes through the path training and eval use: template.fit (the run's template settings, a system
turn merged where the template rejects one) and template.prompt_text; generation takes eval's settings through
generation.generation_kwargs. So `chat --prompt` answers a row exactly as eval generated it, and the tuned model
sees its training format, system prompt included. `serve` streams through `stream` below too.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith import generation, models, rundir, template, thinking, toolcalls
from tunesmith.config import EvalConfig, TemplateConfig
from tunesmith.errors import TunesmithError
from tunesmith.records import Conversation, Message

HELP = ("commands: /reset (forget the conversation), /system TEXT (new system prompt; /system alone clears it), "
        "/tool TEXT (the output of the function the model just called), /exit")


@dataclass(frozen=True)
class Reply:
    """One answer of chat or serve: the text, whether it ended by itself (end-of-turn token or a stop string)
    rather than at the token limit, and the token counts OpenAI's `usage` reports."""

    text: str
    stopped: bool
    prompt_tokens: int
    new_tokens: int


@dataclass
class Session:
    """A model, its tokenizer and template settings, and the conversation so far (mutable: it grows)."""

    model: Any
    tokenizer: Any
    what: str  # what was loaded, for the banner
    settings: EvalConfig
    template: TemplateConfig
    system: str | None = None
    history: list[Message] = field(default_factory=list)
    raw: bool = False  # a run trained on plain text or segments rows (no chat template): it continues the text typed
    tools: str | None = None  # the tools every training row offered (a template that writes calls): offered in chat
    shade: tuple[str, str] | None = None  # what an answer's thinking is wrapped in as it streams (a terminal's dim)

    @property
    def offers_tools(self) -> bool:
        """Whether the run's rows offered tools: as the template's tools, or in the text form's system prompt."""
        system = self.system
        return self.tools is not None or (system is not None and toolcalls.without_tools(system) != system)

    def prompt(self, user: str) -> str:
        """The exact text the model continues: earlier turns, this user turn, the generation prompt."""
        return prompt_for(self, [*self.history, Message("user", user)])


def prompt_for(session: Session, messages: Sequence[Message], tools: str | None = None, offer: bool = True) -> str:
    """The text the model continues after `messages` (ending on a user turn, or a tool's output), rendered as
    training rendered its rows, with `tools` offered (a JSON list of schemas: serve's requests), else the tools the
    run's rows offered, unless `offer` is False (serve's tool_choice none); the session's system prompt goes first
    where the messages bring none. A raw session's prompt is the last message's text as typed, as eval prompts a
    text or segments row with its own text."""
    if session.raw:
        return messages[-1].content
    turns = list(messages)
    # a run trained on the text form had its tools in every row's system prompt: a request's own tools replace them
    system = toolcalls.without_tools(session.system) if session.system and (tools or not offer) else session.system
    tools = None if not offer else tools if tools is not None else session.tools
    if system and not (turns and turns[0].role == "system"):
        turns.insert(0, Message("system", system))
    conv = Conversation((*turns, Message("assistant", "")), "chat", tools=tools)
    convs, _ = template.fit(session.tokenizer, [conv], session.template)
    return template.prompt_text(session.tokenizer, convs[0])[0]


def open_session(target: str, *, system: str | None = None, options: dict[str, Any] | None = None,
                 say: Callable[[str], None] = print, base: bool = False) -> Session:
    """A Session on a run folder (its tuned weights, template and eval settings; by default the system prompt
    every training row had) or on any model spec. `options` override eval settings (max_new_tokens, ...);
    `base` takes the run's starting model instead, with the same settings (base vs tuned on equal terms)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar is noise in a chat or a server log
    run = rundir.RunDir(Path(target))
    if run.config.is_file():
        from tunesmith import config

        cfg = config.load(run.config)
        model, tok, what = generation.load_model("base" if base else "tuned", run, cfg)
        settings, tmpl = cfg.eval, cfg.template
        plan = run.read_plan()
        if plan is not None and plan.eval_max_new_tokens:  # raised for answers that think, as the run's eval was
            settings = settings.model_copy(update={"max_new_tokens": plan.eval_max_new_tokens})
        train = run.read_conversations("train")
        raw = template.trained_raw(train)
        if raw:
            say("this run trained on text without a chat template: the model continues what you type, as written "
                "(no system prompt, no history)")
        elif system is None:
            system = training_system_prompt(train)
            if system:
                say(f"system prompt (every training row had it): {system}")
        tools = next(iter(offered)) if len(offered := {c.tools for c in train}) == 1 else None
        if tools:
            say(f"tools offered (every training row offered them): {', '.join(toolcalls.names(tools))}")
    else:
        model, tok, what = models.load_target(target)
        settings, tmpl, raw, tools = EvalConfig(), TemplateConfig(), False, None
    settings = settings.model_copy(update=options or {})
    models.for_inference(model, settings.precision)  # a run's model already is, unless `options` changed it
    return Session(model, tok, what, settings, tmpl, None if raw else system or None, raw=raw,
                   tools=None if raw else tools)


def training_system_prompt(convs: Sequence[Conversation]) -> str | None:
    """The system prompt shared by every training row, or None where rows differ or have none.

    >>> m = lambda *t: Conversation(tuple(Message(r, c) for r, c in t), "x")
    >>> training_system_prompt([m(("system", "Be kind."), ("user", "hi"), ("assistant", "hello"))] * 2)
    'Be kind.'
    >>> training_system_prompt([m(("user", "hi"), ("assistant", "hello"))]) is None
    True
    """
    firsts = Counter(c.messages[0].content if c.messages and c.messages[0].role == "system" else None
                     for c in convs)
    return next(iter(firsts)) if len(firsts) == 1 else None


def stream(model: Any, tokenizer: Any, prompt: str, settings: EvalConfig, *, stop: Sequence[str] = (),
           seed: int | None = None, cancel: threading.Event | None = None,
           hold: AbstractContextManager[Any] | None = None) -> Iterator[str]:
    """Yield the answer's text piece by piece while `model.generate` runs in a thread; the last item is a Reply.

    `stop` strings end the answer (OpenAI's `stop`; the text is cut before them); end-of-turn tokens always do.
    Setting `cancel` (or closing this generator) ends the generation at its next token: a server sets it when
    the client goes away. `hold` is held by the generating thread from seeding to the last token (serve: one
    generation at a time, an abandoned one included, so a seeded request never shares torch's RNG).
    """
    import torch
    from transformers import TextIteratorStreamer

    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    cancel = cancel or threading.Event()
    until = Until(tokenizer, ids["input_ids"].shape[1], stop, cancel)
    kwargs = generation.generation_kwargs(tokenizer, settings) | {"stopping_criteria": [until]}
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            with hold or nullcontext():
                torch.manual_seed(settings.seed if seed is None else seed)
                with torch.inference_mode():
                    result["ids"] = model.generate(**ids, streamer=streamer, **kwargs)
        except BaseException as err:  # re-raised in the caller's thread, after the streamer is closed
            result["error"] = err
            streamer.end()

    model.eval()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        text, cut, held = "", None, ""
        for piece in streamer:
            # A torn last character (U+FFFD) waits for the next piece; at the end it is dropped.
            piece = held + piece
            held = piece[len(generation.whole_characters(piece)):]
            piece = piece[: len(piece) - len(held)]
            text += piece
            cut = first_stop(text, stop)
            if cut is not None:
                piece = piece[: len(piece) - (len(text) - cut)]
                text = text[:cut]
            if piece:
                yield piece
            if cut is not None:
                cancel.set()  # Until stops at the same token; this covers a decode that differs in spacing
                break
        worker.join()
    finally:
        cancel.set()  # a consumer that stops reading (closes this generator) ends the generation too
    if "error" in result:
        raise result["error"]
    new = result["ids"][0, ids["input_ids"].shape[1]:].tolist()
    ended = bool(template.end_of_turn_ids(tokenizer) & set(new)) or cut is not None
    yield Reply(text.strip(), ended, ids["input_ids"].shape[1], len(new))


class Until:
    """A StoppingCriteria: True once `cancel` is set or a stop string appears in the new text.

    Not transformers' `stop_strings`: its tables grow with the number and length of the strings times the
    vocabulary (500 stop strings held a server for 25 s; one 200,000-character string asked for 36.6 GiB).
    This decodes only the tail of the new tokens that could hold a stop string (4 tokens per character covers
    byte-level pieces), so its cost per token is bounded by the longest stop string, a few microseconds here.
    """

    def __init__(self, tokenizer: Any, prompt_len: int, stop: Sequence[str], cancel: threading.Event) -> None:
        self.tokenizer, self.prompt_len, self.cancel = tokenizer, prompt_len, cancel
        self.stop = [s for s in stop if s]
        self.tail = 4 * max((len(s) for s in self.stop), default=0) + 4

    def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
        import torch

        done = self.cancel.is_set()
        if not done and self.stop:
            new = input_ids[0, self.prompt_len:][-self.tail:].tolist()
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            done = any(s in text for s in self.stop)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def first_stop(text: str, stop: Sequence[str]) -> int | None:
    found = [text.find(s) for s in stop if s and s in text]
    return min(found) if found else None


def checked_text(text: str, where: str) -> str:
    """`text` when it can be encoded as UTF-8; else a TunesmithError naming `where` and the first bad byte (bytes
    that are not UTF-8 reach Python as lone surrogates: the tokenizer failed on them with a TypeError).

    >>> checked_text("abc\\udcff", "--prompt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tunesmith.errors.TunesmithError: --prompt: the text is not UTF-8: byte 0xff at character 4...
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(text[err.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X} (a lone surrogate)"
        raise TunesmithError(f"the text is not UTF-8: {what} at character {err.start + 1}", where=where,
                             fix="save or type it as UTF-8 (iconv -f cp949 -t utf-8 converts a Korean file)") from None
    return text


def fitted_prompt(session: Session, user: str, role: str = "user") -> tuple[str, int]:
    """(the prompt for `user` (a tool's output where `role` is tool) after the history, the number of earliest turns
    left out so that the prompt and max_new_tokens fit the model's context). A message that does not fit on its own
    is a TunesmithError saying by how much: a 41k-character input ran past an 8,192-token context for 92 s and
    answered 'IfeelI'."""
    context = getattr(session.model.config, "max_position_embeddings", None)
    room = session.settings.max_new_tokens
    history, dropped = list(session.history), 0
    while True:
        prompt = prompt_for(session, [*history, Message(role, user)])
        used = len(session.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if not context or used + room <= context:
            return prompt, dropped
        if not history:
            over = used + room - context
            raise TunesmithError(
                f"the message is {used:,} tokens in the prompt, and {room:,} more are kept for the answer: "
                f"{over:,} over the model's {context:,}-token context (about {over * len(user) // used:,} "
                f"of its {len(user):,} characters too many)", where="chat",
                fix="shorten the message, or lower --max-new-tokens")
        # the oldest exchange: a user turn and what followed it up to the next (answers, calls, tool outputs)
        cut = next((i for i, m in enumerate(history) if i > 0 and m.role == "user"), len(history))
        history, dropped = history[cut:], dropped + cut


def respond(session: Session, user: str, write: Callable[[str], None] = lambda _: None,
            note: Callable[[str], None] = lambda _: None, role: str = "user") -> Reply:
    """Answer one user turn (or a tool's output, `role` tool), streaming pieces to `write`; the turn and the answer
    join the history, an answer's <tool_call> blocks as its calls (a /tool line answers them). Earliest turns that no
    longer fit the context are left out of the history, said through `note`."""
    prompt, dropped = fitted_prompt(session, checked_text(user, "chat"), role)
    if dropped:
        session.history = session.history[dropped:]
        note(f"(the {dropped} earliest turns no longer fit the model's context and were left out)")
    reply = None
    shade = thinking.Shade(*session.shade, opened=thinking.opened(prompt)) if session.shade else None
    for item in stream(session.model, session.tokenizer, prompt, session.settings):
        if isinstance(item, Reply):
            reply = item
        elif shade is not None:
            write(shade(item))
        else:
            write(item)
    if shade is not None:
        write(shade.flush())
    assert reply is not None
    if not session.raw:  # a raw session's prompt is the text typed, no history
        session.history += [Message(role, user), answer_message(reply.text)]
    return reply


def answer_message(text: str) -> Message:
    """A generated answer as the history keeps it: its thinking as its reasoning (rendered again as training
    rendered it), the <tool_call> blocks after the thinking as its calls; an answer whose thinking never ended, as
    it was written."""
    thought = thinking.split(text)
    if not thought.finished:
        return Message("assistant", text)
    said, calls = toolcalls.parse(thought.answer)
    return Message("assistant", said if calls else thought.answer, tool_calls=calls,
                   reasoning=thought.reasoning or None)


def repl(session: Session, read: Callable[[], str | None], write: Callable[[str], None]) -> int:
    """The interactive loop: read a line, answer it (streamed), until /exit or end of input; returns turns."""
    turns = 0
    while (line := read()) is not None:
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        tool = line.split()[0] == "/tool"
        if line == "/reset":
            session.history.clear()
            write("(conversation cleared)\n")
        elif line == "/system" or line.startswith("/system "):
            session.system = line[len("/system"):].strip() or None
            session.history.clear()
            write(f"(system prompt {'set' if session.system else 'cleared'}; conversation cleared)\n")
        elif tool and not (session.history and session.history[-1].tool_calls):
            write("(no function call to answer: /tool TEXT gives the output of the function the model just called)\n")
        elif line.startswith("/") and not tool:
            write(f"unknown command {line.split()[0]}; {HELP}\n")
        else:
            try:
                reply = respond(session, line[len("/tool"):].strip() if tool else line, write,
                                note=lambda text: write(text + "\n"), role="tool" if tool else "user")
            except TunesmithError as err:  # a line that is not UTF-8, or too long: said, and the loop goes on
                write(f"error: {err.render()}\n")
                continue
            write("\n" if reply.stopped else " [cut at max_new_tokens]\n")
            turns += 1
    return turns
