#!/usr/bin/env bash
# One full call on the lent GPU machine (see benchmarks/RESULTS.md for how it was used).
#
#   bash benchmarks/gpu/device_run.sh [full|gate]
#
# full: GPU tests (+ pytest-benchmark), the attention-only bench, the decoder-layer bench.
# gate: `nox -s gpu` (GPU tests, then `kinetics bench --gate benchmarks/baseline/gpu.json`),
#   then the decoder-layer bench.
# grid: `kinetics bench --grid` (time budget GRID_S seconds, default 150), the gate
#   baseline's attention cells written from that run (benchmarks/baseline/gpu.json,
#   floors 80%; its layer gates kept), the gate
#   on it, then the GPU tests (time limit TESTS_S, default 100; TESTS_K: a -k subset).
# The exploration modes (explore, explore-gate) drive kernel variants that left the
# library: run them from a checkout of commit 72d6910, where they and their scripts live.
# Needs the wheels in .whl/ (carried: flashinfer-python, apache-tvm-ffi, nox and its deps).
# Logs and JSON go under $OUT; a short table is printed last.
set -u -o pipefail
mode="${1:-full}"
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
export PATH="/tmp/site/bin:$PATH"
command -v python >/dev/null || { mkdir -p /tmp/site/bin; ln -sf "$(command -v python3)" /tmp/site/bin/python; }
export FLASHINFER_WORKSPACE_BASE=/tmp/fiws  # JIT cache shared by every step of this call
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv \
    | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch, triton, flashinfer; print('torch', torch.__version__, 'triton', \
triton.__version__, 'flashinfer', flashinfer.__version__)" | tee "$OUT/versions.txt"

status=0
if [ "$mode" = full ]; then
    python3 -m pytest -m gpu tests -v -p no:cacheprovider --benchmark-enable \
        --benchmark-json="$OUT/gpu-benchmarks.json" 2>&1 | tee "$OUT/pytest-gpu.log" \
        | grep -E "PASSED|FAILED|ERROR|SKIPPED|passed|failed|Error" | tail -40
    status=$((status | $?))
    python3 -m kinetics bench --attention-only --json-out "$OUT/bench-attention.json" \
        2>&1 | tee "$OUT/bench-attention.txt"
    status=$((status | $?))
    python3 -m kinetics bench --json-out "$OUT/bench-layer.json" 2>&1 | tee "$OUT/bench-layer.txt"
    echo "== attention only"; cat "$OUT/bench-attention.txt" | tail -8
    grep -E "passed|failed" "$OUT/pytest-gpu.log" | tail -1
elif [ "$mode" = gate ]; then
    python3 -m nox -s gpu 2>&1 | tee "$OUT/nox-gpu.log" | grep -vE "^tests/.*PASSED" | tail -45
    status=$?
    python3 -m kinetics bench --json-out "$OUT/bench-layer.json" 2>&1 | tee "$OUT/bench-layer.txt"
    echo "== nox -s gpu summary"
    grep -E " passed| failed|gate:|speedup|Session|^(dense|blocktopk)" "$OUT/nox-gpu.log"
elif [ "$mode" = grid ]; then
    # 8 files come back: nvidia-smi, versions, grid.{txt,json,png}, gpu.json, gate.json, log
    python3 -m kinetics bench --grid --time-budget "${GRID_S:-150}" --json-out "$OUT/grid.json" \
        --plot "$OUT/grid.png" >"$OUT/grid.txt" 2>&1
    status=$?
    # new attention cells from this grid; the layer gates of the old baseline kept
    python3 -c "import json, sys; from kinetics.bench.gate import baseline_from_grid; \
old = json.load(open(sys.argv[2])); new = baseline_from_grid(json.load(open(sys.argv[1]))); \
new.update({k: old[k] for k in ('layer', 'layer_how_set') if k in old}); \
json.dump(new, open(sys.argv[2], 'w'), indent=2)" \
        "$OUT/grid.json" benchmarks/baseline/gpu.json && cp benchmarks/baseline/gpu.json "$OUT/"
    python3 -m kinetics bench --gate benchmarks/baseline/gpu.json --json-out "$OUT/gate.json" \
        >"$OUT/gate-tests.log" 2>&1
    status=$((status | $?))
    # TESTS_K: a pytest -k expression to run a subset of the GPU tests
    timeout "${TESTS_S:-100}" python3 -m pytest -m gpu tests -q -p no:cacheprovider \
        ${TESTS_K:+-k "$TESTS_K"} >>"$OUT/gate-tests.log" 2>&1
    status=$((status | $?))
    echo "== grid"; grep -vE " ms, block top-k " "$OUT/grid.txt"
    echo "== gate"; grep -E "gate:|^speedup" "$OUT/gate-tests.log"
    echo "== tests"; grep -E "passed|failed|FAILED|Error" "$OUT/gate-tests.log" | tail -15
else
    echo "unknown mode '$mode' (full, gate or grid)"; status=2
fi
exit $status
