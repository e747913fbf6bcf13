"""train.attention: varlen. Packed rows through the varlen kernel give the padded batch's loss and gradients; where it
cannot run, plan and train say why and what to set. The kernel is CUDA-only: on the CPU a per-row SDPA stands in for
it (the layout, the row bounds TRL's collator hands over, the dispatch); the GPU test runs the kernel itself
(bench/gpu_check.sh's tests stage)."""

from __future__ import annotations

import types

import pytest

from tests.conftest import fails, tunesmith
from tunesmith import config, varlen
from tunesmith.errors import TunesmithError

LENGTHS = (30, 17, 24)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _rows(device: str):  # noqa: ANN202
    """Three rows as TRL's padding-free collator gives them, and the same rows padded."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    torch.manual_seed(0)
    rows = [torch.randint(1, 1000, (n,)) for n in LENGTHS]
    packed = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([{"input_ids": r.tolist()}
                                                                                  for r in rows])
    ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    mask = (torch.arange(max(LENGTHS))[None, :] < torch.tensor(LENGTHS)[:, None]).long()
    padded = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    move = lambda batch: {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}  # noqa: E731
    return move(packed), move(padded)


def _step(model, device: str, **inputs):  # noqa: ANN001, ANN202
    import torch

    model.zero_grad()
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = model(**inputs, use_cache=False).loss
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def _same(a, b) -> None:  # noqa: ANN001
    assert b[0] == pytest.approx(a[0], rel=2e-3)
    for x, y in zip(a[1], b[1], strict=True):
        assert (x - y).abs().max().item() <= 0.03 * x.abs().max().item()


def _reference_kernel(calls: list, torch_210: bool = False, exact_max: bool = True):  # noqa: ANN202
    """torch's varlen_attn computed row by row with SDPA: what the FlashAttention kernel computes on a GPU; with
    torch_210, torch 2.10's signature (is_causal; no scale or enable_gqa: 1/sqrt(D), K/V heads taken as they are).
    The bound on the longest row is what TRL's collator gives, exactly, or (exact_max off: graphs.py's padded
    rows) any bound at least that, the kernel's contract; then each call records it beside the row bounds."""
    import torch

    def kernel(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):  # noqa: ANN001, ANN202
        bounds = cu_q.tolist()
        assert cu_q.dtype == torch.int32 and cu_k is cu_q and window_size == (-1, 0)  # causal
        longest = max(b - a for a, b in zip(bounds, bounds[1:]))
        assert max_q == max_k and (max_q == longest if exact_max else max_q >= longest)
        assert q.dtype == k.dtype == v.dtype == torch.bfloat16 and q.dim() == 3  # [tokens, heads, D]
        calls.append(bounds if exact_max else (bounds, max_q))
        rows = [torch.nn.functional.scaled_dot_product_attention(
            *(x[a:b].transpose(0, 1)[None] for x in (q, k, v)), is_causal=True, scale=scale,
            enable_gqa=enable_gqa)[0].transpose(0, 1) for a, b in zip(bounds, bounds[1:])]
        return torch.cat(rows)

    def kernel_210(q, k, v, cu_q, cu_k, max_q, max_k, is_causal=False):  # noqa: ANN001, ANN202
        assert is_causal
        return kernel(q, k, v, cu_q, cu_k, max_q, max_k, window_size=(-1, 0), enable_gqa=q.shape[1] != k.shape[1])

    return kernel_210 if torch_210 else kernel


@pytest.mark.parametrize("torch_210", [False, True], ids=["torch 2.11+", "torch 2.10"])
def test_packed_rows_through_the_kernel_give_the_padded_loss_and_gradients(tiny_model_dir, monkeypatch, torch_210):
    import torch
    import torch.nn.attention.varlen as torch_varlen
    from transformers import AutoModelForCausalLM

    calls: list = []
    monkeypatch.setattr(varlen, "DEVICES", ("cpu",))
    monkeypatch.setattr(torch_varlen, "varlen_attn", _reference_kernel(calls, torch_210))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    packed, padded = _rows("cpu")
    plain = _step(model, "cpu", **padded)
    with varlen.used_by(model) as switched:
        assert switched and model.config._attn_implementation == varlen.NAME
        through = _step(model, "cpu", **packed)
        assert calls == [[0, 30, 47, 71]] * 2  # both layers, the bounds TRL's collator made on the host
        no_bounds = {k: v for k, v in packed.items() if not k.startswith(("cu_seq", "max_length"))}
        from_positions = _step(model, "cpu", **no_bounds)  # read from the position ids instead
        assert len(calls) == 4 and calls[-1] == [0, 30, 47, 71]
        with_mask = _step(model, "cpu", **padded)  # a padding mask: SDPA with it, not the kernel
        assert len(calls) == 4
    assert model.config._attn_implementation == "sdpa"
    for result in (through, from_positions, with_mask):
        _same(plain, result)
    assert torch.isfinite(torch.tensor(through[0]))


def test_varlen_says_why_it_cannot_train_here(tiny_model_dir, small_jsonl, tmp_path, monkeypatch):
    cfg = config.parse({"name": "x", "model": str(tiny_model_dir), "data": {"train": [str(small_jsonl)]},
                        "train": {"attention": "varlen", "precision": "bf16"}}, source="<test>")  # a GPU's
    from tunesmith import train

    if not _cuda():
        assert "CUDA GPU" in varlen.unavailable("bf16")
        with pytest.raises(TunesmithError, match="varlen cannot train here: it needs a CUDA GPU"):
            train.check_attention(cfg)
        res = tunesmith("plan", "--model", str(tiny_model_dir), "--data", str(small_jsonl),
                        "--set", "train.attention=varlen", cwd=tmp_path)
        fails(res, "train.attention: varlen cannot train here", "--set train.attention=auto")
    monkeypatch.setattr(varlen, "unavailable", lambda precision: None)  # a GPU that runs it: packed rows only
    off = cfg.model_copy(update={"train": cfg.train.model_copy(update={"padding_free": "off"})})
    with pytest.raises(TunesmithError, match="train.padding_free is off") as err:
        train.check_attention(off)
    assert "train.padding_free: on" in err.value.render()
    train.check_attention(cfg)  # padding_free auto: on where a GPU is


def test_a_packed_batch_the_kernel_cannot_take_is_an_error_not_attention_across_rows(tiny_model_dir, monkeypatch):
    # varlen gives transformers no mask for a batch without a padding mask: SDPA in the kernel's place would let the
    # packed rows attend to each other. One row alone is plain causal attention: SDPA is exact for it.
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    packed, _ = _rows("cpu")  # on the CPU: not where the kernel runs
    with varlen.used_by(model), pytest.raises(TunesmithError, match="the kernel runs on CUDA, these are on cpu"):
        _step(model, "cpu", **packed)
    one = {"input_ids": packed["input_ids"][:, :30], "labels": packed["labels"][:, :30]}
    with varlen.used_by(model):
        alone = _step(model, "cpu", **one)
    assert alone[0] == pytest.approx(_step(model, "cpu", **one)[0])
    monkeypatch.setattr(varlen, "DEVICES", ("cpu",))
    module = types.SimpleNamespace(is_causal=True)
    q = torch.zeros(1, 4, 71, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(TunesmithError, match="soft-capped"):
        varlen.attention(module, q, q, q, None, softcap=30.0, cu_seq_lens_q=packed["cu_seq_lens_q"],
                         max_length_q=packed["max_length_q"])


def test_models_with_what_the_kernel_does_not_cover_are_refused_by_name(tiny_model_dir, small_jsonl, tmp_path,
                                                                        monkeypatch):
    from transformers import AutoConfig

    from tunesmith import train

    monkeypatch.setattr(varlen, "unavailable", lambda precision: None)  # as on a GPU that runs the kernel
    for change, want in (({"attention_dropout": 0.1}, "attention dropout"),
                         ({"layer_types": ["sliding_attention", "full_attention"]}, "sliding-window attention")):
        folder = tmp_path / want.split()[0]
        arch = AutoConfig.from_pretrained(tiny_model_dir)
        for name, value in change.items():
            setattr(arch, name, value)
        arch.save_pretrained(folder)
        cfg = config.parse({"name": "x", "model": str(folder), "data": {"train": [str(small_jsonl)]},
                            "train": {"attention": "varlen", "precision": "bf16"}}, source="<test>")
        with pytest.raises(TunesmithError, match=f"varlen cannot train here: this model uses {want}"):
            train.check_attention(cfg)
    assert varlen.model_unsupported(AutoConfig.from_pretrained(tiny_model_dir)) is None


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (FlashAttention's varlen kernel)")
def test_gpu_varlen_kernel_gives_the_padded_loss_and_gradients(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    if varlen.unavailable("bf16"):
        pytest.skip(varlen.unavailable("bf16"))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").cuda()
    packed, padded = _rows("cuda")
    plain = _step(model, "cuda", **padded)
    with varlen.used_by(model):
        through = _step(model, "cuda", **packed)
    _same(plain, through)
