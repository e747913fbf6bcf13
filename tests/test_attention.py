"""The matrix attention gives SDPA's outputs and gradients (to a bf16 rounding), and SDPA's own where it is not meant."""

from __future__ import annotations

import types

import pytest

from tunesmith import attention


def _batch(lengths: list[int], n: int, heads: int = 9, kv: int = 3):  # noqa: ANN202
    import torch

    torch.manual_seed(0)
    b = len(lengths)
    q = torch.randn(b, heads, n, 64, requires_grad=True)  # fp32, as rotary embeddings leave q and k
    k = torch.randn(b, kv, n, 64, requires_grad=True)
    v = torch.randn(b, kv, n, 64).to(torch.bfloat16).requires_grad_()  # bf16, as v_proj leaves it
    real = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    mask = torch.ones(n, n, dtype=torch.bool).tril()[None, None] & real[:, None, None, :]  # causal + right padding
    return q, k, v, mask, real


def _run(fn, q, k, v, mask, real):  # noqa: ANN001, ANN202
    import torch

    module = types.SimpleNamespace(num_key_value_groups=q.shape[1] // k.shape[1], is_causal=True, training=True)
    for t in (q, k, v):
        t.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fn(module, q, k, v, mask, scaling=0.125)[0]
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)) * real[:, :, None, None]  # a loss over the real positions only
    (out.float() * weights).sum().backward()
    return out.detach().float() * real[:, :, None, None], q.grad.clone(), k.grad.clone(), v.grad.float().clone()


@pytest.mark.parametrize("mask_kind", ["padded", "causal only"])
def test_matrix_attention_matches_sdpa_forward_and_backward(mask_kind, monkeypatch):
    q, k, v, mask, real = _batch([40, 23, 31] if mask_kind == "padded" else [40, 40, 40], 40)
    given = mask if mask_kind == "padded" else None  # transformers passes None where the mask is only causal
    sdpa = _run(attention._sdpa(), q, k, v, given, real)

    def refuse():  # noqa: ANN202
        raise AssertionError("the matrix path should have answered")

    monkeypatch.setattr(attention, "_sdpa", refuse)
    matrix = _run(attention.attention, q, k, v, given, real)
    for name, a, b in zip(("out", "dq", "dk", "dv"), sdpa, matrix):
        scale = a.abs().max().item()
        assert (a - b).abs().max().item() <= 0.02 * scale, name  # a bf16 rounding (2^-8) or two of the largest
        assert (a - b).abs().mean().item() <= 0.002 * scale, name


def test_sdpa_answers_where_the_matrix_path_is_not_meant():
    import torch

    q, k, v, mask, real = _batch([40, 23, 31], 40)
    module = types.SimpleNamespace(num_key_value_groups=3, is_causal=True, training=False)
    sdpa = attention._sdpa()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # eval and generation: no gradients
        assert torch.equal(attention.attention(module, q, k, v, mask, scaling=0.125)[0],
                           sdpa(module, q, k, v, mask, scaling=0.125)[0])
    v32 = v.detach().float().requires_grad_()
    # fp32 training, no autocast: gradients on, still SDPA
    assert torch.equal(attention.attention(module, q, k, v32, mask, scaling=0.125)[0],
                       sdpa(module, q, k, v32, mask, scaling=0.125)[0])
    assert attention.fits(8, 9, 482) and not attention.fits(8, 9, 483)
    assert attention._matrix_mask(module, q, None, {"sliding_window": 16}) is None
    assert attention._matrix_mask(module, q, mask.float(), {}) is None  # additive float masks go to SDPA


def test_used_by_switches_a_model_on_sdpa_and_back(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    ids = torch.randint(0, 1000, (2, 24))
    with attention.used_by(model) as switched:
        assert switched and model.config._attn_implementation == attention.NAME
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    assert model.config._attn_implementation == "sdpa"
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    with attention.used_by(eager) as switched:  # a user's choice stays
        assert not switched and eager.config._attn_implementation == "eager"


def test_kept_bytes_counts_the_probabilities_of_every_layer():
    arch = types.SimpleNamespace(num_attention_heads=9, num_hidden_layers=30)
    assert attention.kept_bytes(arch, 8, 326) == 30 * 8 * 9 * 326 * 326 * 2
    assert attention.kept_bytes(arch, 4, 1024) == 0  # SDPA's path: nothing quadratic kept


def test_packed_rows_keep_the_probabilities_of_their_length_groups():
    arch = types.SimpleNamespace(num_attention_heads=9, num_hidden_layers=30)
    assert attention.length_groups((326,) * 8) == (tuple(range(8)),)  # rows of one length: one group, as padded
    mixed = (85, 90, 326, 88, 326, 80, 326, 95)
    groups = attention.length_groups(mixed)
    assert len(groups) == 2  # the English rows and the Korean ones
    assert attention.kept_bytes_packed(arch, mixed) == 30 * 9 * 2 * (5 * 95**2 + 3 * 326**2)
    assert attention.kept_bytes_packed(arch, mixed) < attention.kept_bytes(arch, 8, 326)
    assert attention.kept_bytes_packed(arch, (1024,) * 4) == 0  # SDPA for the batch: nothing quadratic kept


def test_packed_rows_are_padded_again_for_attention_alone(tiny_model_dir, monkeypatch):
    # A padding-free batch (one row of rows, positions restarting at 0) gives the padded batch's loss and gradients,
    # through the matrix path and, where the rows are too long for it, through SDPA on the re-padded rows.
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    rows = [torch.randint(0, 1000, (n,)) for n in (30, 17, 24)]
    ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    mask = (torch.arange(30)[None, :] < torch.tensor([30, 17, 24])[:, None]).long()
    packed = torch.cat(rows)[None]
    positions = torch.cat([torch.arange(len(r)) for r in rows])[None]
    packed_labels = torch.cat([torch.cat([torch.tensor([-100]), r[1:]]) for r in rows])[None]

    def step(**inputs):  # noqa: ANN202
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**inputs, use_cache=False).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    padded = step(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
    with attention.used_by(model):
        matrix = step(input_ids=packed, position_ids=positions, labels=packed_labels)
        monkeypatch.setattr(attention, "GROUP_COST", 0)  # each length its own group, put back in packed order
        attention.length_groups.cache_clear()
        assert attention.length_groups((30, 17, 24)) == ((1,), (2,), (0,))
        grouped = step(input_ids=packed, position_ids=positions, labels=packed_labels)
        monkeypatch.setattr(attention, "MAX_SCORE_BYTES", 0)  # too long for the matrix: SDPA, rows padded again
        repadded = step(input_ids=packed, position_ids=positions, labels=packed_labels)
    attention.length_groups.cache_clear()
    for loss, grads in (matrix, grouped, repadded):
        assert loss == pytest.approx(padded[0], rel=1e-3)
        for a, b in zip(padded[1], grads, strict=True):
            assert (a - b).abs().max().item() <= 0.03 * a.abs().max().item()
    assert attention._packed_starts(positions).tolist() == [0, 30, 47]
    assert attention._packed_starts(torch.arange(12)[None]) is None  # one row: nothing to split


def test_length_groups_are_the_cheapest_cut_of_the_sorted_rows():
    # Every row in exactly one group, each group in packed order, and the cost (padded score elements plus
    # GROUP_COST a group) the least of all cuts of the rows sorted by length (brute force over 2^(n-1) cuts).
    import itertools
    import random

    draw = random.Random(0)
    for _ in range(20):
        lengths = tuple(draw.choice([draw.randint(60, 110), draw.randint(280, 330)]) for _ in range(draw.randint(1, 9)))
        groups = attention.length_groups(lengths)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert all(list(g) == sorted(g) for g in groups)

        def cost(gs):  # noqa: ANN001, ANN202
            return sum(len(g) * max(lengths[i] for i in g) ** 2 + attention.GROUP_COST for g in gs)

        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        cheapest = min(cost([order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))])
                       for k in range(len(order)) for cuts in itertools.combinations(range(1, len(order)), k))
        assert cost(groups) == cheapest
    # the demo's two kinds of rows (English ~85 tokens, Korean ~300) in one random batch: two groups
    assert [sorted(g) for g in attention.length_groups((82, 86, 84, 315, 308, 309, 85, 92))] == \
        [[0, 1, 2, 6, 7], [3, 4, 5]]
    assert attention.length_groups((64,) * 8) == (tuple(range(8)),)


def test_packed_rows_in_fp32_are_padded_again_for_sdpa(tiny_model_dir, monkeypatch):
    # fp32 training (a CPU without native bf16): a padding-free batch is padded again for SDPA alone (never the bf16
    # matrix path) and gives the padded batch's loss and gradients to fp32 rounding.
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    lengths = (30, 17, 24)
    rows = [torch.randint(0, 1000, (n,)) for n in lengths]
    mask = (torch.arange(30)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    packed = {"input_ids": torch.cat(rows)[None],
              "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
              "labels": torch.cat([torch.cat([torch.tensor([-100]), r[1:]]) for r in rows])[None]}

    def step(**inputs):  # noqa: ANN202
        model.zero_grad()
        loss = model(**inputs, use_cache=False).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    padded = step(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
    calls = []
    sdpa = attention._sdpa()
    monkeypatch.setattr(attention, "_sdpa", lambda: lambda *a, **k: calls.append(a[1].shape) or sdpa(*a, **k))
    monkeypatch.setattr(attention, "_function", lambda: pytest.fail("fp32 took the bf16 matrix path"))
    with attention.used_by(model):
        loss, grads = step(**packed)
    layers = model.config.num_hidden_layers
    assert len(calls) == layers and all(shape[0] == 3 and shape[2] == 30 for shape in calls)  # re-padded rows
    assert loss == pytest.approx(padded[0], rel=1e-5)
    for a, b in zip(padded[1], grads, strict=True):
        assert (a - b).abs().max().item() <= 1e-4 * max(a.abs().max().item(), 1e-6)
