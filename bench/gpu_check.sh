#!/usr/bin/env bash
# The checks a lent CUDA machine runs for issue 13 (bf16, QLoRA/8-bit, SDPA, padding-free batches), as one script:
#   here:   bash bench/gpu_check.sh --prepare     (wheels into .whl/, rows and SmolLM2's tokenizer into .gpu/)
#   there:  bash bench/gpu_check.sh [--tests]     (carry .whl and .gpu; logs and JSON under $OUT; --tests: no bench)
#           SIZES="135 360 1700" (default 1700: issue 27's target shape), CONTESTANTS=... (default: trl-tuned,
#           trl-liger, tunesmith, tunesmith-padded; add trl-defaults for the (a) column)
# The embedded GGUF does not travel (its 270 MB are over the 64 MiB a call carries): the benchmark there trains a
# SmolLM2-135M of random weights built from its config: the same shapes and FLOPs, so tokens/s compare; losses
# compare between contestants only.
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
  set -e
  PY=.venv/bin/python
  plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d .whl \
    trl==1.16.0 transformers==5.24.0 peft==0.21.2 datasets==5.2.0 pydantic==2.14.4 pydantic-core==2.50.5 \
    typer==0.29.2 dill==0.4.1 multiprocess==0.70.19 annotated-types==0.8.0 typing-inspection==0.4.5 bitsandbytes==0.50.2 \
    liger-kernel==0.8.5
  # bitsandbytes ships a library per CUDA/ROCm version (43 MB); the GPU machine's torch is CUDA 13
  zip -q -d .whl/bitsandbytes-*.whl 'bitsandbytes/libbitsandbytes_cuda11*' 'bitsandbytes/libbitsandbytes_cuda12*' \
    'bitsandbytes/libbitsandbytes_rocm*' 'bitsandbytes/libbitsandbytes_xpu*' || true
  mkdir -p .gpu/rows .gpu/smol
  smol=$($PY -c "from tunesmith import models; print(models.resolve('default'))")
  find "$smol" -maxdepth 1 -type f ! -name '*.safetensors' -exec cp {} .gpu/smol/ \;
  $PY -c "import sys; sys.path.insert(0, 'bench'); import train_contestants as t; from pathlib import Path; \
[t.rows_for(s, Path('.gpu/rows')) for s in ('demo', 'long_prompt')]"
  rm -f .gpu/rows/raw.jsonl
  exit 0
fi
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TUNESMITH_HOME=/tmp/tunesmith_home
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  >"$OUT/pip.log" 2>&1 || { tail "$OUT/pip.log"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src:$PWD TUNESMITH_TEST_TOKENIZER=$PWD/.gpu/smol
python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, \
'trl', trl.__version__, 'peft', peft.__version__, 'sdpa flash', torch.backends.cuda.flash_sdp_enabled())" | tee -a "$OUT/gpu.txt"
# random weights of SmolLM2-135M's shape (seeded), saved once as safetensors; SIZES adds 360M / 1.7B shapes (the
# SmolLM2 family's configs, same tokenizer) as .gpu/smol360 and .gpu/smol1700 for the bench below
SIZES=${SIZES:-1700}
python3 - "$SIZES" <<'PY'
import shutil, sys, torch
from pathlib import Path
from transformers import AutoConfig, AutoModelForCausalLM
shapes = {"135": {}, "360": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                                 num_key_value_heads=5),
          "1700": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                       num_key_value_heads=32)}
torch.manual_seed(0)
AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(".gpu/smol")).save_pretrained(".gpu/smol")
for size in sys.argv[1].split():
    if size == "135":
        continue
    out = Path(f".gpu/smol{size}")
    out.mkdir(exist_ok=True)
    for f in Path(".gpu/smol").iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "config.json":
            shutil.copy(f, out / f.name)
    cfg = AutoConfig.from_pretrained(".gpu/smol", **shapes[size])
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
PY
timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_train.py \
  -k "(gpu or padding_free or quantised or fp16) and not on_a_cpu" 2>&1 | tee "$OUT/pytest.log" | tail -25
[ "${1:-}" = "--tests" ] && exit 0
for size in $SIZES; do
  model=.gpu/smol; [ "$size" = 135 ] || model=.gpu/smol$size
  timeout 420 python3 bench/train_contestants.py --model $model --rows .gpu/rows --steps 12 \
    --contestants ${CONTESTANTS:-trl-tuned,trl-liger,tunesmith,tunesmith-padded} \
    --json "$OUT/gpu_contestants_$size.json" 2>"$OUT/bench_$size.log" >/dev/null; tail -12 "$OUT/bench_$size.log"
done
