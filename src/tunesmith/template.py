"""The one render path for train, eval and chat: a conversation -> token ids and loss labels.

Where the chat template marks assistant text with `{% generation %}`, those marks decide what is
supervised. Most stock templates (SmolLM2's included) have none, so supervised spans are found by prefix
difference: render messages[:i] with the generation prompt, render messages[:i+1], supervise what the second
adds (the answer *and* its end-of-turn token). The whole conversation is tokenised ONCE (prompt and answer are
never tokenised separately) and a token is supervised when its first character lies in a supervised span, so
the end-of-turn token stays supervised even where pad == eos.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tunesmith import thinking, toolcalls
from tunesmith.config import TemplateConfig
from tunesmith.errors import TunesmithError
from tunesmith.format_names import SEGMENT
from tunesmith.records import IGNORE, Conversation, Example, Message, Rendered, Skip, TemplateCheck, ToolCall
from tunesmith.skips import AUTO_STEP, SKIP_FIXES


# Fallback for base models without a chat template (OPT, GPT-2, ...): plain text markers need no new tokens,
# and eos ends every assistant turn so the tuned model learns to stop.
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### User:\n{{ m['content'] }}\n\n"
    "{% else %}### Assistant:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}")
# ChatML, for models that already know <|im_start|>/<|im_end|>; elsewhere they are plain text.
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
FALLBACKS = {"plain": PLAIN_TEMPLATE, "chatml": CHATML_TEMPLATE}


def setup_tokenizer(tokenizer: Any, cfg: TemplateConfig) -> list[str]:
    """Give the tokenizer the template to train with; it is saved with the adapter, so chat renders alike.

    Returns notices for the user (what was chosen and why).
    """
    if cfg.chat_template != "auto":
        tokenizer.chat_template = FALLBACKS.get(cfg.chat_template, cfg.chat_template)
        return [f"using the {cfg.chat_template if cfg.chat_template in FALLBACKS else 'configured'} chat template"]
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_TEMPLATE
        return ["the model has no chat template (a base model?): using tunesmith's plain template "
                "('### User:' / '### Assistant:' ... eos); it is saved with the adapter so chat uses the same"]
    training = training_variant(tokenizer)
    if training is None:
        return []
    tokenizer.chat_template = training
    return ["the model's chat template is one TRL keeps a training variant of (Qwen3's, DeepSeek-R1's, Llama 3's, "
            "Gemma 3's...): training uses that variant, which renders every turn as the original renders the last "
            "(its thinking kept) and marks the answers for the loss; it is saved with the adapter, so chat and "
            "eval render as training did"]


@functools.cache
def _trl_stock_templates() -> frozenset[str]:
    """The stock chat templates TRL ships (trl/chat_templates/*.jinja, less its training variants), read from its
    folder once without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("trl")
    folder = next(iter(spec.submodule_search_locations or ()), None) if spec else None
    stock = Path(folder, "chat_templates") if folder else None
    if stock is None or not stock.is_dir():
        return frozenset()
    return frozenset(f.read_text(encoding="utf-8") for f in stock.glob("*.jinja") if not f.stem.endswith("_training"))


def training_variant(tokenizer: Any) -> str | None:
    """TRL's training variant of the model's chat template (trl.chat_template_utils.get_training_chat_template),
    where TRL ships the template as stock: the original rewrites earlier turns (Qwen3's drops their thinking,
    DeepSeek-R1's everything up to </think>), which no prefix difference can mask, or has no {% generation %}
    marks. None for any other template (TRL is imported only for a template it ships: ~2 s)."""
    template = tokenizer.chat_template
    if not isinstance(template, str) or template not in _trl_stock_templates():
        return None
    from trl.chat_template_utils import get_training_chat_template

    try:
        return get_training_chat_template(tokenizer)
    except ValueError:  # a stock template TRL has no training variant of (it is used as it is)
        return None


def check_renders(tokenizer: Any, cfg: TemplateConfig) -> None:
    """A template that cannot render one user/assistant exchange is an error now, before any run folder exists,
    not a Jinja traceback from the first row."""
    import jinja2

    try:
        render_text(tokenizer, [Message("user", "u"), Message("assistant", "a")], add_generation_prompt=False)
    except jinja2.TemplateError as err:
        where = "template.chat_template" if cfg.chat_template not in ("auto", *FALLBACKS) else \
            f"the chat template of {getattr(tokenizer, 'name_or_path', 'the model')}"
        line = f" (line {err.lineno})" if getattr(err, "lineno", None) else ""
        raise TunesmithError(f"the chat template cannot render a user/assistant exchange: "
                             f"{type(err).__name__}{line}: {err.message}", where=where,
                             fix="fix the Jinja in template.chat_template (https://huggingface.co/docs/transformers/"
                                 "chat_templating), or set it to auto, plain or chatml") from None


def _chat(messages: tuple[Message, ...] | list[Message]) -> list[dict[str, Any]]:
    """Messages as chat templates take them; calls in Hugging Face's form, arguments as objects; an answer's
    reasoning under the keys templates read it by (Qwen3's and DeepSeek's reasoning_content, gpt-oss's thinking)."""
    return [{"role": m.role, "content": m.content, **({"tool_calls": [
        {"type": "function", "function": {"name": c.name, "arguments": json.loads(c.arguments)}}
        for c in m.tool_calls]} if m.tool_calls else {}),
        **({"reasoning_content": m.reasoning, "thinking": m.reasoning} if m.reasoning else {})} for m in messages]


def render_text(tokenizer: Any, messages: tuple[Message, ...] | list[Message], *,
                add_generation_prompt: bool, tools: str | None = None) -> str:
    """The messages as the chat template writes them; `tools` (a conversation's schemas, JSON text) passed on."""
    if not getattr(tokenizer, "chat_template", None):
        raise TunesmithError("the model's tokenizer has no chat template",
                             fix="set template.chat_template: plain (or chatml) in the config")
    return tokenizer.apply_chat_template(_chat(messages), tokenize=False, add_generation_prompt=add_generation_prompt,
                                         **({"tools": json.loads(tools)} if tools else {}))


# A function-calling exchange whose every part a template with tool support writes out (supports_tools)
_PROBE_TOOLS = json.dumps([{"type": "function", "function": {
    "name": "probe_lookup", "description": "probe_describes", "parameters": {
        "type": "object", "properties": {"probe_key": {"type": "string"}}, "required": ["probe_key"]}}}])
_PROBE = (Message("user", "u"),
          Message("assistant", "", tool_calls=(ToolCall("probe_call", '{"probe_key": "probe_value"}'),)),
          Message("tool", "probe_output"), Message("assistant", "a"))


def supports_tools(tokenizer: Any) -> bool:
    """Whether the chat template writes out function calling itself: the tools offered, a call's name and
    arguments and the tool's output all appear when it renders a probe exchange (SmolLM2's and the fallbacks drop
    the call or reject the tool role: toolcalls.as_text writes those as text)."""
    try:
        text = render_text(tokenizer, _PROBE, add_generation_prompt=False, tools=_PROBE_TOOLS)
    except Exception:  # jinja2's TemplateError, or a template's own raise_exception() on the tool role
        return False
    return all(word in text for word in ("probe_describes", "probe_call", "probe_value", "probe_output"))


def call_prefix(tokenizer: Any, name: str | None = None) -> str:
    """The start of an answer that calls a function, as this template (or, where it writes no calls, toolcalls'
    text form) writes it: up to the function's name (`name` None: a call of any function), or through `name` and
    the "{" that opens its arguments. Appended to a prompt, it makes the model call (serve's tool_choice)."""
    native = None
    if supports_tools(tokenizer):
        prompt = render_text(tokenizer, _PROBE[:1], add_generation_prompt=True, tools=_PROBE_TOOLS)
        full = render_text(tokenizer, _PROBE[:2], add_generation_prompt=False, tools=_PROBE_TOOLS)
        native = _prefix(full[len(prompt):], name) if full.startswith(prompt) else None
    return native or _prefix(toolcalls.answer_text(_PROBE[1]), name) or ""


def _prefix(answer: str, name: str | None) -> str | None:
    """`answer` (the probe call as written) up to its name, or with `name` in its place through the arguments' "{";
    None where they are not found in it (a template that writes calls in another form)."""
    at = answer.find("probe_call")
    key = answer.find("probe_key", at)
    opens = answer.rfind("{", at, key)
    if at < 0 or key < 0 or opens < 0:
        return None
    said = json.dumps(name, ensure_ascii=False)[1:-1] if name is not None else ""
    return answer[:at] if name is None else answer[:at] + said + answer[at + len("probe_call"):opens + 1]


def supports_reasoning(tokenizer: Any) -> bool:
    """Whether the chat template writes out an answer's reasoning given beside it (Qwen3's and gpt-oss's do, for
    the last answer at least); SmolLM2's and the fallbacks drop it: thinking.as_text writes it into the text."""
    try:
        text = render_text(tokenizer, [Message("user", "u"), Message("assistant", "a", reasoning="probe_thought")],
                           add_generation_prompt=False)
    except Exception:  # a template's own raise_exception(), or a Jinja error: not written out
        return False
    return "probe_thought" in text


def _keeps_text_thinking(tokenizer: Any) -> bool:
    """Whether thinking written into an answer's text survives the template (DeepSeek-R1's own drops everything
    up to </think> from every answer: tuned through it, a model would never learn its reasoning)."""
    answer = Message("assistant", thinking.answer_text("probe_thought", "a"))
    return "probe_thought" in render_text(tokenizer, [Message("user", "u"), answer], add_generation_prompt=False)


def supports_system(tokenizer: Any) -> bool:
    """False for templates that raise on a system turn (Gemma's: 'System role not supported')."""
    try:
        render_text(tokenizer, [Message("system", "s"), Message("user", "u")], add_generation_prompt=True)
    except Exception:  # jinja2's TemplateError from raise_exception(); any failure means: do not send system
        return False
    return True


def merge_system(conv: Conversation) -> Conversation:
    """Fold a system turn into the first user turn, for templates that reject the system role."""
    if not conv.messages or conv.messages[0].role != "system":
        return conv
    system, first, *rest = conv.messages
    merged = Message("user", f"{system.content}\n\n{first.content}")
    return dataclasses.replace(conv, messages=(merged, *rest))


def fit(tokenizer: Any, convs: Sequence[Conversation], cfg: TemplateConfig
        ) -> tuple[tuple[Conversation, ...], list[str]]:
    """Give the tokenizer its template (`setup_tokenizer`) and make `convs` renderable by it; the same choices
    for training, preview, eval and compare. Returns the conversations and notices for the user."""
    notices = setup_tokenizer(tokenizer, cfg)
    check_renders(tokenizer, cfg)
    if any(c.calls_tools for c in convs) and not supports_tools(tokenizer):
        notices.append("the chat template does not write function calls: tools are offered in the system turn, calls "
                       f"written as {toolcalls.CALL_OPEN}{{\"name\": ..., \"arguments\": ...}}{toolcalls.CALL_CLOSE} "
                       "in the answers and tool outputs as the user's turn (Qwen2.5's form), in training, eval and "
                       "chat alike")
        convs = [toolcalls.as_text(c) for c in convs]
    if any(m.reasoning for c in convs for m in c.messages) and not supports_reasoning(tokenizer):
        if not _keeps_text_thinking(tokenizer):
            raise TunesmithError("the rows' answers think before they answer, and the chat template drops that "
                                 "thinking from every answer (as DeepSeek-R1's does): the model would never learn it",
                                 where="template.chat_template", fix="set template.chat_template: chatml (or a "
                                 "template that keeps the answers' <think> blocks)")
        notices.append(f"the chat template does not write an answer's reasoning: it is written before the answer as "
                       f"{thinking.OPEN}...{thinking.CLOSE} (DeepSeek-R1's and Qwen3's form), learned with the answer "
                       "and taken off it before scoring and in chat")
        convs = [thinking.as_text(c) for c in convs]
    if not supports_system(tokenizer) and any(c.messages and c.messages[0].role == "system" for c in convs):
        notices.append("the chat template rejects a system turn; its text is merged into the first user turn")
        convs = [merge_system(c) for c in convs]
    return tuple(convs), notices


def has_generation_markers(tokenizer: Any) -> bool:
    return "{% generation %}" in (getattr(tokenizer, "chat_template", None) or "")


def supervised_spans(tokenizer: Any, conv: Conversation) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the (start, end) character spans of every assistant turn."""
    full = render_text(tokenizer, conv.messages, add_generation_prompt=False, tools=conv.tools)
    spans = []
    for i, m in enumerate(conv.messages):
        if m.role != "assistant":
            continue
        before = render_text(tokenizer, conv.messages[:i], add_generation_prompt=True, tools=conv.tools)
        upto = render_text(tokenizer, conv.messages[: i + 1], add_generation_prompt=False, tools=conv.tools)
        if not upto.startswith(before) or not full.startswith(upto):
            model = getattr(tokenizer, "name_or_path", "the model")
            raise TunesmithError(
                f"{model}'s chat template does not render turn {i} as a continuation of the turns before it, "
                "so the assistant span cannot be found by prefix difference", where=conv.source,
                fix="use a template without history rewriting, or one with {% generation %} markers "
                    "(template.chat_template)")
        spans.append((len(before), len(upto)))
    return full, spans


def is_text(conv: Conversation) -> bool:
    """Plain-text rows (from .txt files) train as completion: no chat template, every token supervised."""
    return len(conv.messages) == 1 and conv.messages[0].role == "text"


def _encode_text(tokenizer: Any, conv: Conversation) -> tuple[list[int], list[int]]:
    ids = tokenizer(conv.messages[0].content, add_special_tokens=True)["input_ids"]
    ids = ids + [tokenizer.eos_token_id]  # the end token teaches the model where a text stops
    return ids, list(ids)


def is_segments(conv: Conversation) -> bool:
    """A segments row (Axolotl's template-free input_output): parts of text written with their own markup."""
    return bool(conv.messages) and conv.messages[0].role == SEGMENT


def trained_raw(convs: Sequence[Conversation]) -> bool:
    """Whether a run's training rows are all plain text or segments rows: written without a chat template, so
    that its model is prompted with text as typed (chat, serve, compare), as eval prompts those rows."""
    return bool(convs) and all(c.untemplated for c in convs)


def as_raw_prompt(conv: Conversation) -> Conversation:
    """A prompt (a conversation ending on the user's turn) for a raw run: a segments row of that turn's text as
    typed, to be continued (prompt_text gives the text back, and generation continues it)."""
    return Conversation((Message(SEGMENT, conv.messages[-1].content, False), Message(SEGMENT, "", True)),
                        conv.source)


def _encode_segments(tokenizer: Any, conv: Conversation, supervise: str) -> tuple[list[int], list[int]]:
    """Each part tokenised as written, no special tokens added (the row writes its own: BOS, EOS, turn marks), the
    parts joined; labels on the parts labelled true ("assistant"), on the last of them ("last"), or on all."""
    learned = [i for i, m in enumerate(conv.messages) if m.train]
    keep = set(range(len(conv.messages))) if supervise == "all" else set(learned[-1:] if supervise == "last"
                                                                         else learned)
    ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(conv.messages):
        part = tokenizer(m.content, add_special_tokens=False)["input_ids"]
        ids += part
        labels += part if i in keep else [IGNORE] * len(part)
    return ids, labels


def _encode_chat(tokenizer: Any, conv: Conversation, supervise: str) -> tuple[list[int], list[int]]:
    if has_generation_markers(tokenizer):
        enc = tokenizer.apply_chat_template(_chat(conv.messages), tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True,
                                            **({"tools": json.loads(conv.tools)} if conv.tools else {}))
        ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
        runs, start = [], None  # contiguous supervised runs = assistant turns
        for i, bit in enumerate([*mask, 0]):
            if bit and start is None:
                start = i
            elif not bit and start is not None:
                runs.append((start, i))
                start = None
        offsets = [(i, i + 1) for i in range(len(ids))]
    else:
        full, runs = supervised_spans(tokenizer, conv)
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    if supervise == "all":
        return ids, list(ids)
    runs = trained_runs(conv, runs, supervise, len(ids))
    labels = [tok if any(s <= start < e for s, e in runs) else IGNORE for tok, (start, _) in zip(ids, offsets)]
    return ids, labels


def trained_runs(conv: Conversation, runs: list[tuple[int, int]], supervise: str, tokens: int
                 ) -> list[tuple[int, int]]:
    """The assistant turns' spans that are learned: every one ("assistant") or the last ("last"), less the turns a
    file marked untrained (OpenAI's "weight": 0, Message.train).

    A template whose {% generation %} marks do not match the assistant turns one to one (one that marks the last
    turn only, say) cannot say which span a weight belongs to: without a weight every marked span is learned, as
    the template asks; with one the row is skipped as `weight_unmatched`, never trained on silently.
    """
    trained = [m.train for m in conv.messages if m.role == "assistant"]
    if len(trained) != len(runs):
        if not all(trained):
            raise Unusable("weight_unmatched", f"{len(trained)} assistant turns, {trained.count(False)} of weight "
                           f"0, but the chat template marks {len(runs)} spans to learn", conv.source, tokens)
        trained = [True] * len(runs)
    pairs = list(zip(runs, trained, strict=True))
    return [run for run, train in (pairs[-1:] if supervise == "last" else pairs) if train]


def _shorten(conv: Conversation) -> Conversation | None:
    """One step of `overflow: truncate`: drop the oldest exchange, else halve the last user turn's text.

    Never touches the supervised answer; None when nothing is left to cut.
    """
    msgs = list(conv.messages)
    users = [i for i, m in enumerate(msgs) if m.role == "user"]
    if len(users) > 1:  # history before the last exchange: the oldest exchange (its tool turns too) goes first
        return dataclasses.replace(conv, messages=tuple(msgs[:users[0]] + msgs[users[1]:]))
    user = msgs[users[-1]]
    cut = user.content[: len(user.content) // 2].rstrip() + " …"
    if len(cut) >= len(user.content):  # nothing left to cut: only the answer remains too long
        return None
    msgs[users[-1]] = Message("user", cut)
    return dataclasses.replace(conv, messages=tuple(msgs))


def encode(tokenizer: Any, conv: Conversation, cfg: TemplateConfig) -> Example:
    """Tokenise a whole conversation once; labels are -100 outside the supervised spans.

    A row longer than `cfg.max_length` is dropped (`overflow: drop`, raises TunesmithError so the caller counts
    it) or loses history / input text (`overflow: truncate`); the supervised answer is never cut.

    >>> ex = encode(tok, conv, TemplateConfig())  # doctest: +SKIP
    >>> ex.supervised_tokens > 0                   # doctest: +SKIP
    True
    """
    limit = cfg.max_length if isinstance(cfg.max_length, int) else UNLIMITED
    current, truncated = conv, False
    while True:
        ids, labels = (_encode_text(tokenizer, current) if is_text(current)
                       else _encode_segments(tokenizer, current, cfg.supervise) if is_segments(current)
                       else _encode_chat(tokenizer, current, cfg.supervise))
        if not any(x != IGNORE for x in labels):
            raise Unusable("no_supervision", "no supervised tokens in this conversation", conv.source, len(ids))
        if len(ids) <= limit:
            return Example(tuple(ids), tuple(labels), conv.source, truncated=truncated)
        if cfg.overflow == "drop" or is_text(current) or is_segments(current):
            raise Unusable("too_long", f"{len(ids)} tokens, longer than template.max_length={limit}: dropped",
                           conv.source, len(ids))
        shorter = _shorten(current)
        if shorter is None:
            raise Unusable("answer_too_long", f"the answer alone is longer than template.max_length={limit}",
                           conv.source, len(ids))
        current, truncated = shorter, True


class Unusable(TunesmithError):
    """A row the template cannot train on: the caller skips and counts it (a `Skip` of this kind)."""

    def __init__(self, kind: str, what: str, where: str, tokens: int) -> None:
        super().__init__(what, where=where, fix=SKIP_FIXES[kind].format(need="N"))
        self.kind, self.tokens = kind, tokens


def prompt_text(tokenizer: Any, conv: Conversation) -> tuple[str, str]:
    """(prompt with generation prompt, reference answer) for the last assistant turn: what eval and chat use.

    A plain-text row is split at its middle word: the model continues the first half, the second is the reference.
    A segments row's prompt is its parts before the last learned one; the reference is that part without the
    special tokens it writes (generations are decoded without them).
    """
    if is_text(conv):
        words = conv.messages[0].content.split(" ")
        half = max(1, len(words) // 2)
        return " ".join(words[:half]), " ".join(words[half:])
    if is_segments(conv):  # the parts before the last learned one are the prompt, as written
        last = max((i for i, m in enumerate(conv.messages) if m.train), default=len(conv.messages) - 1)
        return "".join(m.content for m in conv.messages[:last]), _without_special(tokenizer,
                                                                                    conv.messages[last].content)
    last = max(i for i, m in enumerate(conv.messages) if m.role == "assistant")
    prompt = render_text(tokenizer, conv.messages[:last], add_generation_prompt=True, tools=conv.tools)
    answer = conv.messages[last]
    if not answer.tool_calls:  # with its thinking, as the text form writes it (metrics score the answer apart)
        return prompt, thinking.written(answer)
    # an answer that calls tools, in a template that writes calls itself: the reference is what it writes for it
    upto = render_text(tokenizer, conv.messages[: last + 1], add_generation_prompt=False, tools=conv.tools)
    return prompt, _without_special(tokenizer, upto[len(prompt):])


def _without_special(tokenizer: Any, text: str) -> str:
    for special in getattr(tokenizer, "all_special_tokens", ()):
        text = text.replace(special, "")
    return text.strip()


def encode_all(tokenizer: Any, convs: Sequence[Conversation], cfg: TemplateConfig,
               progress: Callable[[int, int], None] | None = None) -> tuple[list[Example], list[Skip]]:
    """Encode every conversation; rows that cannot be trained on are skipped with their kind, never dropped.

    `progress(done, total)` is called as rows are encoded (each row renders the template once per turn, which
    takes minutes for data sets of many thousand rows).
    """
    examples, skipped = [], []
    for i, conv in enumerate(convs, start=1):
        try:
            examples.append(encode(tokenizer, conv, cfg))
        except Unusable as err:
            skipped.append(Skip(conv.source, err.what, err.kind, err.tokens))
        if progress is not None and (i % 50 == 0 or i == len(convs)):
            progress(i, len(convs))
    return examples, skipped


UNLIMITED = 10**9


def render_dataset(tokenizer: Any, convs: Sequence[Conversation], cfg: TemplateConfig, *, context: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Rendered:
    """The template stage, whole, for every caller (train, plan, preview, inspect, eval, compare): the template
    set up, conversations made renderable, every row encoded and masked, skipped rows typed, the checks run.

    `max_length: auto` keeps every row that fits the model's `context` (the longest row rounded up to 64 tokens
    becomes the max_length); a number is used as given.

    >>> r = render_dataset(tok, convs, TemplateConfig())  # doctest: +SKIP
    >>> len(r.examples) + len(r.skipped) == len(convs)     # doctest: +SKIP
    True
    """
    fitted, notices = fit(tokenizer, convs, cfg)
    auto = cfg.max_length == "auto"
    limit = min(context or UNLIMITED, UNLIMITED) if auto else cfg.max_length
    examples, skipped = encode_all(tokenizer, fitted, cfg.model_copy(update={"max_length": limit}), progress)
    checks = check(tokenizer, fitted, examples, skipped)
    return Rendered(tuple(fitted), tuple(examples), tuple(skipped), checks, tuple(notices),
                    max_length_used(cfg, examples, context))


def max_length_used(cfg: TemplateConfig, examples: Sequence[Example], context: int | None) -> int:
    """The configured max_length, or what `auto` chose: the longest row rounded up to 64, within the context."""
    if cfg.max_length != "auto":
        return cfg.max_length
    longest = max((len(e.input_ids) for e in examples), default=AUTO_STEP)
    return min(-(-longest // AUTO_STEP) * AUTO_STEP, context or UNLIMITED)


# End-of-turn tokens of the common families; whichever the vocabulary has count as "the model's stop token".
_EOT_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in _EOT_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def check(tokenizer: Any, convs: tuple[Conversation, ...], examples: list[Example],
          skipped: list[Skip]) -> TemplateCheck:
    """The checks printed before training: supervision share, zero-supervision rows, end-of-turn supervision,
    and train/inference parity of the prompt tokens."""
    by_source = {c.source: c for c in convs}
    eot = end_of_turn_ids(tokenizer)
    shares = sorted(e.supervised_tokens / len(e.input_ids) for e in examples)
    no_eot = tuple(e.source for e in examples if not eot & {x for x in e.labels if x != IGNORE})
    parity_failures = []
    for e in examples:
        conv = by_source.get(e.source)
        if conv is None or e.truncated or is_text(conv):
            continue
        prompt, _ = prompt_text(tokenizer, conv)
        want = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if list(e.input_ids[: len(want)]) != want:
            parity_failures.append(e.source)
    zero = tuple(s.location for s in skipped if s.reason.startswith("no supervised tokens"))
    return TemplateCheck(rows=len(examples), share_min=shares[0] if shares else 0.0,
                         share_median=shares[len(shares) // 2] if shares else 0.0, zero_supervised=zero,
                         end_of_turn_missing=no_eot, parity_failures=tuple(parity_failures),
                         dropped=tuple(s for s in skipped if s.location not in zero))


def describe(c: TemplateCheck) -> list[str]:
    """The checks as lines for the terminal."""
    lines = [f"supervised share per row: min {c.share_min:.0%}, median {c.share_median:.0%} ({c.rows} rows)",
             f"rows with zero supervised tokens: {len(c.zero_supervised)}"
             + (f" ({', '.join(c.zero_supervised[:3])})" if c.zero_supervised else ""),
             "end-of-turn token supervised: " + ("yes, in every row" if not c.end_of_turn_missing else
                                                 f"NO in {len(c.end_of_turn_missing)} rows "
                                                 f"({', '.join(c.end_of_turn_missing[:3])}): the model may never stop"),
             "prompt tokens identical at training and inference: " + (
                 "yes" if not c.parity_failures else
                 f"NO in {len(c.parity_failures)} rows ({', '.join(c.parity_failures[:3])})")]
    if c.dropped:
        lines.append(f"rows not trained: {len(c.dropped)} (first: {c.dropped[0].location}: {c.dropped[0].reason})")
    return lines
