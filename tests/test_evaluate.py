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
