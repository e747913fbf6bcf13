"""train.compile: graphs. Each step's packed row padded to a few lengths gives the unpadded row's loss and gradients,
through the trainer too; where CUDA graphs cannot run, plan and train say why and what to set. The graphs
themselves are CUDA-only: the GPU tests (bench/gpu_check.sh's tests stage) train with them against eager steps."""

from __future__ import annotations

import contextlib
import itertools

import pytest

from tests.conftest import fails, tiny_config, tunesmith
from tunesmith import config, diskio, graphs, memory, pipeline, rundir, train
from tunesmith.errors import TunesmithError

LENGTHS = (30, 17, 24)  # 71 tokens packed: padded to 128


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_bucket_lengths_are_few_and_at_most_one_and_a_half_times_the_tokens():
    lengths = {n: graphs.bucket_length(n) for n in range(1, 16_385)}
    assert all(b >= n and (b == graphs.SHORTEST or b <= 1.5 * n) for n, b in lengths.items())
    assert sorted({lengths[n] for n in range(400, 901)}) == [512, 768, 1024]  # the demo's 8-row steps
    assert sorted(set(lengths.values())) == [128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144,
                                             8192, 12288, 16384]


def _collate(rows):  # noqa: ANN001, ANN202
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([{"input_ids": r} for r in rows])


def _rows() -> list[list[int]]:
    import torch

    torch.manual_seed(0)
    return [torch.randint(1, 1000, (n,)).tolist() for n in LENGTHS]


def test_a_padded_batch_is_trls_packing_with_one_more_row_that_nothing_learns_from():
    import torch

    rows = _rows()
    padded = graphs.pad_packed(_collate(rows), pad_id=0)
    extra = graphs.bucket_length(sum(LENGTHS)) - sum(LENGTHS)
    assert padded["input_ids"].shape == (1, 128) and extra == 57
    reference = _collate(rows + [[0] * extra])  # TRL's own packing of the pad row
    for key in ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "seq_idx"):
        assert torch.equal(padded[key], reference[key]), key
    assert torch.equal(padded["labels"][:, :71], reference["labels"][:, :71])
    assert (padded["labels"][:, 71:] == -100).all()  # TRL would learn the pad row; no label reads it here
    assert padded["max_length_q"] == padded["max_length_k"] == 128  # one value per length: not a graph per step
    exact = _collate([[5] * 128])
    assert graphs.pad_packed(exact, pad_id=0) is exact  # already a rung: nothing added


def test_the_decoder_pads_the_row_and_the_loss_and_gradients_stay(tiny_model_dir):
    """graphs.used_by: the decoder's layers see the padded row (a sequence of its own, positions from 0: SDPA's
    packed mask keeps the rows from it), the loss sees the row's own tokens: the same loss and gradients; a padded
    batch (attention mask) passes untouched; off again on exit."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa", dtype=torch.float32)
    seen = []
    model.get_decoder().layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))

    def step(**inputs):  # noqa: ANN003, ANN202
        model.zero_grad()
        out = model(**inputs, use_cache=False)
        out.loss.backward()
        return out.loss.item(), [p.grad.clone() for p in model.parameters()], out.logits.shape[1]

    packed = {k: v for k, v in _collate(_rows()).items() if k in ("input_ids", "labels", "position_ids")}
    plain = step(**packed)
    with graphs.used_by(model):
        padded = step(**packed)
        ids = packed["input_ids"][:, :24].repeat(2, 1)
        step(input_ids=ids, labels=ids, attention_mask=torch.ones_like(ids))
    step(**packed)
    assert seen == [71, 128, 24, 71]
    assert padded[2] == 71  # the logits of the row's own tokens
    assert padded[0] == pytest.approx(plain[0], rel=1e-6)
    for x, y in zip(plain[1], padded[1], strict=True):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-7)


def test_the_padded_row_gives_the_same_loss_and_gradients_under_activation_checkpointing(tiny_model_dir):
    """With the layers recomputed in the backward pass (gradient checkpointing, non-reentrant as tunesmith sets it)
    the padded row still gives the unpadded, uncheckpointed row's loss and gradients."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa", dtype=torch.float32)
    model.train()
    packed = {k: v for k, v in _collate(_rows()).items() if k in ("input_ids", "labels", "position_ids")}
    seen: list[int] = []
    model.get_decoder().layers[0].mlp.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))

    def step() -> tuple[float, list]:
        model.zero_grad()
        out = model(**packed, use_cache=False)
        out.loss.backward()
        return out.loss.item(), [p.grad.clone() for p in model.parameters()]

    plain = step()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with graphs.used_by(model):
        checkpointed = step()
    assert seen == [71, 128, 128]  # the plain forward; the padded one, then its recomputation in the backward
    assert checkpointed[0] == pytest.approx(plain[0], rel=1e-6)
    for x, y in zip(plain[1], checkpointed[1], strict=True):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-7)


def test_graphs_and_varlen_together_give_the_padded_loss_and_gradients(tiny_model_dir, monkeypatch):
    """train.compile: graphs with train.attention: varlen (the bench's tunesmith-graphs-varlen): the kernel gets the
    pad row's bounds and the padded length as its bound on the longest row (one value per length); on the CPU a
    per-row SDPA stands in for the kernel (tests/test_varlen.py)."""
    import torch.nn.attention.varlen as torch_varlen
    from transformers import AutoModelForCausalLM

    from tests.test_varlen import _reference_kernel, _same, _step
    from tests.test_varlen import _rows as varlen_rows
    from tunesmith import varlen

    calls: list = []
    monkeypatch.setattr(varlen, "DEVICES", ("cpu",))
    monkeypatch.setattr(torch_varlen, "varlen_attn", _reference_kernel(calls, exact_max=False))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    packed, padded = varlen_rows("cpu")
    plain = _step(model, "cpu", **padded)
    with varlen.used_by(model), graphs.used_by(model):
        through = _step(model, "cpu", **packed)
    assert calls == [([0, 30, 47, 71, 128], 128)] * model.config.num_hidden_layers
    _same(plain, through)


def _train(model_dir, data, out, monkeypatch, compile_setting: str):  # noqa: ANN001, ANN202
    """3 LoRA steps in fp32, padding-free, dropout off; returns the packed lengths the layers saw, the losses and
    the token counts logged, and the modes the layers were compiled in."""
    from transformers import TrainerCallback

    from tunesmith import fastpath, models
    from tunesmith.data.prepare import prepare

    cfg = tiny_config(model_dir, data, out, train={
        "max_steps": 3, "batch_size": 4, "logging_steps": 1, "eval_strategy": "steps", "eval_steps": 3,
        "learning_rate": 5e-3, "report_to": [], "precision": "fp32", "padding_free": "on", "compile": compile_setting})
    cfg = cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"dropout": 0.0})})
    tok = models.load(cfg.model, tokenizer_only=True)[1]
    _, train_ex, eval_ex = pipeline.render(tok, prepare(cfg.data), cfg, say=lambda _: None)
    model = pipeline._starting_model(cfg)[0]
    seen, modes = [], []
    model.get_decoder().layers[0].register_forward_pre_hook(  # what the layers get (the decoder pads first)
        lambda module, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).shape[1])
        if module.training else None, with_kwargs=True)
    # compiling on the CPU takes ~30 s and records no graph: the mode reaches compile_layers, whose own test below
    # compiles in it
    monkeypatch.setattr(fastpath, "compile_layers", lambda model, mode=None: modes.append(mode))
    logged = []

    class Logs(TrainerCallback):  # TRL's own count of the tokens trained on, as the trainer logs it
        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001, ANN202
            if logs and "loss" in logs:
                logged.append(logs["num_tokens"])

    run, _ = rundir.create(out, "tiny", overwrite=True, config_yaml=cfg.to_yaml())
    train.train(model, tok, train_ex, eval_ex, cfg, run, say=lambda _: None, progress=Logs())
    run.unlock()
    rows = [row for row in diskio.read_jsonl(run.root / "metrics.jsonl") if "loss" in row]
    return seen, [row["loss"] for row in rows], logged, modes


def test_a_graphs_run_trains_bucketed_rows_like_a_plain_one(tmp_path, tiny_model_dir, small_jsonl, monkeypatch):
    """Through TRL's trainer: the layers see only bucket lengths, and the three steps' losses and token counts are
    the unpadded run's."""
    monkeypatch.setattr(graphs, "unavailable", lambda: None)  # a GPU's answer: the CPU cannot record graphs
    lengths, losses, tokens, modes = _train(tiny_model_dir, small_jsonl, tmp_path / "g", monkeypatch, "graphs")
    plain_lengths, plain_losses, plain_tokens, plain_modes = _train(tiny_model_dir, small_jsonl, tmp_path / "p",
                                                                    monkeypatch, "off")
    assert modes == ["reduce-overhead"] and plain_modes == []
    assert len(lengths) == len(plain_lengths) == 3
    assert lengths == [graphs.bucket_length(n) for n in plain_lengths] and lengths != plain_lengths
    assert losses == pytest.approx(plain_losses, rel=1e-5)
    assert tokens == plain_tokens == list(itertools.accumulate(plain_lengths))  # the rows' tokens, no pad row


def test_graphs_say_why_they_cannot_train_here(tiny_model_dir, small_jsonl, tmp_path, monkeypatch):
    cfg = config.parse({"name": "x", "model": str(tiny_model_dir), "data": {"train": [str(small_jsonl)]},
                        "train": {"compile": "graphs", "precision": "bf16"}}, source="<test>")  # a GPU's
    if not _cuda():
        with pytest.raises(TunesmithError, match="graphs cannot train here: CUDA graphs need a CUDA GPU"):
            train.check_graphs(cfg)
        res = tunesmith("plan", "--model", str(tiny_model_dir), "--data", str(small_jsonl),
                        "--set", "train.compile=graphs", cwd=tmp_path)
        fails(res, "train.compile: graphs cannot train here", "--set train.compile=off")
    monkeypatch.setattr(graphs, "unavailable", lambda: None)  # a GPU: packed rows only
    off = cfg.model_copy(update={"train": cfg.train.model_copy(update={"padding_free": "off"})})
    with pytest.raises(TunesmithError, match="train.padding_free is off") as err:
        train.check_graphs(off)
    assert "train.padding_free: on" in err.value.render()
    train.check_graphs(cfg)  # padding_free auto: on where a GPU is


def test_the_memory_estimate_counts_the_bucket(tiny_model_dir, small_jsonl, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "cuda", lambda: True)
    cfg = tiny_config(tiny_model_dir, small_jsonl, tmp_path, train={"padding_free": "on"})
    graphed = cfg.model_copy(update={"train": cfg.train.model_copy(update={"compile": "graphs"})})
    assert memory.step_tokens(cfg, (300, 250, 100)) == 650
    assert memory.step_tokens(graphed, (300, 250, 100)) == 768


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (CUDA graphs)")
def test_gpu_graphs_train_like_eager_steps(tiny_model_dir):
    """LoRA steps on packed rows, eager against compiled layers replayed as CUDA graphs on the rows padded to
    bucket lengths (graphs.used_by: bf16 autocast, marked steps, AdamW): the same losses step after step, every layer run as a graph, and lengths seen before
    compile nothing new."""
    import torch
    from peft import get_peft_model
    from torch._dynamo.utils import counters
    from transformers import AutoModelForCausalLM

    from tunesmith import fastpath

    cfg = config.parse({"name": "t", "model": "x", "data": {"train": ["x.jsonl"]}}, source="t")
    torch.manual_seed(0)
    rows = [[torch.randint(1, 1000, (n,)).tolist() for n in lengths]
            for lengths in ((30, 17, 24), (60, 40, 44), (25, 20, 20), (61, 40, 40))]  # 128, 192, 128, 192 tokens
    batches = [{k: v.cuda() if hasattr(v, "cuda") else v for k, v in _collate(r).items()} for r in rows]

    def steps(compiled: bool) -> list[float]:
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa"),
                               train.peft_config(cfg)).cuda().eval()  # eval: no dropout, as the eager run
        if compiled:
            fastpath.compile_layers(model, mode="reduce-overhead")
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        losses, compiles = [], []
        with graphs.used_by(model) if compiled else contextlib.nullcontext():
            for batch in batches:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(**{k: batch[k] for k in ("input_ids", "labels", "position_ids")}).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                losses.append(loss.item())
                compiles.append(counters["stats"]["unique_graphs"])
        assert compiles[3] == compiles[1]  # the third and fourth batches: lengths seen at the first and second
        return losses

    eager = steps(False)
    torch._dynamo.reset()
    graphed = steps(True)
    assert graphed == pytest.approx(eager, rel=2e-2)
    assert all(torch.isfinite(torch.tensor(graphed)))
    assert counters["inductor"]["cudagraph_skips"] == 0  # every compiled layer ran as a graph
