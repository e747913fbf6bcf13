"""The training step's shortcuts give the same numbers as the long way."""

from __future__ import annotations

import pytest

from tunesmith import config, fastpath, train


def _lora_model(folder):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    return get_peft_model(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32),
                          train.peft_config(config.parse({"name": "t", "model": "x", "data": {"train": ["x.jsonl"]}},
                                                         source="t")))


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_frozen_weights_in_half_give_the_same_loss_under_autocast(tiny_model_dir, dtype):
    # Autocast casts fp32 weights to bf16/fp16 for every matmul: casting the frozen ones once gives the same numbers
    # (fp16: the path of GPUs without bf16; the CPU's autocast runs it too).
    import torch

    half = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    torch.manual_seed(0)
    model = _lora_model(tiny_model_dir)
    ids = torch.randint(0, 1000, (2, 24))
    with torch.autocast("cpu", dtype=half):
        before = model(input_ids=ids, labels=ids).loss
    linear = sum(m.weight.numel() for m in model.modules()
                 if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad)
    embeddings = model.get_input_embeddings().weight
    changed = fastpath.frozen_to_half(model, dtype)
    assert changed == linear - (embeddings.numel() if model.get_output_embeddings().weight is embeddings else 0)
    assert {m.weight.dtype for m in model.modules() if isinstance(m, torch.nn.Linear)
            and not m.weight.requires_grad and m.weight is not embeddings} == {half}
    assert embeddings.dtype == torch.float32  # and the LoRA weights, which train
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    with torch.autocast("cpu", dtype=half):
        after = model(input_ids=ids, labels=ids).loss
    assert after.item() == before.item()
    after.backward()  # and gradients reach the adapters
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_frozen_weights_in_fp16_are_no_longer_copied_for_backward(tiny_model_dir):
    """Under fp16 autocast each frozen fp32 weight was cast to fp16 in the forward and the copy saved for backward:
    2 bytes a frozen linear parameter held until its layer's backward. Stored in fp16, backward keeps the weight
    itself: the bytes saved that are not parameters fall by exactly that, for every layer whose input needs a
    gradient (all but the first layer's q/k/v projections, which read the frozen embeddings)."""
    import torch

    def saved_bytes_not_parameters() -> int:
        params = {p.data_ptr() for p in model.parameters()}
        seen: dict[int, int] = {}

        def pack(t):
            if t.data_ptr() not in params:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.float16):
            model(input_ids=ids, labels=ids).loss.backward()
        return sum(seen.values())

    model = _lora_model(tiny_model_dir)
    ids = torch.randint(0, 1000, (2, 24))
    before = saved_bytes_not_parameters()
    changed = fastpath.frozen_to_half(model, "fp16")
    first = model.base_model.model.model.layers[0].self_attn
    unsaved = sum(getattr(first, name).base_layer.weight.numel() for name in ("q_proj", "k_proj", "v_proj"))
    assert before - saved_bytes_not_parameters() == 2 * (changed - unsaved)


def test_after_the_conversion_the_weight_file_is_no_longer_mapped(tiny_model_dir, tmp_path):
    """The weights load as views of the memory-mapped safetensors file; once the frozen linear weights are bf16
    copies, none of the model's tensors view the file, so the mapping (and every page of it that was read) goes."""
    import gc
    import shutil

    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    def mapped_pages_kib() -> int:  # resident KiB of mappings of the model's weight file, from /proc/self/smaps
        kib, inside = 0, False
        for line in open("/proc/self/smaps", encoding="utf-8"):
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
                inside = line.rstrip().endswith(str(folder / "model.safetensors"))
            elif inside and line.startswith("Rss:"):
                kib += int(head[1])
        return kib

    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")  # a file no other test's model maps
    model = _lora_model(folder)
    model(input_ids=torch.randint(0, 1000, (1, 8)))  # every weight read once: its pages resident
    assert mapped_pages_kib() > 0
    fastpath.frozen_to_half(model)
    gc.collect()
    assert mapped_pages_kib() == 0
    assert model.get_input_embeddings().weight.dtype == torch.float32  # copied, not converted


@pytest.mark.parametrize("p, gaps, scale", [(0.05, True, 1 / 0.95), (0.3, False, 32768 / (32768 - 9830))])
def test_cheap_dropout_drops_p_of_the_values_and_keeps_the_mean(p, gaps, scale):
    """Both ways of drawing the mask: the gaps between drops (p exact) and 16-bit draws (p in 1/32768ths)."""
    import torch

    torch.manual_seed(0)
    drop = fastpath.cheap_dropout_class()(p)
    assert drop.gaps is gaps
    x = torch.ones(1000, 1001, requires_grad=True)  # an odd size: the last random word is only partly used
    y = drop(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.002)
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)  # inverted dropout: kept values scaled by 1/(1-p)
    values = torch.unique(y).tolist()
    assert values[0] == 0.0 and values[1:] == [pytest.approx(scale)]
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)  # the gradient flows through the kept values only
    assert drop.eval()(x) is x
    columns = (y == 0).float().mean(0)  # no lane of the 4-per-word packing (or of the gaps) is biased
    assert columns.std().item() < 0.02 and columns.min().item() > p / 3


@pytest.mark.parametrize("spare", [6.0, -3.0])  # -3: the first draw ends before n, so it draws more (twice or so)
def test_dropped_positions_are_a_bernoulli_p_process(spare):
    """Independent drops with probability p: increasing indices inside [0, n), gaps with the geometric mean 1/p and
    variance (1 - p)/p^2, the same indices again under the same seed."""
    import torch

    n, p = 1_000_000, 0.05
    torch.manual_seed(1)
    positions = fastpath.dropped_positions(n, p, spare=spare)
    assert bool((positions.diff() > 0).all()) and positions.min() >= 0 and positions.max() < n
    assert len(positions) == pytest.approx(n * p, abs=4 * (n * p * (1 - p)) ** 0.5)
    gaps = torch.cat([positions[:1] + 1, positions.diff()]).double()
    assert gaps.mean().item() == pytest.approx(1 / p, rel=0.02)
    assert gaps.var().item() == pytest.approx((1 - p) / p**2, rel=0.05)
    assert positions.max() > n - 200  # the last stretch of the range is covered too
    torch.manual_seed(1)
    assert torch.equal(fastpath.dropped_positions(n, p, spare=spare), positions)
    assert len(fastpath.dropped_positions(0, p, spare=spare)) == 0  # an empty input drops nothing


def test_lora_dropout_layers_are_replaced(tiny_model_dir):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           train.peft_config(config.parse({"name": "t", "model": "x", "data": {"train": ["x.jsonl"]}},
                                                          source="t")))
    adapted = sum(1 for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict))
    assert fastpath.cheap_dropout(model) == adapted > 0
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules() if m is not model)


def test_the_fused_lm_head_scores_only_supervised_positions_on_the_cpu(tiny_model_dir):
    # Same loss as scoring every position, from a projection of the supervised positions alone.
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM
    from trl.kernels import chunked_logprob
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(0, 1000, (2, 40))
    labels = torch.full_like(ids, -100)
    labels[:, 30:] = ids[:, 30:]  # 10 answer tokens per row
    seen = []
    kernel = trl_utils._ChunkedLogProbFunction

    class Spy(kernel):
        @staticmethod
        def apply(hidden, *args):  # noqa: ANN001, ANN205
            seen.append(hidden.shape[0])
            return kernel.apply(hidden, *args)

    original = trl_utils._use_triton  # patched already where an earlier test trained
    try:
        trl_utils._ChunkedLogProbFunction = Spy
        trl_utils._use_triton = chunked_logprob._use_triton  # TRL's own device test
        every = model(input_ids=ids, labels=labels, fused_lm_head=True).loss
        assert fastpath.supervised_logits_only()
        supervised = model(input_ids=ids, labels=labels, fused_lm_head=True).loss
    finally:
        trl_utils._ChunkedLogProbFunction, trl_utils._use_triton = kernel, original
    assert seen == [2 * 39, 2 * 10]  # every position that has a next token; the 10 that predict an answer token
    assert supervised.item() == pytest.approx(every.item(), rel=1e-5)


def _lora_tiny(tiny_model_dir):  # noqa: ANN001, ANN202
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    # bf16 as on this project's CPUs (a CPU without AVX512-BF16 would pick fp32 for auto, and switch nothing)
    cfg = config.parse({"name": "t", "model": "x", "data": {"train": ["x.jsonl"]}, "train": {"precision": "bf16"}},
                       source="t")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           train.peft_config(cfg))
    for name, p in model.named_parameters():  # LoRA B starts at zero: move it so the adapters' path counts
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    fastpath.frozen_to_half(model)
    return model, cfg


def _loss_and_grads(model, ids, mask):  # noqa: ANN001, ANN202
    import torch

    model.zero_grad()
    labels = ids.masked_fill(mask == 0, -100)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_cpu_step_gives_the_plain_step_loss_and_gradients_and_switches_back(tiny_model_dir):
    import torch

    model, cfg = _lora_tiny(tiny_model_dir)
    model.eval()  # no dropout: the same numbers both ways but for rounding
    ids = torch.randint(0, 1000, (3, 30))
    mask = (torch.arange(30)[None, :] < torch.tensor([30, 17, 24])[:, None]).long()  # right-padded rows
    plain_loss, plain = _loss_and_grads(model, ids, mask)
    before = _logits(model, ids, mask)
    with fastpath.cpu_step(model, cfg) as switched:
        assert switched == ["attention", "bf16 LoRA inputs"]
        assert model.config._attn_implementation == "tunesmith_cpu"
        fast_loss, fast = _loss_and_grads(model, ids, mask)
    assert fast_loss == pytest.approx(plain_loss, rel=2e-3)
    for name, grad in plain.items():  # bf16 rounds differently, nothing more
        assert torch.allclose(fast[name], grad, rtol=0.05, atol=0.02 * grad.abs().max().item()), name
    # switched back: SDPA, no hooks, PEFT's input casts on: the very logits of before
    assert model.config._attn_implementation == "sdpa"
    assert not any(m._forward_hooks for m in model.modules())
    assert all(m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))
    assert torch.equal(_logits(model, ids, mask), before)


def _logits(model, ids, mask):  # noqa: ANN001, ANN202
    import torch

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return model(input_ids=ids, attention_mask=mask).logits


def test_cpu_step_keeps_fp32_and_full_fine_tuning_as_they_were(tiny_model_dir):
    model, cfg = _lora_tiny(tiny_model_dir)
    fp32 = cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": "fp32"})})
    with fastpath.cpu_step(model, fp32) as switched:  # fp32: padding-free rows' attention only, no bf16 inputs
        assert switched == ["attention (padding-free rows padded again)"]
        assert model.config._attn_implementation == "tunesmith_cpu"
    assert model.config._attn_implementation == "sdpa"
    padded = fp32.model_copy(update={"train": fp32.train.model_copy(update={"padding_free": "off"})})
    with fastpath.cpu_step(model, padded) as switched:  # padded fp32 rows: the model as loaded
        assert switched == [] and model.config._attn_implementation == "sdpa"
    full = cfg.model_copy(update={"train": cfg.train.model_copy(update={"method": "full"})})
    with fastpath.cpu_step(model, full) as switched:  # the attention only: the adapters' inputs are LoRA's
        assert switched == ["attention"]
    sdpa = cfg.model_copy(update={"train": cfg.train.model_copy(update={"attention": "sdpa"})})
    with fastpath.cpu_step(model, sdpa) as switched:  # train.attention: sdpa keeps the model's own attention
        assert switched == ["bf16 LoRA inputs"] and model.config._attn_implementation == "sdpa"
    with fastpath.gpu_step(model, cfg.model_copy(update={"train": cfg.train.model_copy(update={"attention": "varlen"})})
                           ) as switched:
        assert switched == []  # a model on the CPU: varlen.py's kernel is CUDA's (train.check_attention says so)
    assert len(fastpath._projection_norms(model)) == 2 * model.config.num_hidden_layers


def test_bf16_lora_inputs_cast_only_under_bf16_autocast(tiny_model_dir):
    """The norms' hook casts to bf16 under bf16 autocast on the tensor's device, and leaves fp16 autocast (a GPU
    without bf16, here the CPU's fp16 autocast) and no autocast alone."""
    import torch

    model, _ = _lora_tiny(tiny_model_dir)
    norm = fastpath._projection_norms(model)[0]
    x = torch.randn(2, 5, model.config.hidden_size)
    with fastpath.bf16_lora_inputs(model) as hooked:
        assert hooked == 2 * model.config.num_hidden_layers
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert norm(x).dtype == torch.bfloat16
        with torch.autocast("cpu", dtype=torch.float16):
            assert norm(x).dtype == torch.float32
        assert norm(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert norm(x).dtype == torch.float32  # unhooked again: the norm keeps fp32 (LlamaRMSNorm's own dtype)


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])  # train.compile: layers, graphs (no graph on a CPU)
def test_compiled_layers_train_like_uncompiled_ones_without_recompiling(tiny_model_dir, mode):
    """train.compile: each decoder layer compiled in place with dynamic lengths: eager's loss and adapter
    gradients, the weights' names unchanged (the adapter saves as before), and another sequence length compiles
    nothing new (TRL's whole-model compile compiled again at the second length)."""
    import torch
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    model = _lora_model(tiny_model_dir).eval()  # no dropout: compiled and eager draw other masks

    def loss_and_grads(length: int) -> tuple[float, list]:
        model.zero_grad()
        ids = torch.randint(0, 1000, (2, length), generator=torch.Generator().manual_seed(length))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    eager = loss_and_grads(24)
    keys = list(model.state_dict())
    assert fastpath.compile_layers(model, mode) == model.config.num_hidden_layers
    assert list(model.state_dict()) == keys
    compiled = loss_and_grads(24)
    assert compiled[0] == pytest.approx(eager[0], rel=1e-5)
    assert all(torch.allclose(c, e, rtol=1e-3, atol=1e-6) for c, e in zip(compiled[1], eager[1]))
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    loss_and_grads(40)
    assert counters["stats"]["unique_graphs"] == graphs
