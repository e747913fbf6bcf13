"""An answer's reasoning: the thinking a reasoning model writes before its answer (DeepSeek-R1, Qwen3, gpt-oss and
the data sets distilled from them). The keys and fields files hold it under, the text form a chat template without
reasoning support is given (DeepSeek-R1's and Qwen3's own: <think>, the thinking, </think>, then the answer), and
the split of a text back into thinking and answer, for the data stage, eval, chat and serve alike.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from tunesmith.records import Conversation, Message

OPEN, CLOSE = "<think>", "</think>"
# A message's reasoning: DeepSeek's, vLLM's and Qwen3's template's `reasoning_content`, OpenRouter's `reasoning`,
# Ollama's and gpt-oss's template's `thinking`.
MESSAGE_KEYS = ("reasoning_content", "reasoning", "thinking")
# A one-question row's reasoning field (compared as data/formats compares field names: lower case, without spaces,
# '_' or '-'): medical-o1-reasoning-SFT's Complex_CoT, the CoT collections' rationale, the distilled sets'
# reasoning / thinking.
ROW_FIELDS = ("reasoning", "reasoningcontent", "thinking", "think", "thought", "thoughts", "cot", "complexcot",
              "chainofthought", "rationale")
_BLOCK = re.compile(r"\s*" + re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE) + r"\s*", re.S)


@dataclass(frozen=True)
class Split:
    """A text as thinking and answer. `reasoning` None: the text does not think; "" an empty block (a reasoning
    model told not to think writes one). `finished` False: the thinking never closed (a generation that ran out of
    new tokens inside it), so there is no answer."""

    reasoning: str | None
    answer: str
    finished: bool = True


def split(text: str, opened: bool | None = None) -> Split:
    """The thinking block a text opens with (<think>...</think>), or the text before a lone </think> (DeepSeek-R1's
    template opens the block in the prompt, so its answers only close it), and the answer after it. `opened`: the
    prompt did open the block (True: the text starts inside it) or did not (False: a lone </think> is text); None
    where that is not known (a file's answer, an eval generation)."""
    if opened:
        text = OPEN + text
    block = _BLOCK.match(text)
    if block:
        return Split(block.group(1).strip(), text[block.end():].strip())
    head = text.lstrip()
    if head.startswith(OPEN):
        return Split(head[len(OPEN):].strip(), "", finished=False)
    if opened is None and CLOSE in text and OPEN not in text:
        before, _, after = text.partition(CLOSE)
        return Split(before.strip(), after.strip())
    return Split(None, text)


def answer_text(reasoning: str, content: str) -> str:
    """An answer with its thinking written before it, as DeepSeek-R1 and Qwen3 write theirs."""
    return f"{OPEN}\n{reasoning}\n{CLOSE}\n\n{content}"


def written(m: Message) -> str:
    """A message's text with its reasoning written before it (answer_text), or its text where it has none."""
    return answer_text(m.reasoning, m.content) if m.reasoning else m.content


def as_text(conv: Conversation) -> Conversation:
    """The conversation with every answer's reasoning written into its text (answer_text), for a chat template
    that does not render a message's reasoning; one without reasoning is returned as it is."""
    if not any(m.reasoning for m in conv.messages):
        return conv
    return dataclasses.replace(conv, messages=tuple(
        dataclasses.replace(m, content=written(m), reasoning=None) if m.reasoning else m for m in conv.messages))


def answer_only(text: str) -> str:
    """What an answer says after its thinking (all of it where it does not think; nothing where its thinking never
    ended): what eval scores and what a chat's history keeps."""
    return split(text).answer


def opened(prompt: str) -> bool:
    """Whether a prompt opens the thinking itself (DeepSeek-R1's generation prompt ends with <think>): the answer
    then starts inside it."""
    return prompt.rstrip().endswith(OPEN)


class Shade:
    """A streamed answer's pieces with its thinking wrapped in `start` ... `end` (chat's dim style on a terminal),
    the tags kept as written: a tag split across pieces waits for its rest; `flush` ends the answer.

    >>> shade = Shade("[", "]")
    >>> "".join(shade(p) for p in ["<thi", "nk>hm", "m</th", "ink>\\n\\nIt is 4."]) + shade.flush()
    '[<think>hmm</think>]\\n\\nIt is 4.'
    """

    def __init__(self, start: str, end: str, opened: bool = False) -> None:
        self.start, self.end, self.inside, self.held = start, end, opened, ""
        self.first = opened  # a prompt that opened the block: the answer starts inside it

    def __call__(self, piece: str) -> str:
        text, self.held, out = self.held + piece, "", self.start if self.first else ""
        self.first = False
        while text:
            tag = CLOSE if self.inside else OPEN
            at = text.find(tag)
            if at < 0:
                keep = next((k for k in range(min(len(tag) - 1, len(text)), 0, -1) if tag.startswith(text[-k:])), 0)
                self.held = text[len(text) - keep:]
                return out + text[:len(text) - keep]
            cut = at + len(tag)
            out += (text[:at] + self.start + tag) if not self.inside else (text[:cut] + self.end)
            self.inside, text = not self.inside, text[cut:]
        return out

    def flush(self) -> str:
        """What is held back, and the style ended where the answer stopped inside its thinking."""
        out, self.held = self.held, ""
        if self.inside:
            self.inside, out = False, out + self.end
        return out
