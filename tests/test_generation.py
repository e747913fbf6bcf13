"""The generation path's scoring: the NLL of reference answers, row by row, batched by tokens."""

from __future__ import annotations

import math
import random

import pytest

from tunesmith.generation import per_row_nll
from tunesmith.metrics import perplexity
from tunesmith.records import Example


@pytest.fixture(scope="module")
def tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).float()


def test_per_row_nll_matches_cross_entropy_row_by_row(tiny_llama):
    import torch
    import torch.nn.functional as F

    rng = random.Random(1)
    examples = []
    for n, prompt in [(12, 5), (7, 3), (20, 15), (5, 5), (9, 2)]:  # (5, 5): nothing supervised
        ids = tuple(rng.randrange(100) for _ in range(n))
        examples.append(Example(ids, (-100,) * prompt + ids[prompt:], f"row{n}"))
    tiny_llama.train()
    got = per_row_nll(tiny_llama, examples, batch_size=3)
    assert tiny_llama.training  # mode restored
    for ex, (nll, tokens) in zip(examples, got):
        ids, labels = torch.tensor([ex.input_ids]), torch.tensor([ex.labels])
        with torch.no_grad():
            tiny_llama.eval()
            logits = tiny_llama(ids).logits[0]
            want = F.cross_entropy(logits[:-1], labels[0, 1:], ignore_index=-100, reduction="sum").item()
            assert tokens == ex.supervised_tokens - (ex.labels[0] != -100)  # the first token has no context
            assert nll == pytest.approx(want, rel=1e-4, abs=1e-5)
            if tokens:  # the model's own shifted loss is the per-token mean
                assert nll / tokens == pytest.approx(tiny_llama(ids, labels=labels).loss.item(), rel=1e-4)
    assert got[3] == (0.0, 0)
    one_by_one = per_row_nll(tiny_llama, examples, batch_size=1)  # no padding at all
    assert [n for _, n in one_by_one] == [n for _, n in got]
    assert [s for s, _ in one_by_one] == pytest.approx([s for s, _ in got], rel=1e-4)
    assert perplexity(got) == pytest.approx(math.exp(sum(s for s, _ in got) / sum(n for _, n in got)))
    assert math.isnan(perplexity([(0.0, 0)]))


def test_a_generation_cut_inside_a_character_ends_on_a_whole_one(smol_tokenizer):
    from tunesmith.generation import whole_characters

    text = "잘 자요 🌟"
    ids = smol_tokenizer.encode(text, add_special_tokens=False)
    torn = [smol_tokenizer.decode(ids[:k]) for k in range(1, len(ids))]
    assert any(t.endswith("\ufffd") for t in torn)  # byte-level tokens: a cut can fall inside a character
    for t in torn:
        kept = whole_characters(t)
        assert "\ufffd" not in kept and text.startswith(kept)
    assert whole_characters(text) == text
