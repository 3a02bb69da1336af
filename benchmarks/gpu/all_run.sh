#!/usr/bin/env bash
# One call on a lent 2-GPU machine for issues 14 and 15 (run from the repository root):
#   bash benchmarks/gpu/all_run.sh
# GPU 1: `device_run.sh grid` (the regime grid, the gate baseline's attention cells
#   from it, the gate, the attention GPU tests); GPU 0 meanwhile: `e2e_run.py single
#   --quick` (fused layer, whole model, cost model); then both GPUs: `e2e_run.py tp
#   --quick` under torchrun and the model/TP GPU tests. Budgets: GRID_S, SINGLE_S, TP_S.
# Wheels from .whl; logs and JSON under $OUT; summaries printed last.
set -u -o pipefail
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site2 .whl/*.whl \
    || exit 1
( CUDA_VISIBLE_DEVICES=1 GRID_S="${GRID_S:-110}" TESTS_S=90 TESTS_K=attention \
    bash benchmarks/gpu/device_run.sh grid > "$OUT/grid-run.log" 2>&1 ) &
export PYTHONPATH="/tmp/site2:$PWD" PYTHONUNBUFFERED=1 FLASHINFER_WORKSPACE_BASE=/tmp/fiws2
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi topo -m > "$OUT/topo.txt" 2>&1
CUDA_VISIBLE_DEVICES=0 timeout "${SINGLE_S:-240}" python3 benchmarks/gpu/e2e_run.py single \
    "$OUT" --quick > "$OUT/single.log" 2>&1
echo "single exit $?" >> "$OUT/single.log"
wait
timeout "${TP_S:-150}" torchrun --nproc-per-node 2 benchmarks/gpu/e2e_run.py tp "$OUT" --quick \
    > "$OUT/tp.log" 2>&1
echo "tp exit $?" >> "$OUT/tp.log"
timeout 60 python3 -m pytest -m gpu -q -p no:cacheprovider tests/bench/test_tp.py \
    tests/model > "$OUT/pytest-model.log" 2>&1
echo "== grid"; tail -30 "$OUT/grid-run.log"
echo "== pytest model/tp"; grep -E "passed|failed|Error" "$OUT/pytest-model.log" | tail -4
echo "== tp"; sed -n '/==== summary/,$p' "$OUT/tp.log"; grep -E "FAILED|Error|exit" "$OUT/tp.log" | head -5
echo "== single"; sed -n '/==== summary/,$p' "$OUT/single.log"; grep -E "FAILED|exit" "$OUT/single.log" | head
