"""Scores that work for Korean and English, per row and per corpus, and paired differences between two models.

Public API:
    score_rows(generations, *, embedder=None, nll=None, lang="auto") -> Scores(corpus, rows, lang, bleu_tokenize)
    compare(base_rows, tuned_rows, *, resamples=2000, seed=0) -> dict[metric, Difference]; each Difference knows
        its metric's direction, so .verdict is 'better' | 'worse' | 'higher' | 'lower' | 'no clear difference'
    paired_bootstrap(base_values, tuned_values, resamples=2000, seed=0) -> Difference (tuned - base)
    language_of(texts) -> 'ko' | 'cjk' | 'en' | 'other'
    rouge_l(hypothesis, reference, lang) -> F1 in 0-100;  exact_match(hypothesis, reference) -> bool
    perplexity(nll_rows) -> float  (the rows from generation.per_row_nll)

`METRICS` names every per-row key, its scale, and which direction is better. Korean and other CJK text is
scored on characters (BLEU, ROUGE-L): a Korean word carries its particles (학교에, 학교는), so word-level
scores count a right word with another particle as a miss.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith import thinking, toolcalls
from tunesmith.records import Difference, Generation

# key -> (what it measures, +1 higher is better / -1 lower is better / 0 neither)
METRICS: dict[str, tuple[str, int]] = {
    "chrf": ("chrF, character n-gram F-score, 0-100", 1),
    "bleu": ("BLEU, 0-100; characters for Korean/CJK, 13a words otherwise", 1),
    "rouge_l": ("ROUGE-L F1 (longest common subsequence), 0-100; characters for Korean/CJK", 1),
    "exact_match": ("share identical to the reference after NFKC and whitespace normalisation", 1),
    "chars": ("answer length in characters", 0),
    "words": ("answer length in whitespace-separated words", 0),
    "stopped": ("share of answers that ended by themselves rather than at max_new_tokens", 1),
    "cosine": ("embedding cosine similarity to the reference, -1 to 1", 1),
    "nll": ("mean negative log-likelihood per reference token (corpus: token-weighted)", -1),
    "tool_call": ("share of answers that make the reference's function calls (names and arguments, in any order); "
                  "only rows whose reference calls a function, only where some do", 1),
    "call_when_due": ("share of answers that call a function where the reference does and do not where it does not "
                      "(every row, where some reference calls one)", 1),
    "thinks_when_due": ("share of answers that think before answering (a <think> block) where the reference does and "
                        "do not where it does not (every row, where some reference thinks)", 1),
    "thinking_ended": ("share of the answers that think whose thinking ended within max_new_tokens, so that an answer "
                       "followed (where some reference thinks)", 1),
}
CHAR_LEVEL = ("ko", "cjk")
BLEU_TOKENIZE = {"ko": "char", "cjk": "char", "en": "13a", "other": "intl"}


@dataclass(frozen=True)
class Scores:
    """Corpus values and per-row values of the same metric keys (see METRICS); corpus adds 'perplexity'."""

    corpus: dict[str, float]
    rows: list[dict[str, float]]
    lang: str
    bleu_tokenize: str  # the sacrebleu tokenizer BLEU used, for the report


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF


def _is_hangul(ch: str) -> bool:
    o = ord(ch)
    return 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F


def language_of(texts: Sequence[str]) -> str:
    """Which tokenisation suits these texts: 'ko', 'cjk' (Chinese/Japanese) score on characters.

    A third of the letters is enough for the character scripts: one Hangul syllable holds about as much as
    two or three Latin letters, and word-level scores hurt Korean far more than character-level ones hurt English.

    >>> language_of(["Python으로 파일을 읽는 방법을 알려주세요"]), language_of(["Read the file."])
    ('ko', 'en')
    >>> language_of(["東京に行きます"]), language_of(["Привет, мир"])
    ('cjk', 'other')
    """
    hangul = cjk = latin = other = 0
    for ch in "".join(texts):
        if _is_hangul(ch):
            hangul += 1
        elif _is_cjk(ch):
            cjk += 1
        elif ch.isalpha():
            latin += ch.isascii()
            other += not ch.isascii()
    letters = hangul + cjk + latin + other
    if letters and (hangul + cjk) * 3 >= letters:
        return "ko" if hangul >= cjk else "cjk"
    return "en" if latin >= other else "other"


def _units(text: str, lang: str) -> list[str]:
    """Characters (no spaces) for Korean/CJK; lowercased \\w+ words otherwise (Unicode-aware, unlike rouge_score)."""
    if lang in CHAR_LEVEL:
        return [ch for ch in text.lower() if not ch.isspace()]
    return re.findall(r"\w+", text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel over `a` (Crochemore et al. 2001, IPL 80(6)).

    One big-int step per item of `b` instead of a len(a) x len(b) table: Korean answers are scored on characters,
    and a 1000 x 1000 table in pure Python takes ~0.5 s per row.

    >>> lcs_length("ABCBDAB", "BDCABA")
    4
    """
    match: dict[str, int] = {}
    for i, x in enumerate(a):
        match[x] = match.get(x, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for y in b:
        u = v & match.get(y, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l(hypothesis: str, reference: str, lang: str) -> float:
    """ROUGE-L F1 (0-100) on characters for 'ko'/'cjk', on words otherwise.

    >>> rouge_l("The cat sat.", "the cat sat on the mat", "en")  # LCS 3; P 3/3, R 3/6
    66.66666666666667
    """
    hyp, ref = _units(hypothesis, lang), _units(reference, lang)
    if not hyp or not ref:
        return 100.0 if hyp == ref else 0.0
    common = lcs_length(hyp, ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(hyp), common / len(ref)
    return 100 * 2 * precision * recall / (precision + recall)


def normalise(text: str) -> str:
    """NFKC (full-width letters, composed Hangul) and single spaces: the form exact match compares."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def exact_match(hypothesis: str, reference: str) -> bool:
    """Equal after `normalise`; case and punctuation still count.

    >>> exact_match("Ｈｅｌｌｏ,\u3000world ", "Hello, world")
    True
    """
    return normalise(hypothesis) == normalise(reference)


def perplexity(nll_rows: Sequence[tuple[float, int]]) -> float:
    """exp(total nll / total tokens); nan when there are no tokens.

    >>> round(perplexity([(2.0, 1), (0.0, 1)]), 4)  # exp(2 / 2)
    2.7183
    """
    tokens = sum(n for _, n in nll_rows)
    return math.exp(sum(s for s, _ in nll_rows) / tokens) if tokens else math.nan


PER_ROW = "per-row"  # Scores.bleu_tokenize prefix where rows of different languages get different tokenizers


def row_tokenizers(refs: Sequence[str], lang: str = "auto") -> tuple[list[str], list[str], str]:
    """(per-row language, per-row sacrebleu tokenizer, the BLEU tokenizer as the report names it): each row by
    its own reference's language, so in a mixed set Korean rows score on characters and English rows on words;
    an explicit `lang` applies to every row.

    >>> row_tokenizers(["학교에 갑니다", "I go to school"])[2]
    'per-row: ko char, en 13a'
    >>> row_tokenizers(["I go", "You go"])[2]
    '13a'
    """
    if lang != "auto" and lang not in BLEU_TOKENIZE:
        raise ValueError(f"lang must be 'auto' or one of {sorted(BLEU_TOKENIZE)}, not {lang!r}")
    langs = [language_of([r]) if lang == "auto" else lang for r in refs]
    toks = [BLEU_TOKENIZE[x] for x in langs]
    if len(set(toks)) <= 1:
        return langs, toks, toks[0] if toks else BLEU_TOKENIZE[language_of(refs) if lang == "auto" else lang]
    seen = dict.fromkeys(zip(langs, toks))
    return langs, toks, f"{PER_ROW}: " + ", ".join(f"{x} {t}" for x, t in seen)


def bleu_corpus_inputs(hyps: Sequence[str], refs: Sequence[str], tokenize: str) -> tuple[list[str], list[str], str]:
    """Hypotheses, references and the tokenizer for sacrebleu's corpus BLEU: a mixed set is tokenised row by row
    with each row's own tokenizer first, then scored with tokenize='none'."""
    if not tokenize.startswith(PER_ROW):
        return list(hyps), list(refs), tokenize
    from sacrebleu.metrics import BLEU

    _, toks, _ = row_tokenizers(refs)
    cut = {t: BLEU(tokenize=t).tokenizer for t in set(toks)}
    return [cut[t](h) for t, h in zip(toks, hyps)], [cut[t](r) for t, r in zip(toks, refs)], "none"


def score_rows(generations: Sequence[Generation], *, embedder: Any = None,
               nll: Sequence[tuple[float, int]] | None = None, lang: str = "auto") -> Scores:
    """Every metric per row and for the corpus. The language comes from the references, which a broken model
    cannot change, row by row (row_tokenizers). 'cosine' needs an `embedder`; 'nll'/'perplexity' need `nll`
    from `per_row_nll` on the rows.

    >>> s = score_rows([Generation("x:1", "p", "학교에 갑니다", "학교에 갑니다")])
    >>> s.lang, s.bleu_tokenize, round(s.corpus["bleu"], 2), s.rows[0]["exact_match"]
    ('ko', 'char', 100.0, 1.0)
    """
    from sacrebleu.metrics import BLEU, CHRF

    # the answers are scored, not the thinking before them (thinking.py): the reference's and the generation's
    made, wanted = [thinking.split(g.generation) for g in generations], [thinking.split(g.reference)
                                                                        for g in generations]
    hyps, refs = [s.answer for s in made], [s.answer for s in wanted]
    langs, toks, tokenize = row_tokenizers(refs, lang)
    bleus = {t: BLEU(tokenize=t, effective_order=True) for t in set(toks)}  # effective order: short rows aren't 0
    chrf = CHRF()
    rows = [{"chrf": chrf.sentence_score(h, [r]).score, "bleu": bleus[t].sentence_score(h, [r]).score,
             "rouge_l": rouge_l(h, r, x), "exact_match": float(exact_match(h, r)), "chars": float(len(h)),
             "words": float(len(h.split())), "stopped": float(g.stopped)}
            for g, h, r, x, t in zip(generations, hyps, refs, langs, toks)]
    _score_calls(rows, hyps, refs)
    _score_thinking(rows, made, wanted)
    if embedder is not None:
        for row, c in zip(rows, embedder.cosine(hyps, refs), strict=True):
            row["cosine"] = c
    if nll is not None:
        for row, (s, n) in zip(rows, nll, strict=True):
            row["nll"] = s / n if n else math.nan
    corpus = {k: _mean([row[k] for row in rows if not math.isnan(row[k])]) for k in (rows[0] if rows else ())}
    if rows:
        corpus["chrf"] = chrf.corpus_score(hyps, [refs]).score
        h, r, t = bleu_corpus_inputs(hyps, refs, tokenize)
        corpus["bleu"] = BLEU(tokenize=t).corpus_score(h, [r]).score
    if nll is not None:
        corpus["perplexity"] = perplexity(nll)
        corpus["nll"] = math.log(corpus["perplexity"])  # token-weighted, unlike the rows' mean
    return Scores(corpus, rows, language_of(refs) if lang == "auto" else lang, tokenize)


def _score_calls(rows: list[dict[str, float]], hyps: Sequence[str], refs: Sequence[str]) -> None:
    """Where any reference calls a function: 'tool_call', 1 where the answer makes the same calls, 0 where not, nan
    on rows whose reference calls none (the paired difference leaves those out); 'call_when_due', 1 where the
    answer calls something exactly where its reference does."""
    wanted = [toolcalls.calls_in(r) for r in refs]
    if not any(wanted):
        return
    for row, h, w in zip(rows, hyps, wanted, strict=True):
        made = toolcalls.calls_in(h)
        row["tool_call"] = float(sorted(made) == sorted(w)) if w else math.nan
        row["call_when_due"] = float(bool(made) == bool(w))


def _score_thinking(rows: list[dict[str, float]], made: Sequence[thinking.Split],
                    wanted: Sequence[thinking.Split]) -> None:
    """Where any reference thinks before its answer: 'thinks_when_due', 1 where the answer thinks exactly where its
    reference does; 'thinking_ended', 1 where an answer's thinking ended (0: cut at max_new_tokens inside it, so
    no answer followed), nan on answers that do not think. `made` / `wanted`: the answers and references split."""
    if not any(w.reasoning for w in wanted):
        return
    for row, m, w in zip(rows, made, wanted, strict=True):
        row["thinks_when_due"] = float(bool(m.reasoning) == bool(w.reasoning))
        row["thinking_ended"] = float(m.finished) if m.reasoning is not None else math.nan


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def paired_bootstrap(base_values: Sequence[float], tuned_values: Sequence[float], resamples: int = 2000,
                     seed: int = 0) -> Difference:
    """tuned - base on the mean, with a 95% percentile interval over rows resampled with replacement.

    The same rows are drawn for both models (the per-row differences are resampled), so row difficulty
    cancels out; the same seed and row count draw the same rows for every metric.

    >>> paired_bootstrap([0, 0, 0, 0], [1, 1, 1, 1]).verdict
    'better'
    """
    if len(base_values) != len(tuned_values):
        raise ValueError(f"paired rows differ in number: {len(base_values)} base, {len(tuned_values)} tuned")
    diffs = [t - b for b, t in zip(base_values, tuned_values)]
    if not diffs:
        return Difference(0.0, 0.0, 0.0, 0)
    n, rng = len(diffs), random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    return Difference(sum(diffs) / n, means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1], n)


CORPUS_METRICS = ("chrf", "bleu")  # shown as corpus statistics: their intervals resample the corpus statistic


def _corpus_metric(name: str, tokenize: str) -> Any:
    """The sacrebleu metric whose corpus score `score_rows` reports as `name`."""
    from sacrebleu.metrics import BLEU, CHRF

    return CHRF() if name == "chrf" else BLEU(tokenize=tokenize)


def resample_indices(n: int, resamples: int, seed: int) -> Any:
    """Row indices of every bootstrap resample at once, drawn as sacrebleu's paired bootstrap draws them."""
    import numpy as np

    return np.random.default_rng(seed).choice(n, size=(resamples, n), replace=True)


def resampled_scores(metric: Any, hyps: Sequence[str], refs: Sequence[str], idxs: Any) -> Any:
    """The corpus score of every resample, from sacrebleu's per-row sufficient statistics (its own method)."""
    import numpy as np

    stats = np.array(metric._extract_corpus_statistics(list(hyps), [list(refs)]), dtype="float32")
    return np.array([metric._compute_score_from_stats(row.sum(0)).score for row in stats[idxs]])


def _interval(observed: float, resampled: Any, rows: int, direction: int) -> Difference:
    ordered = sorted(float(x) for x in resampled)
    k = len(ordered)
    return Difference(observed, ordered[int(0.025 * k)], ordered[int(0.975 * k) - 1], rows, direction)


def corpus_difference(name: str, base: Sequence[Generation], tuned: Sequence[Generation], tokenize: str, *,
                      resamples: int = 2000, seed: int = 0) -> Difference:
    """tuned - base of a corpus statistic (chrF, BLEU) as shown, with a 95% interval from a paired bootstrap
    that resamples rows and recomputes the corpus statistic for both models (sacrebleu's paired bootstrap).

    >>> g = lambda h: Generation("x", "p", "the cat sat on the mat", h)
    >>> d = corpus_difference("chrf", [g("a dog")] * 4, [g("the cat sat on the mat")] * 4, "13a")
    >>> round(d.mean, 1), d.verdict
    (96.5, 'better')
    """
    refs = [g.reference for g in base]
    if [g.reference for g in tuned] != refs:
        raise ValueError("paired rows must share their references")
    b_hyps, t_hyps = [g.generation for g in base], [g.generation for g in tuned]
    if name == "bleu":  # a mixed set: every row cut by its own tokenizer first, as score_rows does
        b_hyps, refs_cut, cut = bleu_corpus_inputs(b_hyps, refs, tokenize)
        t_hyps, _, _ = bleu_corpus_inputs(t_hyps, refs, tokenize)
        refs, tokenize = refs_cut, cut
    metric = _corpus_metric(name, tokenize)
    observed = metric.corpus_score(t_hyps, [refs]).score - metric.corpus_score(b_hyps, [refs]).score
    if not refs:
        return Difference(0.0, 0.0, 0.0, 0, METRICS[name][1])
    idxs = resample_indices(len(refs), resamples, seed)
    diffs = resampled_scores(metric, t_hyps, refs, idxs) - resampled_scores(metric, b_hyps, refs, idxs)
    return _interval(observed, diffs, len(refs), METRICS[name][1])


def rows_by_language(generations: Sequence[Generation]) -> dict[str, list[int]]:
    """Row indices per reference language, the most frequent language first.

    >>> rows_by_language([Generation("a", "p", "학교에 갑니다", ""), Generation("b", "p", "I go", "")])
    {'en': [1], 'ko': [0]}
    """
    groups: dict[str, list[int]] = {}
    for i, g in enumerate(generations):
        groups.setdefault(language_of([g.reference]), []).append(i)
    return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def corpus_value(name: str, generations: Sequence[Generation], tokenize: str) -> float:
    """The corpus chrF or BLEU of `generations`, as score_rows computes it for one tokenizer."""
    return _corpus_metric(name, tokenize).corpus_score([g.generation for g in generations],
                                                       [[g.reference for g in generations]]).score


def nll_difference(base: Sequence[tuple[float, int]], tuned: Sequence[tuple[float, int]], *,
                   resamples: int = 2000, seed: int = 0) -> Difference:
    """tuned - base of the token-weighted nll (log of the perplexity shown), rows resampled in pairs; rows
    without reference tokens are left out.

    >>> nll_difference([(4.0, 2), (9.0, 3)], [(2.0, 2), (3.0, 3)]).mean
    -1.6
    """
    import numpy as np

    pairs = [(b, t) for b, t in zip(base, tuned, strict=True) if b[1] and t[1]]
    if not pairs:
        return Difference(0.0, 0.0, 0.0, 0, METRICS["nll"][1])
    arr = np.array([(b[0], b[1], t[0], t[1]) for b, t in pairs], dtype=float)
    observed = arr[:, 2].sum() / arr[:, 3].sum() - arr[:, 0].sum() / arr[:, 1].sum()
    sums = arr[resample_indices(len(arr), resamples, seed)].sum(axis=1)
    return _interval(float(observed), sums[:, 2] / sums[:, 3] - sums[:, 0] / sums[:, 1], len(arr),
                     METRICS["nll"][1])


def compare(base_rows: Sequence[dict[str, float]], tuned_rows: Sequence[dict[str, float]], *,
            resamples: int = 2000, seed: int = 0, skip: Sequence[str] = ()) -> dict[str, Difference]:
    """paired_bootstrap for every metric both row lists have (rows with a nan value in a metric are left out
    of that metric, and `Difference.rows` says how many were used; a metric no row has for both has none).
    `skip`: metrics whose difference is taken another way (corpus statistics).

    >>> d = compare([{"chrf": 10.0}, {"chrf": 20.0}], [{"chrf": 30.0}, {"chrf": 40.0}])
    >>> d["chrf"].mean, d["chrf"].verdict
    (20.0, 'better')
    >>> compare([{"nll": 2.0}, {"nll": 3.0}], [{"nll": 1.0}, {"nll": 1.5}])["nll"].verdict  # lower is better
    'better'
    >>> compare([{"chars": 20.0}, {"chars": 30.0}], [{"chars": 40.0}, {"chars": 45.0}])["chars"].verdict
    'higher'
    """
    if len(base_rows) != len(tuned_rows):
        raise ValueError(f"paired rows differ in number: {len(base_rows)} base, {len(tuned_rows)} tuned")
    keys = [k for k in (base_rows[0] if base_rows else {})
            if k not in skip and all(k in r for r in (*base_rows, *tuned_rows))]
    out = {}
    for k in keys:
        pairs = [(b[k], t[k]) for b, t in zip(base_rows, tuned_rows) if not (math.isnan(b[k]) or math.isnan(t[k]))]
        if not pairs:  # no row has it for both (the base never thinks, so its thinking never ends): no difference
            continue
        d = paired_bootstrap([b for b, _ in pairs], [t for _, t in pairs], resamples, seed)
        out[k] = dataclasses.replace(d, direction=METRICS.get(k, ("", 1))[1])  # so d.verdict reads it right
    return out

