"""The retention check on real models and the shipped general-domain set: an over-trained SmolLM2 is flagged,
an unchanged model is not."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import tiny_config


def test_the_general_set_is_shipped_in_english_and_korean():
    from tunesmith import retention

    gs = retention.general_set()
    ids = [p[0] for p in gs.passages] + [p[0] for p in gs.prompts]
    assert len(ids) == len(set(ids)) == 28
    for rows in (gs.passages, gs.prompts):
        assert {r[1] for r in rows} == {"en", "ko"}
        assert all(r[0].startswith(r[1] + "-") for r in rows)  # the id names the language
    assert all(len(text) > 150 for _, _, text in gs.passages)


def test_an_unchanged_model_measures_the_same_and_is_not_called_forgetting(tiny_model_dir: Path):
    from tunesmith import models, retention
    from tunesmith.config import EvalConfig, TemplateConfig

    model, tok = models.load(str(tiny_model_dir))
    ecfg = EvalConfig(max_new_tokens=8, batch_size=8)
    a = retention.measure("base", model, tok, TemplateConfig(max_length=128), ecfg)
    b = retention.measure("tuned", model, tok, TemplateConfig(max_length=128), ecfg)
    assert a.text_nll == b.text_nll and a.answers == b.answers  # deterministic: same model, same numbers
    assert len(a.text_nll) == 16 and all(n > 20 for _, n in a.text_nll)
    assert len(a.answer_nll) == 12 and all(n > 3 for _, n in a.answer_nll)
    ret = retention.compare([a, b])
    assert set(ret.differences["tuned"]) == set(retention.MEASURES)
    assert all(d.mean == 0 and d.verdict == "no clear difference" for d in ret.differences["tuned"].values())
    assert retention.forgetting(ret, "tuned") == []
    assert retention.verdict(ret, "tuned").startswith("No forgetting found")
    # Through summary.json and back, unchanged.
    from tunesmith.runfiles import read_retention, retention_json

    assert read_retention(json.loads(json.dumps(retention_json(ret)))) == ret


def _smol_run(smol_dir: Path, data: Path, out: Path, name: str, lr: float, steps: int):
    from tunesmith import pipeline

    cfg = tiny_config(smol_dir, data, out, name=name, train={
        "max_steps": steps, "batch_size": 4, "learning_rate": lr, "lr_scheduler": "constant", "warmup_ratio": 0.0,
        "eval_strategy": "steps", "eval_steps": steps, "logging_steps": steps, "report_to": []})
    cfg = cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"r": 16, "alpha": 32}),
                                 "eval": cfg.eval.model_copy(update={"embedder": "none", "retention": "on"})})
    return pipeline.run(cfg, say=lambda _: None)


@pytest.mark.slow
def test_an_over_trained_smollm2_is_flagged(smol_dir: Path, tmp_path: Path):
    """Eight counselling rows, 12 steps at a constant learning rate 7x the demo's: SmolLM2 parrots its training
    rows and its perplexity on the general passages rises far past 5% (measured: +62% [+47%, +93%]). The other
    direction, an unchanged model not flagged, is the test above; the demo's tune (README) is not flagged either."""
    from tunesmith import retention

    rows = [{"messages": [{"role": "user", "content": f"I feel anxious about exam number {i}."},
                          {"role": "assistant", "content": "Breathe slowly. Anxiety before exams is common; "
                                                           "let us make a small plan together."}]}
            for i in range(12)]
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    wrecked = _smol_run(smol_dir, data, tmp_path / "runs", "wrecked", lr=2e-3, steps=12).evaluation.retention
    assert wrecked is not None
    flagged = retention.forgetting(wrecked, "tuned")
    assert flagged and retention.verdict(wrecked, "tuned").startswith("Forgetting")
    text = wrecked.differences["tuned"]["text"]
    assert text.verdict == "worse" and math.expm1(text.low) > retention.PERPLEXITY_RISE
    report = (tmp_path / "runs" / "wrecked" / "report.md").read_text(encoding="utf-8")
    assert "**Forgetting: tuning made tuned worse outside the task" in report
    assert "| perplexity of general text, Korean |" in report
