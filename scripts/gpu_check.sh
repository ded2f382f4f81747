#!/usr/bin/env bash
# One-shot GPU check: on a machine with an NVIDIA GPU and this project, run the CUDA tests, then
# the default `ops` (Table 1, throughput at batch 32) and FasterNet T0-L `model` runs on the GPU,
# and write every report and log into $OUT (default: results/).
#
#   bash scripts/gpu_check.sh                 # installs into .venv as README.md says, if not yet
#   OUT=/somewhere bash scripts/gpu_check.sh
#
# On a GPU machine without internet whose Python already has torch (a cluster node, a CUDA
# image), name that interpreter; the project then runs from this source tree, and WHEELS names a
# folder of wheels for the pure-Python packages it lacks, made on a connected machine with
#   pip wheel --no-deps -w wheels fvcore iopath yacs termcolor portalocker tabulate
#   PYTHON=python3 WHEELS=wheels bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results}
mkdir -p "$OUT"
if [ -n "${PYTHON:-}" ]; then
  if [ -n "${WHEELS:-}" ]; then
    SITE=$(mktemp -d)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  [ -x .venv/bin/flopsbench ] || { python3 -m venv .venv && .venv/bin/pip install -e '.[test]'; }
  PYTHON=.venv/bin/python
fi
"$PYTHON" -c 'import fvcore, onnx, onnxruntime, pandas, pynvml, pytest, rich, tabulate, timm, torch, typer' \
  || { echo "gpu_check: $PYTHON lacks a package flopsbench needs (above); see the top of $0" >&2; exit 2; }
"$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"; print(torch.__version__, torch.cuda.get_device_name())'
start=$SECONDS
failed=0
{ nvidia-smi || true; } > "$OUT/gpu-tests.txt" 2>&1
# The CUDA tests (CUDA events within 2 % of the wall clock, graphs, L2 flush, OOM rows) and the
# CPU-side tests of the GPU path. A failing step does not stop the later ones; it is reported at the end.
"$PYTHON" -m pytest -q tests/test_cuda.py -p no:cacheprovider 2>&1 | tee -a "$OUT/gpu-tests.txt" || failed=1
"$PYTHON" -m flopsbench ops --device cuda --save --results-dir "$OUT" --paper --format md 2>&1 | tee "$OUT/gpu-ops.txt" || failed=1
"$PYTHON" -m flopsbench model fasternet_t0 fasternet_t1 fasternet_t2 fasternet_s fasternet_m fasternet_l \
  --device cuda --save --results-dir "$OUT" --paper --format md 2>&1 | tee "$OUT/gpu-model.txt" || failed=1
echo "gpu_check: tests and runs took $((SECONDS - start)) s; reports in $OUT" | tee -a "$OUT/gpu-tests.txt"
[ "$failed" = 0 ] || { echo "gpu_check: a step failed; see the logs in $OUT" >&2; exit 1; }
