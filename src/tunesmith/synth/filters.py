"""What synth removes, each removal counted by its reason (nothing is dropped silently).

Questions: too short; a heading ("Here are five questions:", "# Jeonse"); no question mark (a statement copied
from the passages; 1,738 of the 1,740 generated questions in data__query.jsonl have one); near-duplicates of an
earlier question (character 3-gram overlap >= 0.8, or embedding cosine >= duplicate_similarity with the
retriever's E5 model); wrong language (--lang). Answers: too short; cut off at max_new_tokens; repeats the
question; echoes the prompt (contains its headings, e.g. "Reference passages:"); wrong language; unsupported by
the retrieved passages.

Why 0.99: the 4-bit E5 puts related questions very close. On the 900 pairs of distinct questions that share a
seed word in data__query.jsonl (shared realdata, 20 seeds) its cosine has median 0.928, 99th percentile 0.980,
maximum 0.994 ("주택임대차보호법이란 무엇인가요?" / "…의 주요 내용은 무엇인가요?"); paraphrase pairs scored
0.935-0.993. So 0.99 removes about 1 in 900 distinct pairs and catches repeats and the closest paraphrases,
not every paraphrase; 3-gram overlap of those 900 pairs peaked at 0.54, so 0.8 only catches near-verbatim repeats.

The support check is cheap and coarse: the share of the answer's character 3-grams (spaces removed) that occur
in its passages. It catches answers made up from nothing in the passages, answers to another question, and
answers in another language than the passages. It misses an answer that reuses the passages' words to state
something they do not say (a wrong number, a negation), and can remove a faithful answer that paraphrases
heavily; set it with `--set min_support=0.2` (0 turns it off).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from tunesmith.metrics import language_of
from tunesmith.synth.retrieve import Passage

NEAR_VERBATIM = 0.8  # character 3-gram Jaccard: a repeat with a word or two changed
_NUMBERING = re.compile(r"^\s*(?:(?:[-*•]|\d+[.)]|[A-Za-z][.)](?=\s)|(?:Q|Question|질문)\s*\d*[:.)])\s*)+", re.I)


def parse_questions(reply: str) -> list[str]:
    """One question per line; list markers, numbering and "Question:" labels stripped, blank lines out.

    >>> parse_questions("1. 전세란 무엇인가요?\\n\\n2) What is DSR?\\n- Q3: 확정일자는?\\nQuestion: What is LTV?\\nA) Why?")
    ['전세란 무엇인가요?', 'What is DSR?', '확정일자는?', 'What is LTV?', 'Why?']
    """
    out = []
    for line in reply.splitlines():
        text = _NUMBERING.sub("", line).strip().strip('"“”').strip()
        if text:
            out.append(text)
    return out


def _grams(text: str) -> set[str]:
    t = "".join(text.lower().split())
    return {t[i:i + 3] for i in range(len(t) - 2)} or ({t} if t else set())


def overlap(a: str, b: str) -> float:
    """Jaccard similarity of character 3-grams (whitespace ignored).

    >>> overlap("전세 계약이란?", "전세계약이란?"), round(overlap("abc", "xyz"), 2)
    (1.0, 0.0)
    """
    ga, gb = _grams(a), _grams(b)
    return len(ga & gb) / len(ga | gb) if ga | gb else 1.0


def support(answer: str, passages: Sequence[Passage]) -> float:
    """Share of the answer's character 3-grams found in the passages (1.0 with no passages: nothing to check).

    >>> support("보통 2년입니다", [Passage("a#0", "전세 계약 기간은 보통 2년입니다.", 1.0)])
    1.0
    """
    if not passages:
        return 1.0
    ga = _grams(answer)
    pool = set().union(*(_grams(p.text) for p in passages))
    return len(ga & pool) / len(ga) if ga else 0.0


def wrong_language(text: str, lang: str | None) -> bool:
    """Set --lang and the text's script differs ('ko' Hangul; 'en' Latin)."""
    return lang is not None and language_of([text]) != lang


class QuestionFilter:
    """Keeps the questions kept so far (across seeds, and those found on resume) to spot near-duplicates."""

    def __init__(self, min_chars: int, lang: str | None, threshold: float,
                 embed: Callable[[list[str]], Any] | None) -> None:
        self.min_chars, self.lang, self.threshold, self.embed = min_chars, lang, threshold, embed
        self.kept: list[str] = []
        self.vectors: list[Any] = []

    def reason(self, question: str) -> str | None:
        """Why `question` goes (None: it stays, and is remembered)."""
        if len(question) < self.min_chars:
            return "question too short"
        if question.rstrip().endswith(":") or question.startswith("#"):  # "Here are 5 questions:", "# Jeonse"
            return "not a question (a heading)"
        if "?" not in question and "？" not in question:  # 1,738 of data__query.jsonl's 1,740 questions have one
            return "not a question (no question mark)"
        if wrong_language(question, self.lang):
            return "question in the wrong language"
        vector = self.embed([question])[0] if self.embed else None
        for i, earlier in enumerate(self.kept):
            if overlap(question, earlier) >= NEAR_VERBATIM or \
                    (vector is not None and float(vector @ self.vectors[i]) >= self.threshold):
                return "near-duplicate question"
        self.remember(question, vector)
        return None

    def remember(self, question: str, vector: Any = None) -> None:
        """Count `question` against later near-duplicates (kept here, or in an earlier run being resumed)."""
        self.kept.append(question)
        self.vectors.append(vector if vector is not None or not self.embed else self.embed([question])[0])


def answer_reason(question: str, answer: str, passages: Sequence[Passage], *, min_chars: int, lang: str | None,
                  min_support: float, ended: bool = True, labels: Sequence[str] = ()) -> str | None:
    """Why an answer goes (None: the row is written). `labels`: the answer prompt's fixed headings."""
    if len(answer.strip()) < min_chars:
        return "answer empty or too short"
    if not ended:
        return "answer cut off at max_new_tokens"
    if overlap(question, answer) >= 0.8 or answer.strip() in question:
        return "answer repeats the question"
    if any(label in answer for label in labels):
        return "answer echoes the prompt"
    if wrong_language(answer, lang):
        return "answer in the wrong language"
    if passages and support(answer, passages) < min_support:
        return "answer not supported by its passages"
    return None
