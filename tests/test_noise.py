"""NEFTune (noise.py): noisy input embeddings while training, each token's noise scaled by its own row's length."""

from __future__ import annotations

import math

import pytest
import torch

from tunesmith import noise


def _lora_llama(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))


def _embedded(model, **batch):
    """What the embeddings gave the decoder in a forward pass with this batch (the first decoder layer's input)."""
    got = {}

    def keep(_, args, kwargs):
        got["x"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    handle = model.get_base_model().model.layers[0].register_forward_pre_hook(keep, with_kwargs=True)
    try:
        model(**batch)
    finally:
        handle.remove()
    return got["x"]


def test_packed_rows_get_each_their_own_row_s_noise_and_eval_gets_none(tiny_model_dir):
    """Two rows of 3 and 12 tokens packed into one sequence (position ids start again at 0), as a padding-free
    step passes them through a PEFT model (whose forward skips the causal LM's hooks): each token's noise stays
    within alpha / sqrt(L d) of its own row's L, and reaches near it; transformers' hook would give both rows the
    whole sequence's (15) bound. In eval mode, and once the context ends, the embeddings are the model's own."""
    model = _lora_llama(tiny_model_dir)
    torch.manual_seed(0)
    ids = torch.randint(5, 100, (1, 15))
    positions = torch.tensor([[0, 1, 2, *range(12)]])
    clean = model.get_input_embeddings()(ids)
    alpha, width = 5.0, clean.shape[-1]
    with noise.neftune(model, alpha):
        model.train()
        noisy = (_embedded(model, input_ids=ids, position_ids=positions) - clean).abs()
        model.eval()
        assert torch.equal(_embedded(model, input_ids=ids, position_ids=positions), clean)
    model.train()
    assert torch.equal(_embedded(model, input_ids=ids, position_ids=positions), clean)  # hooks gone
    for rows, length in ((slice(0, 3), 3), (slice(3, 15), 12)):
        bound = alpha / math.sqrt(length * width)
        assert noisy[0, rows].max() <= bound * (1 + 1e-5) and noisy[0, rows].max() > 0.9 * bound


def test_padded_rows_take_their_length_from_the_attention_mask(tiny_model_dir):
    model = _lora_llama(tiny_model_dir).train()
    ids = torch.randint(5, 100, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :6] = 0  # left padding: the second row has 4 tokens
    clean = model.get_input_embeddings()(ids)
    with noise.neftune(model, 5.0):
        noisy = (_embedded(model, input_ids=ids, attention_mask=mask) - clean).abs()
    width = clean.shape[-1]
    assert noisy[0].max() <= 5 / math.sqrt(10 * width) * (1 + 1e-5)
    assert noisy[1].max() > 5 / math.sqrt(10 * width) * 1.2  # a 4-token row's bound is 1.58x the 10-token one's


@pytest.mark.parametrize(("shape", "positions", "want"), [
    ((1, 6), [[0, 1, 0, 1, 2, 3]], [[2, 2, 4, 4, 4, 4]]),
    ((2, 3), [[0, 1, 2], [0, 1, 2]], [[3, 3, 3], [3, 3, 3]]),
    ((1, 4), None, [[4, 4, 4, 4]])])
def test_row_lengths_from_position_ids(shape, positions, want):
    got = noise.row_lengths(shape, None if positions is None else torch.tensor(positions))
    assert got.tolist() == want


def test_neftune_is_refused_with_grpo_and_read_from_other_tools_configs(tmp_path):
    from tunesmith import foreign
    from tunesmith.config import parse

    raw = {"name": "x", "data": {"train": ["a.jsonl"]}, "train": {"objective": "grpo", "neftune_alpha": 5}}
    with pytest.raises(Exception, match="neftune_alpha cannot be used with train.objective grpo"):
        parse(raw, source="<t>")
    done = foreign.translate({"model_name_or_path": "m", "stage": "sft", "finetuning_type": "lora",
                              "dataset": "alpaca_en_demo", "neftune_noise_alpha": 5}, tmp_path / "lf.yaml")
    assert done.config["train"]["neftune_alpha"] == 5
