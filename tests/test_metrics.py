from __future__ import annotations

import math
import random
import unicodedata

import pytest

from tunesmith import metrics
from tunesmith.metrics import (compare, exact_match, language_of, lcs_length, paired_bootstrap, rouge_l,
                               score_rows)
from tunesmith.records import Difference, Generation

KO_REF, KO_HYP = "저는 학교에 갑니다", "나는 학교에 간다"


def gen(ref: str, hyp: str, stopped: bool = True) -> Generation:
    return Generation("x:1", "prompt", ref, hyp, stopped)


def test_language_of_picks_character_scripts_even_with_english_terms_mixed_in():
    assert language_of([KO_REF]) == "ko"
    assert language_of(["Python으로 API를 호출하세요"]) == "ko"  # 9 Latin letters, 8 Hangul syllables
    assert language_of(["今日は雨です"]) == "cjk"
    assert language_of(["It sounds like you feel tired."]) == "en"
    assert language_of(["Привет, как дела?"]) == "other"


def test_rouge_l_on_korean_characters_by_hand():
    # 나 는 학 교 에 간 다 (7) vs 저 는 학 교 에 갑 니 다 (8): LCS 는 학 교 에 다 = 5; F1 = 2*5 / (7+8) = 2/3
    assert rouge_l(KO_HYP, KO_REF, "ko") == pytest.approx(200 / 3)
    # the same pair on words shares only 학교에 (1 of 3 each): F1 = 1/3; particles make word overlap meaningless
    assert rouge_l(KO_HYP, KO_REF, "en") == pytest.approx(100 / 3)


def test_rouge_l_on_english_words_lowercased_and_split_from_punctuation():
    # [a quick brown dog jumps] vs [the quick brown fox jumps over]: LCS quick brown jumps = 3; F1 = 6/11
    assert rouge_l("A quick, brown dog jumps!", "The quick brown fox jumps over", "en") == pytest.approx(600 / 11)
    assert rouge_l("", "", "en") == 100.0 and rouge_l("", "word", "en") == 0.0 and rouge_l("x", "y", "en") == 0.0


def test_bit_parallel_lcs_matches_the_textbook_table():
    def table_lcs(a: str, b: str) -> int:
        prev = [0] * (len(b) + 1)
        for x in a:
            cur = [0]
            for j, y in enumerate(b):
                cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
            prev = cur
        return prev[-1]

    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choices("가나다ab", k=rng.randint(0, 40)))
        b = "".join(rng.choices("가나다ab", k=rng.randint(0, 40)))
        assert lcs_length(a, b) == table_lcs(a, b), (a, b)


def test_korean_bleu_uses_characters_and_is_not_zeroed_by_particles():
    from sacrebleu.metrics import BLEU

    s = score_rows([gen(KO_REF, KO_HYP)])
    assert (s.lang, s.bleu_tokenize) == ("ko", "char")
    # characters: 5/7 unigrams ... 1/4 4-grams match, brevity penalty exp(1 - 8/7)
    assert s.corpus["bleu"] == pytest.approx(37.685, abs=0.01)
    assert BLEU(tokenize="13a").corpus_score([KO_HYP], [[KO_REF]]).score == 0.0  # no word bigram matches
    assert s.rows[0]["bleu"] > 0
    assert score_rows([gen("The cat sat on the mat.", "The cat sat.")]).bleu_tokenize == "13a"


def test_exact_match_normalises_unicode_and_whitespace_but_not_case():
    assert exact_match("Ｈｅｌｌｏ,\u3000world ", "Hello, world")  # full-width letters, ideographic space
    assert exact_match(unicodedata.normalize("NFD", "한국어  좋아요"), "한국어 좋아요")  # jamo -> syllables
    assert not exact_match("hello, world", "Hello, world")


def test_score_rows_gives_every_metric_per_row_and_for_the_corpus():
    gens = [gen(KO_REF, KO_REF, stopped=True), gen(KO_REF, KO_HYP, stopped=False)]
    s = score_rows(gens, nll=[(2.0, 2), (6.0, 2)])
    assert [r["exact_match"] for r in s.rows] == [1.0, 0.0]
    assert [r["stopped"] for r in s.rows] == [1.0, 0.0] and s.corpus["stopped"] == 0.5
    assert [r["chars"] for r in s.rows] == [len(KO_REF), len(KO_HYP)] and s.corpus["words"] == 3.0
    assert s.rows[0]["rouge_l"] == 100.0 and s.rows[1]["rouge_l"] == pytest.approx(200 / 3)
    assert [r["nll"] for r in s.rows] == [1.0, 3.0]
    assert s.corpus["nll"] == pytest.approx(2.0) and s.corpus["perplexity"] == pytest.approx(math.e ** 2)
    assert set(s.rows[0]) == {"chrf", "bleu", "rouge_l", "exact_match", "chars", "words", "stopped", "nll"}


def test_bootstrap_interval_covers_the_true_difference_in_most_trials():
    # a 95% interval; the percentile bootstrap runs a little narrow on few rows (89/100 at 40 rows, 94 at 60)
    covered, widths = 0, []
    for trial in range(100):
        rng = random.Random(100 + trial)
        base = [rng.gauss(50, 10) for _ in range(60)]  # row difficulty varies a lot; pairing cancels it
        tuned = [b + 0.5 + rng.gauss(0, 1) for b in base]
        d = paired_bootstrap(base, tuned, resamples=1000, seed=trial)
        covered += d.low <= 0.5 <= d.high
        widths.append(d.high - d.low)
    assert covered >= 90
    assert sum(widths) / len(widths) < 0.7  # about 2 * 1.96 / sqrt(60) = 0.51, not widened by the row spread


def test_bootstrap_is_deterministic_per_seed_and_verdicts_follow_the_interval():
    rng = random.Random(7)
    base = [rng.random() for _ in range(30)]
    tuned = [b + rng.gauss(0.2, 0.1) for b in base]
    assert paired_bootstrap(base, tuned, seed=3) == paired_bootstrap(base, tuned, seed=3)
    assert paired_bootstrap(base, tuned, seed=3) != paired_bootstrap(base, tuned, seed=4)
    assert paired_bootstrap(base, tuned).verdict == "better"
    assert paired_bootstrap(tuned, base).verdict == "worse"
    noise = [b + rng.gauss(0, 0.1) for b in base]
    assert paired_bootstrap(base, noise).verdict == "no clear difference"
    assert paired_bootstrap([], []) == Difference(0.0, 0.0, 0.0, 0)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0])


def test_compare_runs_every_shared_metric_and_reads_direction():
    base = [{"chrf": 10.0 + i, "nll": 3.0, "chars": 50.0, "cosine": math.nan if i == 0 else 0.5}
            for i in range(20)]
    tuned = [{"chrf": 30.0 + i, "nll": 2.0 + i / 100, "chars": 50.0 + i % 3, "cosine": 0.5} for i in range(20)]
    diffs = compare(base, tuned)
    assert set(diffs) == {"chrf", "nll", "chars", "cosine"}
    assert diffs["chrf"].mean == pytest.approx(20.0) and diffs["chrf"].verdict == "better"
    assert diffs["nll"].mean < 0 and diffs["nll"].verdict == "better"  # lower nll is better
    assert diffs["chars"].verdict == "higher"  # a length is neither better nor worse
    assert diffs["cosine"].rows == 19 and diffs["cosine"].verdict == "no clear difference"
    assert Difference(0.4, 0.1, 0.7, 20, direction=-1).verdict == "worse"


def test_the_corpus_bootstrap_draws_and_scores_as_sacrebleu_s_paired_bootstrap():
    """Same rows drawn (numpy's generator with the same seed) and the same corpus statistic per resample as
    sacrebleu's paired bootstrap: its per-system mean and CI for the tuned model come out equal."""
    import random

    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import _paired_bs_test

    rng = random.Random(3)
    words = "the a cat dog sat ran on under mat rug happily quickly".split()
    refs = [" ".join(rng.choices(words, k=8)) for _ in range(40)]
    base = [" ".join(rng.choices(words, k=6)) for _ in refs]
    tuned = [r if rng.random() < 0.5 else " ".join(rng.choices(words, k=7)) for r in refs]
    for name, metric in (("chrf", CHRF()), ("bleu", BLEU())):
        bl_stats = metric._extract_corpus_statistics(base, [refs])
        bl_result = metric._aggregate_and_compute(bl_stats)
        _, result = _paired_bs_test({name: (bl_stats, bl_result)}, "tuned", tuned, [refs], {name: metric},
                                    n_samples=1000, seed=7)
        idxs = metrics.resample_indices(len(refs), 1000, 7)
        mine = metrics.resampled_scores(metric, tuned, refs, idxs)
        assert mine.mean() == pytest.approx(result[name].mean, abs=1e-3)
        d = metrics.corpus_difference(name, [Generation("x", "p", r, h) for r, h in zip(refs, base)],
                                      [Generation("x", "p", r, h) for r, h in zip(refs, tuned)], "13a",
                                      resamples=1000, seed=7)
        assert d.mean == pytest.approx(result[name].score - bl_result.score) and d.verdict == "better"
        assert 0 < d.low < d.mean < d.high


def test_a_mixed_language_set_tokenises_bleu_and_rouge_row_by_row():
    ko = Generation("x:1", "p", "오늘 학교에 갔습니다", "오늘 학교에 갔어요")
    en = Generation("x:2", "p", "I went to school today", "Today I went to school")
    mixed = score_rows([ko, en])
    assert mixed.bleu_tokenize == "per-row: ko char, en 13a"
    alone_ko, alone_en = score_rows([ko]), score_rows([en])
    assert alone_ko.bleu_tokenize == "char" and alone_en.bleu_tokenize == "13a"
    assert mixed.rows[0]["bleu"] == alone_ko.rows[0]["bleu"] > 0  # characters: the Korean row is not 0
    assert mixed.rows[0]["rouge_l"] == alone_ko.rows[0]["rouge_l"]
    assert mixed.rows[1]["bleu"] == alone_en.rows[0]["bleu"]
    assert score_rows([ko], lang="en").rows[0]["bleu"] < mixed.rows[0]["bleu"]  # word-level: what it was
    d = metrics.corpus_difference("bleu", [ko, en], [ko, en], mixed.bleu_tokenize)
    assert d.mean == 0.0


def test_tool_call_scores_rows_whose_reference_calls_a_function_only():
    call = '<tool_call>\n{"name": "weather", "arguments": {"city": "Seoul"}}\n</tool_call>'
    rows = [Generation("f:1", "p", '<tool_call>{"name": "weather", "arguments": {"city": "Seoul"}}</tool_call>', call),
            Generation("f:2", "p", '<tool_call>{"name": "weather", "arguments": {"city": "Busan"}}</tool_call>', call),
            Generation("f:3", "p", "It is sunny.", "Sunny today.")]
    s = score_rows(rows)
    assert [r["tool_call"] for r in s.rows[:2]] == [1.0, 0.0] and math.isnan(s.rows[2]["tool_call"])
    assert s.corpus["tool_call"] == 0.5
    assert [r["call_when_due"] for r in s.rows] == [1.0, 1.0, 1.0]  # called where due (rightly or not), not elsewhere
    missed = score_rows([Generation("f:1", "p", "Let me check.", call), Generation("f:2", "p", call, "Hi!")])
    assert [r["call_when_due"] for r in missed.rows] == [0.0, 0.0]
    assert "tool_call" not in score_rows(rows[2:]).rows[0]  # no function calling in the eval rows: no such metric
    d = compare([{"tool_call": 0.0}, {"tool_call": math.nan}, {"tool_call": 0.0}],
                [{"tool_call": 1.0}, {"tool_call": math.nan}, {"tool_call": 1.0}])["tool_call"]
    assert d.rows == 2 and d.mean == 1.0
