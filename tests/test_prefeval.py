"""Preference accuracy and margin (issue 30) on hand-computed numbers, and on a real model's log-probs."""

from __future__ import annotations

import pytest

from tunesmith import prefeval
from tunesmith.config import RunConfig
from tunesmith.data.preference import Pair
from tunesmith.records import Message


def test_accuracy_and_margin_by_hand():
    # per pair (chosen, rejected) mean log-prob per token: chosen wins, loses, ties
    m = prefeval.PreferenceModel("tuned", "x", ((-1.0, -2.0), (-3.0, -1.0), (-1.5, -1.5)))
    assert m.wins == [1.0, 0.0, 0.5] and m.accuracy == pytest.approx(0.5)
    assert m.margins == [1.0, -2.0, 0.0] and m.margin == pytest.approx(-1 / 3)
    base = prefeval.PreferenceModel("base", "b", ((-2.0, -1.0), (-3.0, -1.0), (-2.0, -1.0)))
    ev = prefeval.PreferenceEval(("a", "b", "c"), (base, m), {"tuned": {
        "accuracy": prefeval.paired_bootstrap(base.wins, m.wins), "margin": prefeval.paired_bootstrap(
            base.margins, m.margins)}})
    assert ev.differences["tuned"]["accuracy"].mean == pytest.approx(0.5)  # 0% -> 50%
    assert ev.differences["tuned"]["margin"].mean == pytest.approx((2 + 0 + 1) / 3)
    assert prefeval.PreferenceEval.from_json(ev.to_json()) == ev
    # three pairs: +50 points, but the interval reaches zero, so the words do not claim a change
    assert "cannot be told apart" in prefeval.verdict(ev) and "50% vs 0%" in prefeval.verdict(ev)
    many = prefeval.PreferenceModel("tuned", "x", ((-1.0, -2.0),) * 30 + ((-2.0, -1.0),) * 10)
    worse = prefeval.PreferenceModel("base", "b", ((-2.0, -1.0),) * 40)
    big = prefeval.PreferenceEval(tuple(map(str, range(40))), (worse, many), {"tuned": {
        "accuracy": prefeval.paired_bootstrap(worse.wins, many.wins),
        "margin": prefeval.paired_bootstrap(worse.margins, many.margins)}})
    assert prefeval.verdict(big).startswith("tuned prefers the chosen answers more often than base on 40")
    assert "75% vs 0%" in prefeval.verdict(big) and "more strongly" in prefeval.verdict(big)
    header, rows = prefeval.table(ev)
    assert header[0] == "metric" and rows[0][0] == "preference accuracy" and rows[0][1].startswith("0% [")


def test_pair_scores_are_each_answers_mean_log_prob_per_token(tiny_model_dir):
    import torch

    from tunesmith import models

    model, tok = models.load(str(tiny_model_dir))
    pair = Pair((Message("user", "I failed my exam."),), "That hurts. What happened?", "Study harder.", "p:1")
    cfg = RunConfig.model_validate({"name": "x", "data": {"train": ["x.jsonl"]}})
    sources, scores, skipped = prefeval.pair_scores(model, tok, [pair], cfg)
    assert sources == ["p:1"] and skipped == 0
    prompt = tok.apply_chat_template([{"role": "user", "content": "I failed my exam."}], tokenize=False,
                                     add_generation_prompt=True)
    for answer, got in zip((pair.chosen, pair.rejected), scores[0]):
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(answer + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + a_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].float(), -1)
        want = sum(logp[len(p_ids) + i - 1, t].item() for i, t in enumerate(a_ids)) / len(a_ids)
        assert got == pytest.approx(want, abs=1e-4)
