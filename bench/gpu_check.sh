#!/usr/bin/env bash
# The checks a lent CUDA machine runs for issues 13 and 27, as one script:
#   here:   bash bench/gpu_check.sh --prepare     (wheels into .whl/ and .whl/unsloth/, rows and SmolLM2's tokenizer
#                                                  into .gpu/; about 37 MiB of the 64 a call carries)
#   there:  bash bench/gpu_check.sh               (carry .whl and .gpu; logs and JSON under $OUT)
#   STAGES (default "bench tests candidates profile"), run in this order while BUDGET seconds (default 540, inside
#   a call's 600) leave room; each bench writes its JSON after every contestant, so a stage cut short keeps its rows.
#   A session's device time (15 min with the start) holds one such call: what decides the GPU step comes first.
#     bench       for each of SIZES (default 1700: issue 27's target), demo rows then long-prompt rows, CONTESTANTS
#                 (default (b) trl-tuned, (e) tunesmith, then the candidates for tunesmith's GPU step most likely to
#                 win: tunesmith-graphs (compiled layers replayed as CUDA graphs, packed rows padded to a few
#                 lengths: a step of launches, not of ops), -compile (2.5x fewer ops, docs/benchmarks.md), -varlen
#                 (packed rows through torch's FlashAttention varlen kernel, no T x T mask), then the peers (d)
#                 unsloth and (c) trl-liger); it stops RESERVE seconds (default 100) before BUDGET for the tests
#     tests       the GPU tests (bf16, QLoRA/8-bit, packed rows, forced fp16, a whole run, the varlen kernel, CUDA
#                 graphs against eager steps)
#     candidates  the other candidates, tunesmith-graphs-varlen (the two together), -bf16in, -fused, -flex and
#                 -liger, at the first of SIZES
#     profile     trl-tuned and tunesmith at the first of SIZES on demo rows under torch.profiler (wall vs GPU busy,
#                 kernel launches, top ops)
#     scaling     trl-tuned and tunesmith at the first of SIZES on rows of 512 ... 8,192 tokens (8,192 a step)
# The embedded GGUF does not travel (its 270 MB are over the 64 MiB a call carries): the benchmark there trains
# random weights of SmolLM2's shapes (135M, 360M, 1.7B) built from the 135M config: the same shapes and FLOPs, so
# tokens/s compare; losses compare between contestants only. Unsloth (its pins: transformers <= 5.17, TRL <=
# 1.15, datasets < 5) gets a site folder of its own, /tmp/site_unsloth; the others run on /tmp/site.
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
  # (d) Unsloth: its own transformers comes from the GPU image (5.17.0); the wheel's web app (studio/, 80 MB
  # unpacked) and CLI are not used by training and are cut out: 28.6 MB -> 2.0 MB
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat \
    -d .whl/unsloth unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.15.0 datasets==4.8.5
  zip -q -d .whl/unsloth/unsloth-2026.10.9-py3-none-any.whl 'studio/*' 'unsloth_cli/*' || true
  # bitsandbytes ships a library per CUDA/ROCm version (43 MB); the GPU machine's torch is CUDA 13
  zip -q -d .whl/bitsandbytes-*.whl 'bitsandbytes/libbitsandbytes_cuda11*' 'bitsandbytes/libbitsandbytes_cuda12*' \
    'bitsandbytes/libbitsandbytes_rocm*' 'bitsandbytes/libbitsandbytes_xpu*' || true
  mkdir -p .gpu/rows .gpu/smol
  smol=$($PY -c "from tunesmith import models; print(models.resolve('default'))")
  find "$smol" -maxdepth 1 -type f ! -name '*.safetensors' -exec cp {} .gpu/smol/ \;
  $PY -c "import sys; sys.path.insert(0, 'bench'); import train_contestants as t; from pathlib import Path; \
[t.rows_for(s, Path('.gpu/rows')) for s in t.SHAPES]"
  rm -f .gpu/rows/raw.jsonl
  exit 0
fi
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TUNESMITH_HOME=/tmp/tunesmith_home
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  >"$OUT/pip.log" 2>&1 || { tail "$OUT/pip.log"; exit 1; }
# Unsloth's folder: its wheels, and of ours only what tunesmith's own imports need beside the image's packages
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site_unsloth \
  .whl/unsloth/*.whl $(ls .whl/*.whl | grep -E '/(pydantic|pydantic_core|annotated_types|typing_inspection|dill|multiprocess|peft|bitsandbytes)-') \
  >>"$OUT/pip.log" 2>&1 || echo "unsloth's site folder did not install (pip.log); its contestant will fail"
export UNSLOTH_SITE=/tmp/site_unsloth UNSLOTH_COMPILE_LOCATION=/tmp/unsloth_compiled_cache HF_DATASETS_OFFLINE=1
STAGES=${STAGES:-bench tests candidates profile}
BUDGET=${BUDGET:-540}
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
torch.set_default_device("cuda")  # initialising 1.7B weights on the CPU took longer than saving them
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
stage() {  # stage NAME SECONDS_IT_NEEDS: whether it was asked for and still fits in BUDGET
  case " $STAGES " in *" $1 "*) ;; *) return 1;; esac
  [ $((BUDGET - SECONDS)) -ge "$2" ] && return 0
  echo "stage $1 skipped: $((BUDGET - SECONDS)) s left of BUDGET=$BUDGET, it needs ~$2 s" | tee -a "$OUT/gpu.txt"
  return 1
}
model_for() { if [ "$1" = 135 ]; then echo .gpu/smol; else echo .gpu/smol$1; fi; }
first=${SIZES%% *}
bench() {  # bench NAME SIZE SHAPES CONTESTANTS STEPS [--profile] [SECONDS TO LEAVE]
  local left=$((BUDGET - SECONDS - ${7:-10}))  # timeout 0 would mean no limit at all
  if [ "$left" -lt 30 ]; then echo "bench $1 skipped: ${left} s left" | tee -a "$OUT/gpu.txt"; return; fi
  timeout "$left" python3 bench/train_contestants.py --model "$(model_for "$2")" \
    --rows .gpu/rows --shapes "$3" --contestants "$4" --steps "$5" ${6:-} --json "$OUT/gpu_$1.json" \
    2>"$OUT/bench_$1.log" >/dev/null
  grep -E "tok/s|FAILED" "$OUT/bench_$1.log"
}
case " $STAGES " in *" tests "*) RESERVE=${RESERVE:-100};; *) RESERVE=10;; esac
if stage bench 120; then
  for size in $SIZES; do
    bench "contestants_$size" "$size" demo,long_prompt \
      "${CONTESTANTS:-trl-tuned,tunesmith,tunesmith-graphs,tunesmith-compile,tunesmith-varlen,unsloth,trl-liger}" 12 "" \
      "$RESERVE"
  done
fi
if stage tests 90; then
  timeout $((BUDGET - SECONDS - 10)) python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_train.py \
    tests/test_varlen.py tests/test_graphs.py -k "(gpu or padding_free or quantised or fp16) and not on_a_cpu" 2>&1 \
    | tee "$OUT/pytest.log" | tail -15
fi
stage candidates 90 && bench "candidates_$first" "$first" demo,long_prompt \
  tunesmith-graphs-varlen,tunesmith-bf16in,tunesmith-fused,tunesmith-flex,tunesmith-liger 12
stage profile 60 && bench "profile_$first" "$first" demo trl-tuned,tunesmith 6 --profile
stage scaling 120 && bench "scaling_$first" "$first" seq512,seq1024,seq2048,seq4096,seq8192 trl-tuned,tunesmith 6
echo "done in $SECONDS s" | tee -a "$OUT/gpu.txt"
exit 0
