"""The Chat tab: a run's base and tuned models answering the same prompt side by side, both streaming.

Both sessions are `chat.open_session` (the run's template, eval settings and training system prompt; base=True
loads the starting model with the same settings), and every prompt is `chat.prompt_for` + `chat.stream`: the
render path eval and `tunesmith chat` use. The two generations run at once (each `stream` generates in a thread
of its own) and their pieces are handed on as they come.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import chat
from tunesmith.chat import Reply
from tunesmith.collect import Collector, kto_path
from tunesmith.records import Message


@dataclass(frozen=True)
class Pair:
    run: str
    system: str | None
    base: chat.Session
    tuned: chat.Session


_loaded: dict[tuple[Any, ...], Pair] = {}  # the last run's two models stay loaded between prompts


def pair(run: Path, system: str | None = None, options: dict[str, Any] | None = None) -> Pair:
    """The run's two sessions; another run, system prompt or settings drops the previous pair."""
    key = (str(run.resolve()), system or None, tuple(sorted((options or {}).items())))
    if key not in _loaded:
        _loaded.clear()
        quiet = lambda _: None  # noqa: E731
        base = chat.open_session(str(run), system=system or None, options=options, say=quiet, base=True)
        tuned = chat.open_session(str(run), system=system or None, options=options, say=quiet)
        _loaded[key] = Pair(run.name, tuned.system, base, tuned)
    return _loaded[key]


def turns(history: Sequence[dict[str, Any]]) -> list[Message]:
    """A Chatbot's messages (role, content) as tunesmith Messages; Gradio 6 hands content back as a list of
    parts ({"type": "text", "text": ...}), which are joined."""
    return [Message(m["role"], _text(m["content"])) for m in history if m.get("role") in ("user", "assistant")]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def answer_both(p: Pair, base_history: Sequence[dict[str, Any]], tuned_history: Sequence[dict[str, Any]],
                user: str) -> Iterator[tuple[str, str, Reply | None, Reply | None]]:
    """Yield (base text so far, tuned text so far, base Reply, tuned Reply) as either model writes; the Replies
    are None until that model has finished."""
    streams = {0: chat.stream(p.base.model, p.base.tokenizer,
                              chat.prompt_for(p.base, [*turns(base_history), Message("user", user)]), p.base.settings),
               1: chat.stream(p.tuned.model, p.tuned.tokenizer,
                              chat.prompt_for(p.tuned, [*turns(tuned_history), Message("user", user)]),
                              p.tuned.settings)}
    text: list[str] = ["", ""]
    done: list[Reply | None] = [None, None]
    while streams:
        for side, gen in list(streams.items()):
            item = next(gen, None)
            if item is None:
                del streams[side]
                continue
            if isinstance(item, Reply):
                done[side] = item
            else:
                text[side] += item
            yield text[0], text[1], done[0], done[1]


CUT = " [cut at max_new_tokens]"


def preferences_file(root: Path, run: str) -> Path:
    """Where the Chat tab's choices for a run go: ROOT/preferences/<run>.jsonl (inside the runs folder)."""
    folder = root / "preferences"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{Path(run).name}.jsonl"


def record(root: Path, run: str, system: str | None, base_history: Sequence[dict[str, Any]],
           tuned_history: Sequence[dict[str, Any]], choice: str, edit: str = "") -> str:
    """Record the last exchange: choice base / tuned (a pair), both_bad (two KTO rows), tuned_good / tuned_bad
    (thumbs on the tuned answer: a KTO row), mine (the user's answer chosen over the tuned model's). Returns what
    was written, in words."""
    b, t = turns(base_history), turns(tuned_history)
    if len(b) < 2 or len(t) < 2 or b[-1].role != "assistant" or t[-1].role != "assistant" or b[-2] != t[-2]:
        return "nothing to record yet: send a message to both models first"
    prompt = (*((Message("system", system),) if system else ()), b[-2])
    base, tuned = (m.content.removesuffix(CUT).strip() for m in (b[-1], t[-1]))
    c = Collector.open(preferences_file(root, run))
    rated = choice in ("both_bad", "tuned_good", "tuned_bad")
    if choice == "both_bad":
        c.rate(prompt, base, False)
        c.rate(prompt, tuned, False)
    elif choice in ("tuned_good", "tuned_bad"):
        c.rate(prompt, tuned, choice == "tuned_good")
    elif choice == "mine":
        if not edit.strip():
            return "write your answer first"
        c.pair(prompt, edit.strip(), tuned)
    else:
        chosen, rejected = (base, tuned) if choice == "base" else (tuned, base)
        c.pair(prompt, chosen, rejected)
    written = c.pairs + c.rated
    where = kto_path(c.path) if rated else c.path
    return (f"{'saved' if written else 'already saved (or both answers are the same text)'}: {where.name} "
            f"({c.before + written} rows in {c.path.parent.name}/); train on it with "
            f"--set train.objective={'kto' if rated else 'dpo'}")
