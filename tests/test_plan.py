"""The plan's time estimate, and which knobs cut a long run (plan.time_knobs).

The model is the tiny Llama built from config; examples are records of a given length (the estimate reads only
their lengths, as it runs before any weights load).
"""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.test_memory import LONGEST, config, rows  # rows of a given length, the tiny run with train settings
from tunesmith import memory, plan, runtime


def test_a_long_run_says_which_knobs_cut_it(tiny_model_dir, small_jsonl, tmp_path):
    train_ex = rows(200, LONGEST) + rows(400, 200)  # median 200 tokens: max_length 256 leaves out the long third
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, max_steps=-1, epochs=1)
    _, total, arch = memory.parameter_counts(cfg)
    one_epoch = plan.run_seconds(cfg, train_ex, rows(4), total, arch)
    if one_epoch is None:
        pytest.skip("no time estimate on a GPU")
    # Epochs enough for an hour, whatever this machine's throughput constants say.
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, max_steps=-1, epochs=math.ceil(2 * plan.LONG_RUN_S / one_epoch))
    lines = plan.time_knobs(cfg, train_ex, rows(4), total, arch)
    assert lines[0].startswith("time: ~") and "is long; each of these cuts it" in lines[0]
    assert lines[1].startswith("time: --set data.max_rows=200 (train on 200 of 600 rows) -> ~")
    assert lines[2].startswith("time: --set train.epochs=1 -> ~")
    assert lines[3].startswith("time: --set template.max_length=256 (200 of 600 rows are longer: dropped) -> ~")
    cuts = [int(re.search(r"\((\d+)% less\)$", line).group(1)) for line in lines[1:]]
    assert all(0 < cut < 100 for cut in cuts) and len(lines) == 4
    short = config(tiny_model_dir, small_jsonl, tmp_path, max_steps=-1, epochs=1)
    if one_epoch <= plan.LONG_RUN_S:
        assert plan.time_knobs(short, train_ex, rows(4), total, arch) == []


def test_time_grows_with_the_square_of_a_rows_length(tiny_model_dir, small_jsonl, tmp_path):
    # Attention costs n^2 per row: one long row takes longer than short rows of the same tokens, by an excess
    # that grows with the square of the length (2,000 vs 4 x 500: 3M; 4,000 vs 8 x 500: 14M token pairs).
    cfg = config(tiny_model_dir, small_jsonl, tmp_path, max_steps=-1, epochs=1)
    _, total, arch = memory.parameter_counts(cfg)
    if plan.run_seconds(cfg, rows(1, 10), rows(1, 10), total, arch) is None:
        pytest.skip("no time estimate on a GPU")

    def excess(length: int, short: int = 500) -> float:
        pieces = length // short
        return (plan.run_seconds(cfg, rows(1, length), rows(1, 10), total, arch)
                - plan.run_seconds(cfg, rows(pieces, short), rows(1, 10), total, arch))

    assert excess(2000) > 0
    assert excess(4000) / excess(2000) == pytest.approx(14 / 3, rel=0.01)
    checkpointed = config(tiny_model_dir, small_jsonl, tmp_path, max_steps=-1, epochs=1, gradient_checkpointing=True)
    assert (plan.run_seconds(checkpointed, rows(1, 2000), rows(1, 10), total, arch)
            > plan.run_seconds(cfg, rows(1, 2000), rows(1, 10), total, arch))  # the forward runs twice


def test_the_time_estimate_counts_the_retention_check_unless_it_is_off(tiny_model_dir, small_jsonl, tmp_path):
    cfg = config(tiny_model_dir, small_jsonl, tmp_path)
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"retention": "on"})})
    _, total, arch = memory.parameter_counts(cfg)
    on = plan.run_seconds(cfg, rows(4, 100), rows(2, 100), total, arch)
    if on is None:
        pytest.skip("no time estimate on a GPU")
    off = plan.run_seconds(cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"retention": "off"})}),
                           rows(4, 100), rows(2, 100), total, arch)
    assert on - off == pytest.approx(2 * plan.retention_seconds(cfg, total, plan.cpu_rates(cfg))) and on > off
    # SmolLM2's size (134.5M) at the AVX2 EPYC's rates (fp32 matmul 0.11 TFLOP/s): 4,550 tokens forward (1.22
    # TFLOP at 0.83 of it) plus 64 decoding steps reading 538 MB (at 0.0214 bytes a FLOP): 13.4 + 14.6 s in fp32.
    fp32 = 0.11e12
    avx2 = plan.CpuRates(plan.TRAIN_SHARE["fp32"] * fp32, plan.PREFILL_SHARE * fp32, plan.DECODE_BYTES_PER_FLOP * fp32)
    half = 1 if runtime.choose_precision(cfg.eval.precision) == "fp32" else plan.HALF_EVAL_SPEEDUP
    assert plan.retention_seconds(cfg, 134_515_008, avx2) == pytest.approx(28.0 / half, abs=0.1)


def test_the_rates_are_shares_of_this_machines_matmul_rate_measured_once(tiny_model_dir, small_jsonl, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("TUNESMITH_HOME", str(tmp_path / "home"))
    cfg = config(tiny_model_dir, small_jsonl, tmp_path)
    rates = plan.cpu_rates(cfg)
    [measured] = json.loads((tmp_path / "home" / "cache" / "machine.json").read_text()).values()
    assert 1e9 < measured["fp32"] < 1e14  # a real measurement: 0.07-0.41 TFLOP/s on this project's 2-vCPU machines
    assert rates.prefill == pytest.approx(plan.PREFILL_SHARE * measured["fp32"])
    assert rates.decode_bytes == pytest.approx(plan.DECODE_BYTES_PER_FLOP * measured["fp32"])
    runs = "bf16" if runtime.choose_precision(cfg.train.precision) == "bf16" else "fp32"
    no_tcmalloc = 1 if runtime.tcmalloc_library() else plan.NO_TCMALLOC
    assert rates.train == pytest.approx(plan.TRAIN_SHARE[runs] * measured[runs] * no_tcmalloc)
    # Kept: a second plan does not measure again (a changed figure in the file is what it reads).
    path = tmp_path / "home" / "cache" / "machine.json"
    path.write_text(path.read_text().replace(str(measured["fp32"]), "2e12"))
    assert plan.cpu_rates(cfg).prefill == pytest.approx(plan.PREFILL_SHARE * 2e12)


def test_the_plan_says_what_compile_will_do(tiny_model_dir, small_jsonl, tmp_path, monkeypatch):
    """train.compile off says nothing; on a CPU a warning with the measured slowdown and the flag that turns it off;
    on a GPU what it compiles and when."""
    assert plan.compile_line(config(tiny_model_dir, small_jsonl, tmp_path)) == []
    on = config(tiny_model_dir, small_jsonl, tmp_path, compile=True)
    monkeypatch.setattr(memory, "cuda", lambda: False)
    [line] = plan.compile_line(on)
    assert line.startswith("warning: compile:") and line.endswith("--set train.compile=off")
    monkeypatch.setattr(memory, "cuda", lambda: True)
    [line] = plan.compile_line(on)
    assert line.startswith("compile: each decoder layer compiled once")
    graphed = config(tiny_model_dir, small_jsonl, tmp_path, compile="graphs", padding_free="on")
    [line] = plan.compile_line(graphed)
    assert "replayed as CUDA graphs" in line and "128, 192, 256, 384" in line
    assert "padded to the next of a few lengths" in plan._step_line(graphed, 1000)
    assert "padded to the next" not in plan._step_line(on, 1000)
