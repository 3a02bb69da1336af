#!/usr/bin/env bash
# One device call for issue 15 (run from the repository root, 1 or 2 GPUs):
#   bash benchmarks/gpu/e2e_run.sh [--compile]
# GPU 0: e2e_run.py single (the GPU tests of tests/model run on GPU 1 meanwhile), the
# GPU gate; both GPUs: e2e_run.py tp under torchrun, then the 2-GPU NCCL tests.
# Wheels (flashinfer, apache-tvm-ffi) from .whl or ../.whl. Logs and JSON under $OUT
# (8 files at most); the summaries are printed last.
set -u -o pipefail
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
whl=$(ls -d .whl ../.whl 2>/dev/null | head -1)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$whl"/*.whl \
    || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 FLASHINFER_WORKSPACE_BASE=/tmp/fiws
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  nvidia-smi topo -m; } > "$OUT/single.log" 2>&1
gpus=$(nvidia-smi -L | wc -l)
if [ "$gpus" -ge 2 ]; then  # the model tests on GPU 1 while GPU 0 times
    CUDA_VISIBLE_DEVICES=1 timeout "${SINGLE_S:-200}" python3 -m pytest -m gpu -q \
        -p no:cacheprovider tests/model > "$OUT/pytest.log" 2>&1 &
fi
CUDA_VISIBLE_DEVICES=0 timeout "${SINGLE_S:-200}" python3 benchmarks/gpu/e2e_run.py single \
    "$OUT" "$@" >> "$OUT/single.log" 2>&1
wait
CUDA_VISIBLE_DEVICES=0 timeout "${GATE_S:-90}" python3 -m kinetics bench \
    --gate benchmarks/baseline/gpu.json --json-out "$OUT/gate.json" > "$OUT/gate.log" 2>&1
echo "gate exit $?" >> "$OUT/gate.log"
if [ "$gpus" -ge 2 ]; then
    timeout "${TP_S:-150}" torchrun --nproc-per-node 2 benchmarks/gpu/e2e_run.py tp "$OUT" \
        > "$OUT/tp.log" 2>&1
    timeout "${TEST_S:-60}" python3 -m pytest -m gpu -q -p no:cacheprovider \
        tests/bench/test_tp.py >> "$OUT/pytest.log" 2>&1
else
    timeout "${TEST_S:-60}" python3 -m pytest -m gpu -q -p no:cacheprovider tests/model \
        tests/bench/test_tp.py > "$OUT/pytest.log" 2>&1
    timeout "${TP_S:-150}" torchrun --nproc-per-node 1 benchmarks/gpu/e2e_run.py tp "$OUT" \
        > "$OUT/tp.log" 2>&1
fi
echo "== pytest"; grep -E "passed|failed|Error" "$OUT/pytest.log" | tail -6
echo "== gate"; grep -E "^gate|exit" "$OUT/gate.log"
echo "== tp"; sed -n '/==== summary/,$p' "$OUT/tp.log"; grep -E "FAILED|Error" "$OUT/tp.log" | head -5
echo "== single"; sed -n '/==== summary/,$p' "$OUT/single.log"
