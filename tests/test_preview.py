"""`tunesmith preview` and `tunesmith tokens` through the CLI, on the embedded tokenizer and real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REALDATA, SAMPLE, tunesmith


def test_preview_brackets_exactly_the_answers_when_not_a_tty(smol_dir: Path):
    res = tunesmith("preview", str(SAMPLE / "counsel_en.jsonl"), "--model", str(smol_dir), "-n", "2")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.count("--- counsel_en.jsonl:") == 2
    assert "<|im_start|>assistant\n[[It sounds like you feel " in out and "?<|im_end|>\n]]" in out
    assert out.count("[[") == 2  # one supervised span per single-turn row, the prompt never bracketed
    assert "check: end-of-turn token supervised: yes, in every row" in out
    assert "check: prompt tokens identical at training and inference: yes" in out
    assert "check: rows with zero supervised tokens: 0" in out


@pytest.mark.skipif(not REALDATA.exists(), reason="../shared/realdata is not beside this checkout")
def test_preview_of_a_korean_realdata_file_counts_dropped_rows(smol_dir: Path):
    corpus = REALDATA / "cyoon-kim__hanghae_ai_study" / "week7__advanced__corpus.json"
    res = tunesmith("preview", str(corpus), "--model", str(smol_dir), "-n", "1", "--max-length", "1024")
    assert res.returncode == 0, res.stderr
    assert "rows not trained:" in res.stdout and "longer than template.max_length=1024: dropped" in res.stdout
    assert "[[" in res.stdout and "다음 문단을 읽고" in res.stdout


def test_tokens_lists_specials_and_adds_tokens(smol_dir: Path, tmp_path: Path):
    res = tunesmith("tokens", "--model", str(smol_dir), "--csv", str(tmp_path / "t.csv"))
    assert res.returncode == 0, res.stderr
    assert "vocabulary: 49152 tokens" in res.stdout and "'<|im_end|>'" in res.stdout
    assert "tokens per character: en 0." in res.stdout and "<|im_start|>" in res.stdout
    assert (tmp_path / "t.csv").read_text().startswith("token,id,role\n")
    out = tmp_path / "with-tokens"
    added = tunesmith("tokens", "--model", str(smol_dir), "--add", "<|therapist|>", "--out", str(out))
    assert added.returncode == 0, added.stderr
    assert "vocabulary: 49153 tokens" in added.stdout and (out / "model.safetensors").is_file()
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.shape[0] == 49153
