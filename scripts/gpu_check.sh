#!/usr/bin/env bash
# One-shot GPU check: on a machine with an NVIDIA GPU and only this project, install it, run the
# CUDA tests, then the default `ops` (Table 1, throughput at batch 32) and FasterNet T0-L `model`
# runs on the GPU, and write every report and log into $OUT (default: results/).
#   bash scripts/gpu_check.sh                 # about 3-4 minutes on an H100 once installed
#   OUT=/somewhere bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results}
mkdir -p "$OUT"
[ -x .venv/bin/flopsbench ] || { python3 -m venv .venv && .venv/bin/pip install -e '.[test]'; }
FB=.venv/bin/flopsbench
nvidia-smi > "$OUT/gpu-nvidia-smi.txt" 2>&1 || true
.venv/bin/python -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"; print(torch.cuda.get_device_name())'
# The CUDA tests (CUDA-event timing within 2 % of the wall clock, graphs, L2 flush, OOM rows) and the
# CPU-side tests of the GPU path.
.venv/bin/python -m pytest -q tests/test_cuda.py -p no:cacheprovider 2>&1 | tee "$OUT/gpu-tests.txt"
$FB ops --device cuda --save --results-dir "$OUT" --paper --format md 2>&1 | tee "$OUT/gpu-ops.txt"
$FB model fasternet_t0 fasternet_t1 fasternet_t2 fasternet_s fasternet_m fasternet_l --device cuda \
  --save --results-dir "$OUT" --paper --format md 2>&1 | tee "$OUT/gpu-model.txt"
echo "gpu_check: reports in $OUT"
