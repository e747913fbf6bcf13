from __future__ import annotations

from tunesmith.evaluate import score
from tunesmith.records import Generation


def gen(ref: str, hyp: str) -> Generation:
    return Generation("x:1", "prompt", ref, hyp)


def test_identical_outputs_score_full_marks():
    s = score([gen("It sounds like you feel tired.", "It sounds like you feel tired."),
               gen("많이 지치셨군요.", "많이 지치셨군요.")])
    assert s["chrf"] == 100.0 and s["bleu"] == 100.0


def test_chrf_orders_closer_korean_higher_than_unrelated_text():
    ref = "시험을 망쳐서 많이 속상하시군요. 어떤 점이 가장 아쉬우셨나요?"
    close = score([gen(ref, "시험 때문에 속상하시군요. 무엇이 가장 아쉬우셨나요?")])["chrf"]
    far = score([gen(ref, "Here are five tips for studying better.")])["chrf"]
    assert close > 30 > far


def test_paired_bootstrap_separates_a_real_gain_from_noise():
    from tunesmith.evaluate import paired_bootstrap

    refs = [f"It sounds like you feel tired because of exam {i}. What helps you rest?" for i in range(20)]
    before = [gen(r, "Here are some tips.") for r in refs]
    after = [gen(r, r.replace("tired", "worn out")) for r in refs]
    gain = paired_bootstrap(before, after)
    assert gain.verdict == "better" and 0 < gain.low <= gain.mean <= gain.high and gain.rows == 20
    same = paired_bootstrap(before, before)
    assert same.verdict == "no clear difference" and same.mean == same.low == same.high == 0
    assert paired_bootstrap(after, before).verdict == "worse"


def test_stopped_share_counts_generations_that_ended_by_themselves():
    gens = [Generation("x:1", "p", "r", "a", stopped=True), Generation("x:2", "p", "r", "b", stopped=False)]
    assert score(gens)["stopped_share"] == 0.5
