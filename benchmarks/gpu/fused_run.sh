#!/usr/bin/env bash
# One call on a lent H200 for the fused block top-k kernel (see benchmarks/RESULTS.md).
#
#   bash benchmarks/gpu/fused_run.sh [explore|final|probe]
#
# probe: only benchmarks/explore/explore_fused.py on the cells EXPLORE_CELLS (indices into
#   its CELLS, default 0,1,2,3,6: the gate cells and 16k / 256; none: no exploration;
#   EXPLORE_SET=ablate or stages for those sets; EXPLORE_S seconds, default 330), with
#   PROBE_MODEL=1 the whole Qwen3-8B (batch 32, 16k, tp 1), with PROBE_GATE=1 the gate against the committed baseline, with PROBE_PHASES=CELLS the
#   fused kernel's phase stamps on those cells (benchmarks/explore/explore_phases.py),
#   with PROBE_PROFILE=1 the whole Qwen3-8B step kernel by kernel
#   (benchmarks/explore/explore_model_profile.py), then the fused kernel's GPU tests
#   (-k PROBE_TESTS_K, default fused) for the rest of LIMIT_S.
# explore and final: install the carried wheels (.whl: flashinfer-python, apache-tvm-ffi), compile the
# fused kernel for every grid cell in parallel processes
# (benchmarks/gpu/precompile_fused.py), `kinetics bench --grid` (read floors included;
# cell time budget GRID_S, default 170 s), the gate against the COMMITTED baseline
# (benchmarks/baseline/gpu.json; the baseline from this grid goes to $OUT/gpu-new.json,
# never checked in this call), then GPU tests for the rest of LIMIT_S (default 580 s):
# explore: first benchmarks/explore/explore_fused.py (launch options on 8 cells), tests
#   of the fused kernel only (-k fused);
# final: the GPU tests of the attention, bench and model packages.
# Logs and JSON go under $OUT; a short summary is printed last.
set -u -o pipefail
mode="${1:-explore}"
OUT="${OUT:-/tmp/out}"
LIMIT_S="${LIMIT_S:-580}"
mkdir -p "$OUT"
log="$OUT/run.log"
source benchmarks/gpu/setup_env.sh >>"$log" 2>&1 || { echo "setup failed"; exit 1; }
source benchmarks/gpu/steps.sh
if [ "$mode" = probe ]; then
    if [ "${EXPLORE_CELLS:-}" != none ]; then
        step explore "${EXPLORE_S:-330}" python3 benchmarks/explore/explore_fused.py "$OUT/explore.json" \
            "${EXPLORE_CELLS:-0,1,2,3,6}"
    fi
    if [ -n "${PROBE_PHASES:-}" ]; then
        step phases 300 python3 benchmarks/explore/explore_phases.py "$OUT/phases.json" \
            "$PROBE_PHASES"
    fi
    if [ "${PROBE_PROFILE:-0}" = 1 ]; then
        step profile 240 python3 benchmarks/explore/explore_model_profile.py \
            "$OUT/model-profile.json"
    fi
    if [ "${PROBE_MODEL:-0}" = 1 ]; then
        step model 200 python3 -m kinetics bench --whole-model --tp 1 --batch-size 32 \
            --json-out "$OUT/model.json"
    fi
    if [ "${PROBE_GATE:-0}" = 1 ]; then
        step gate 150 python3 -m kinetics bench --gate benchmarks/baseline/gpu.json \
            --json-out "$OUT/gate.json"
    fi
    step tests "$(left)" python3 -m pytest -m gpu -q -p no:cacheprovider \
        tests/attention/test_decode.py -k "${PROBE_TESTS_K:-fused}"
    echo "== summary"
    grep -E "^== |passed|failed|FAIL|Error|skipped:|gate:|speedup|tok/s" "$log" | tail -30
    sed -n '/^cell  /,/^== /p' "$log" | head -8
    grep -A9 -E "^cell +step +stamped" "$log"
    grep -A15 -E "^== (dense|blocktopk): step" "$log"
    exit 0
fi
step precompile 150 python3 benchmarks/gpu/precompile_fused.py --workers 14
if [ "$mode" = explore ]; then
    step explore 150 python3 benchmarks/explore/explore_fused.py "$OUT/explore.json"
fi
step grid $(( $(left) - 150 > 330 ? 330 : $(left) - 150 )) python3 -m kinetics bench --grid \
    --time-budget "${GRID_S:-170}" --json-out "$OUT/grid.json" --plot "$OUT/grid.png"
python3 -c "import json, sys; from kinetics.bench.gate import baseline_from_grid; \
old = json.load(open(sys.argv[2])); new = baseline_from_grid(json.load(open(sys.argv[1]))); \
new.update({k: old[k] for k in ('layer', 'layer_how_set') if k in old}); \
json.dump(new, open(sys.argv[3], 'w'), indent=2)" \
    "$OUT/grid.json" benchmarks/baseline/gpu.json "$OUT/gpu-new.json" >>"$log" 2>&1
step gate $(( $(left) - 30 > 120 ? 120 : $(left) - 30 )) python3 -m kinetics bench --gate \
    benchmarks/baseline/gpu.json --json-out "$OUT/gate.json"
if [ "$mode" = explore ]; then
    step tests "$(left)" python3 -m pytest -m gpu -x -q -p no:cacheprovider \
        tests/attention/test_decode.py -k fused
else
    step tests "$(left)" python3 -m pytest -m gpu -v -p no:cacheprovider \
        tests/attention tests/bench tests/model
    echo "tests: $(grep -c ' PASSED' "$log") passed, $(grep -c ' FAILED' "$log") failed," \
        "$(grep -c ' SKIPPED' "$log") skipped (as far as they got)" | tee -a "$log"
fi
echo "== summary"
grep -E "^== |^precompiled|^compiled|cells with dense|gate:|passed|failed| FAIL|Error" "$log" | tail -40
sed -n '/^cell  /,/^== /p' "$log" | head -12
grep -E "^qwen3-(8b|32b) +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ " "$log" \
    | grep -E "^qwen3-8b +16384 +64 +64 |^qwen3-8b +65536 +16 +64 |^qwen3-8b +131072 +16 +64 |^qwen3-32b +16384 +64 +64 "
