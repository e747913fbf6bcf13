"""The accelerate configs in configs/accelerate/: each one goes through accelerate's own loader and launcher
checks (no process is launched, no model is loaded), and the CPU multi-process path works without
`accelerate launch` at all (torchrun). Tests that need GPUs skip themselves.

`_validate_launch_command` and `prepare_*_env` are accelerate internals (what `accelerate launch` runs before it
spawns anything); they are stable across accelerate 1.x, which pyproject pins.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import (prepare_deepspeed_cmd_env, prepare_multi_gpu_env,
                                     prepare_simple_launcher_cmd_env)

FOLDER = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "configs" / "accelerate"
EXPECTED = {  # file -> distributed_type; a new file needs an entry here (and a section in docs/multi-gpu.md)
    "ddp-cpu-2proc.yaml": "MULTI_CPU",
    "ddp-multi-gpu.yaml": "MULTI_GPU",
    "fsdp.yaml": "FSDP",
    "deepspeed-zero2.yaml": "DEEPSPEED",
    "deepspeed-zero3.yaml": "DEEPSPEED",
    "multi-node.yaml": "MULTI_GPU",
}
# How `accelerate launch` turns a nested key into its own option name (see _validate_launch_command).
PREFIX = {"fsdp_config": "fsdp_", "fp8_config": "fp8_", "dynamo_config": "dynamo_"}


def unknown_keys(raw: dict) -> list[str]:
    """Keys accelerate would not understand: top-level ones against ClusterConfig's fields, nested ones
    (fsdp_config, deepspeed_config, mpirun_config, ...) against `accelerate launch`'s options, since the
    launcher copies each nested key onto the option of that name and silently ignores the rest."""
    fields = set(ClusterConfig.__dataclass_fields__)
    options = {a.dest for a in launch_command_parser()._actions}
    bad = [k for k in raw if k not in fields]
    for section, value in raw.items():
        if section in fields and isinstance(value, dict):
            prefix = PREFIX.get(section, "")
            bad += [f"{section}.{k}" for k in value if (k if k.startswith(prefix) else prefix + k) not in options]
    return bad


def launcher_args(path: Path):
    """What `accelerate launch --config_file PATH -m tunesmith train configs/demo.yaml` resolves to."""
    args = launch_command_parser().parse_args(
        ["--config_file", str(path), "-m", "tunesmith", "train", "configs/demo.yaml"])
    return _validate_launch_command(args)


def header(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines[:next(i for i, s in enumerate(lines) if not s.startswith("#"))])


def test_the_folder_holds_exactly_the_documented_configs():
    assert sorted(p.name for p in FOLDER.glob("*.yaml")) == sorted(EXPECTED)
    assert (FOLDER / "hostfile").read_text().split() == ["localhost"]  # ddp-cpu-2proc.yaml's mpirun hostfile


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loads_with_accelerates_own_loader(name):
    cfg = load_config_from_file(str(FOLDER / name))  # raises on unknown top-level keys itself
    assert isinstance(cfg, ClusterConfig)
    assert cfg.distributed_type == DistributedType(EXPECTED[name])
    assert cfg.num_processes >= 2 and cfg.num_processes % cfg.num_machines == 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_unknown_keys(name):
    assert unknown_keys(yaml.safe_load((FOLDER / name).read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("raw, bad", [
    ({"distributed_type": "FSDP", "num_process": 2}, ["num_process"]),
    ({"distributed_type": "FSDP", "fsdp_config": {"fsdp_sharding_stratgy": "FULL_SHARD"}},
     ["fsdp_config.fsdp_sharding_stratgy"]),
    ({"distributed_type": "FSDP", "fsdp_config": {"state_dict_type": "SHARDED_STATE_DICT"}}, []),  # prefix optional
    ({"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero_stage": 3, "zero3_save_16bit": True}},
     ["deepspeed_config.zero3_save_16bit"]),
])
def test_the_key_check_catches_typos(raw, bad):
    assert unknown_keys(raw) == bad


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_header_comments_give_the_launch_command(name):
    text = header(FOLDER / name)
    assert f"accelerate launch --config_file configs/accelerate/{name}" in text
    assert f"accelerate launch --config_file configs/accelerate/{name} -m tunesmith train configs/demo.yaml" in text
    assert "Requires" in text and "Caveat" in text


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_launch_accepts_it(name):
    """accelerate's launcher resolves each file to the intended engine (checked before anything is spawned)."""
    args, _, _ = launcher_args(FOLDER / name)
    engine = {"MULTI_GPU": args.multi_gpu, "FSDP": args.use_fsdp, "DEEPSPEED": args.use_deepspeed,
              "MULTI_CPU": not (args.multi_gpu or args.use_fsdp or args.use_deepspeed)}
    assert engine[EXPECTED[name]]
    assert args.num_processes >= 2


def test_fsdp_config_builds_accelerates_fsdp2_plugin():
    args, _, _ = launcher_args(FOLDER / "fsdp.yaml")
    with mock.patch.dict(os.environ, prepare_multi_gpu_env(args)):  # the env the launched ranks would get
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True  # FULL_SHARD
    assert "SHARDED_STATE_DICT" in str(plugin.state_dict_type)
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    assert args.mixed_precision == "bf16"


@pytest.mark.parametrize("name, stage", [("deepspeed-zero2.yaml", 2), ("deepspeed-zero3.yaml", 3)])
def test_deepspeed_configs_build_accelerates_plugin(name, stage):
    """No deepspeed install needed to build the plugin; grad accumulation and clipping stay 'auto', i.e. are
    taken from tunesmith's train.grad_accum / train.max_grad_norm."""
    args, defaults, mp_from_config = launcher_args(FOLDER / name)
    args.deepspeed_fields_from_accelerate_config = ",".join(  # what launch_command() sets before launching
        list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else []))
    _, env = prepare_deepspeed_cmd_env(args)
    with mock.patch.dict(os.environ, env):
        ds = DeepSpeedPlugin().deepspeed_config
    zero = ds["zero_optimization"]
    assert zero["stage"] == stage
    assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "none"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)
    assert ds["gradient_accumulation_steps"] == ds["gradient_clipping"] == "auto"


def test_multi_node_config_spreads_processes_over_machines():
    args, _, _ = launcher_args(FOLDER / "multi-node.yaml")
    env = prepare_multi_gpu_env(args)
    assert (args.num_machines, args.machine_rank, args.nproc_per_node) == (2, 0, "8")
    assert args.main_process_ip and args.main_process_port == 29500
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_multi_cpu_runs_mpirun_or_fails_loudly():
    """accelerate's MULTI_CPU spawns its processes with mpirun: with an MPI installed the command is
    `mpirun ... -n 2 python -m tunesmith ...`; without one, launching fails instead of running one process."""
    args, _, _ = launcher_args(FOLDER / "ddp-cpu-2proc.yaml")
    if shutil.which("mpirun") or shutil.which("mpiexec"):
        cmd, env = prepare_simple_launcher_cmd_env(args)
        assert Path(cmd[0]).name in ("mpirun", "mpiexec") and cmd[cmd.index("-n") + 1] == "2"
        assert env["ACCELERATE_USE_CPU"] == "True"
    else:
        with pytest.raises(OSError, match="mpirun"):
            prepare_simple_launcher_cmd_env(args)


def test_multi_cpu_without_hostfile_is_one_process(tmp_path):
    """The trap the hostfile avoids: MULTI_CPU + num_processes 2 without mpirun_hostfile builds a command for
    ONE plain python process (what `accelerate launch --cpu --num_processes 2` does too)."""
    raw = yaml.safe_load((FOLDER / "ddp-cpu-2proc.yaml").read_text(encoding="utf-8"))
    del raw["mpirun_config"]
    path = tmp_path / "no-hostfile.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    args, _, _ = launcher_args(path)
    cmd, _ = prepare_simple_launcher_cmd_env(args)
    assert cmd == [sys.executable, "-m", "tunesmith", "train", "configs/demo.yaml"]


PROBE = textwrap.dedent("""
    import os, torch, torch.distributed as dist
    from accelerate import PartialState
    state = PartialState(cpu=True)  # what TrainingArguments(use_cpu=True) builds, as tunesmith does without CUDA
    total = torch.tensor([state.process_index + 1.0])
    dist.all_reduce(total)
    print(f"rank={os.environ['RANK']} world={dist.get_world_size()} backend={dist.get_backend()} "
          f"type={state.distributed_type.value} sum={total.item():g}", flush=True)
    dist.destroy_process_group()  # else gloo's threads can abort the process at exit (SIGABRT, flaky)
""")


def _two_process_run(cmd: list[str], tmp_path: Path) -> list[str]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([*cmd, str(script)], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    # Two processes share one stdout pipe: their lines can interleave, so match records, not lines.
    return sorted(re.findall(r"rank=\d+ world=\d+ backend=\w+ type=\w+ sum=\d+", out.stdout))


def test_two_cpu_processes_need_no_accelerate_launch(tmp_path):
    """The CPU path the docs recommend: torchrun starts 2 processes, accelerate's state (which the Trainer
    uses) sees a 2-process gloo group, and a collective works. No `accelerate launch`, no MPI."""
    lines = _two_process_run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc_per_node", "2"], tmp_path)
    assert lines == [f"rank={r} world=2 backend=gloo type=MULTI_CPU sum=3" for r in (0, 1)]


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 2, reason="needs 2 CUDA GPUs")
def test_ddp_multi_gpu_config_launches_two_ranks(tmp_path):
    probe = PROBE.replace("PartialState(cpu=True)", "PartialState()")
    (tmp_path / "probe.py").write_text(probe, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                          str(FOLDER / "ddp-multi-gpu.yaml"), "--num_processes", "2", str(tmp_path / "probe.py")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = sorted(re.findall(r"rank=\d+ world=\d+ backend=\w+ type=\w+ sum=\d+", out.stdout))
    assert lines == [f"rank={r} world=2 backend=nccl type=MULTI_GPU sum=3" for r in (0, 1)]
