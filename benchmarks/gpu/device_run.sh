#!/usr/bin/env bash
# One call on a lent GPU machine (run from the repository root; records under $OUT):
#
#   bash benchmarks/gpu/device_run.sh [full|gate|grid|e2e|check]
#
# full: the GPU tests (+ pytest-benchmark), the attention-only bench, the decoder-layer bench.
# gate: `nox -s gpu` (GPU tests, then `kinetics bench --gate benchmarks/baseline/gpu.json`),
#   then the decoder-layer bench.
# grid: `kinetics bench --grid` (time budget GRID_S seconds, default 150), the gate
#   baseline's attention cells written from that run (benchmarks/baseline/gpu.json,
#   floors 80%; its layer gates kept), the gate on it, then the GPU tests (time limit
#   TESTS_S, default 100; TESTS_K: a -k subset).
# e2e: the decoder layer at batch 64 and 256 and its attention alone, the whole Qwen3-8B
#   (batch 32, 16k, --tp 1); with 2 GPUs or more the layer (batch 32, 32k) and the whole
#   model at tp 2 under torchrun; then the cost model beside every measured step
#   (`kinetics bench --from-json ... --plot`).
# check: a one-cell grid (CELL="model context batch budget_tokens", default the standard
#   point "qwen3-8b 16384 64 1024", no read floors), then the GPU tests (TESTS_S, default 300).
# Needs the wheels in .whl/ (carried: flashinfer-python, apache-tvm-ffi, nox and its deps).
# Every kinetics bench record carries its command; versions.txt and nvidia-smi.txt the rest.
# Logs and JSON go under $OUT; a short table is printed last.
set -u -o pipefail
mode="${1:-full}"
source benchmarks/gpu/setup_env.sh
gpus=$(nvidia-smi -L | wc -l)
bench() { python3 -m kinetics bench "$@"; }

status=0
if [ "$mode" = full ]; then
    python3 -m pytest -m gpu tests -v -p no:cacheprovider --benchmark-enable \
        --benchmark-json="$OUT/gpu-benchmarks.json" 2>&1 | tee "$OUT/pytest-gpu.log" \
        | grep -E "PASSED|FAILED|ERROR|SKIPPED|passed|failed|Error" | tail -40
    status=$((status | $?))
    bench --attention-only --json-out "$OUT/bench-attention.json" 2>&1 | tee "$OUT/bench-attention.txt"
    status=$((status | $?))
    bench --json-out "$OUT/bench-layer.json" 2>&1 | tee "$OUT/bench-layer.txt"
    echo "== attention only"; tail -8 "$OUT/bench-attention.txt"
    grep -E "passed|failed" "$OUT/pytest-gpu.log" | tail -1
elif [ "$mode" = gate ]; then
    python3 -m nox -s gpu 2>&1 | tee "$OUT/nox-gpu.log" | grep -vE "^tests/.*PASSED" | tail -45
    status=$?
    bench --json-out "$OUT/bench-layer.json" 2>&1 | tee "$OUT/bench-layer.txt"
    echo "== nox -s gpu summary"
    grep -E " passed| failed|gate:|speedup|Session|^(dense|blocktopk)" "$OUT/nox-gpu.log"
elif [ "$mode" = grid ]; then
    bench --grid --time-budget "${GRID_S:-150}" --json-out "$OUT/grid.json" \
        --plot "$OUT/grid.png" >"$OUT/grid.txt" 2>&1
    status=$?
    # new attention cells from this grid; the layer gates of the old baseline kept
    python3 -c "import json, sys; from kinetics.bench.gate import baseline_from_grid; \
old = json.load(open(sys.argv[2])); new = baseline_from_grid(json.load(open(sys.argv[1]))); \
new.update({k: old[k] for k in ('layer', 'layer_how_set') if k in old}); \
json.dump(new, open(sys.argv[2], 'w'), indent=2)" \
        "$OUT/grid.json" benchmarks/baseline/gpu.json && cp benchmarks/baseline/gpu.json "$OUT/"
    bench --gate benchmarks/baseline/gpu.json --json-out "$OUT/gate.json" \
        >"$OUT/gate-tests.log" 2>&1
    status=$((status | $?))
    timeout "${TESTS_S:-100}" python3 -m pytest -m gpu tests -q -p no:cacheprovider \
        ${TESTS_K:+-k "$TESTS_K"} >>"$OUT/gate-tests.log" 2>&1
    status=$((status | $?))
    echo "== grid"; grep -vE " ms, block top-k " "$OUT/grid.txt"
    echo "== gate"; grep -E "gate:|^speedup" "$OUT/gate-tests.log"
    echo "== tests"; grep -E "passed|failed|FAILED|Error" "$OUT/gate-tests.log" | tail -15
elif [ "$mode" = e2e ]; then
    for b in 64 256; do
        bench --batch-size "$b" --json-out "$OUT/layer-b$b.json" >>"$OUT/e2e.log" 2>&1
        status=$((status | $?))
        bench --attention-only --batch-size "$b" --json-out "$OUT/attention-b$b.json" \
            >>"$OUT/e2e.log" 2>&1
        status=$((status | $?))
    done
    bench --whole-model --tp 1 --batch-size 32 --json-out "$OUT/model.json" >>"$OUT/e2e.log" 2>&1
    status=$((status | $?))
    steps=("$OUT/layer-b64.json" "$OUT/layer-b256.json" "$OUT/model.json")
    if [ "$gpus" -ge 2 ]; then
        torchrun --nproc-per-node 2 -m kinetics bench --distributed --tp 2 --batch-size 32 \
            --context 32768 --json-out "$OUT/tp-layer.json" >>"$OUT/e2e.log" 2>&1
        torchrun --nproc-per-node 2 -m kinetics bench --distributed --whole-model --tp 2 \
            --batch-size 32 --json-out "$OUT/tp-model.json" >>"$OUT/e2e.log" 2>&1
        status=$((status | $?))
        steps+=("$OUT/tp-layer.json" "$OUT/tp-model.json")
    fi
    bench --from-json "${steps[@]}" --plot "$OUT/cost-vs-measured.png" >"$OUT/cost.txt" 2>&1
    echo "== e2e"; grep -vE "^\[" "$OUT/e2e.log" | tail -40
    echo "== cost model"; cat "$OUT/cost.txt"
elif [ "$mode" = check ]; then
    read -r model context batch budget <<<"${CELL:-qwen3-8b 16384 64 1024}"
    timeout "${GRID_S:-150}" python3 -m kinetics bench --grid --grid-models "$model" \
        --grid-contexts "$context" --grid-batches "$batch" --grid-budget-tokens "$budget" \
        --no-floors --json-out "$OUT/grid-one-cell.json" >"$OUT/grid-one-cell.txt" 2>&1
    status=$?
    # the benchmarks' own GPU tests first, then the rest of the GPU suite
    timeout "${TESTS_S:-300}" python3 -m pytest -m gpu tests/bench tests/model tests \
        -q -p no:cacheprovider ${TESTS_K:+-k "$TESTS_K"} >"$OUT/pytest-gpu.log" 2>&1
    status=$((status | $?))
    echo "== tests"; grep -E "passed|failed|FAILED|Error|SKIPPED" "$OUT/pytest-gpu.log" | tail -15
    echo "== one-cell grid"; cat "$OUT/grid-one-cell.txt"
else
    echo "unknown mode '$mode' (full, gate, grid, e2e or check)"; status=2
fi
exit $status
