#!/usr/bin/env bash
# The paged generation engine on a lent GPU machine (run from the repository root; records
# under $OUT):
#
#   bash benchmarks/gpu/generate_run.sh [check|measure]
#
# check: the GPU tests of the engine and of the decode kernels (time limit TESTS_S, default
#   240), then `kinetics bench --generate` of Qwen3-1.7B, batch 32, 512 + 512 tokens, dense,
#   with transformers' generate and the bare step (paged over hf, paged over step).
# measure: the engine's GPU tests, the check's bench again, then Qwen3-1.7B, batch 32: 512 + 4,096 tokens dense and block top-k with the bare
#   step; skewed lengths (128 samples, cap 4,096), continuous and static, dense; a shared
#   prompt of 16,384 tokens + 256 (batch 32) and 32,768 + 256 (batch 16), dense and block
#   top-k (decode tokens/s).
# verify: the engine's GPU tests and the Triton decode kernels' (TESTS_S, default 240),
#   then the check's bench and the 512 + 4,096 run of measure (dense and block top-k).
# Block top-k everywhere: 16-token pages, 64 pages attended (1,024 tokens), 1 local page.
# Needs the wheels in .whl/ (flashinfer for the attention GPU tests). Logs and JSON under
# $OUT (also packed into $OUT/records.tar.gz: the machine returns a few files only); a
# table of every run printed last.
set -u -o pipefail
mode="${1:-check}"
source benchmarks/gpu/setup_env.sh
status=0
gen() {  # name, then bench flags
    local name=$1; shift
    timeout "${RUN_S:-400}" python3 -m kinetics bench --generate --model qwen3-1.7b \
        --json-out "$OUT/$name.json" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    status=$((status | rc))
    echo "== $name (rc $rc)"; tail -14 "$OUT/$name.txt"
}
if [ "$mode" = check ]; then
    timeout "${TESTS_S:-240}" python3 -m pytest -m gpu tests/generation tests/attention -q \
        -p no:cacheprovider -x >"$OUT/pytest-gpu.log" 2>&1
    status=$?
    gen hf-512 --batch-size 32 --prompt-tokens 512 --new-tokens 512 --method dense --hf --step
    echo "== tests"; grep -E "passed|failed|FAILED|Error" "$OUT/pytest-gpu.log" | tail -15
elif [ "$mode" = measure ]; then
    timeout "${TESTS_S:-120}" python3 -m pytest -m gpu tests/generation -q -p no:cacheprovider \
        >"$OUT/pytest-gpu.log" 2>&1
    status=$?
    gen hf-512 --batch-size 32 --prompt-tokens 512 --new-tokens 512 --method dense --hf --step
    gen long-4096 --batch-size 32 --prompt-tokens 512 --new-tokens 4096 --step
    gen skewed --batch-size 32 --samples 128 --prompt-tokens 512 --new-tokens 4096 --skewed \
        --method dense
    gen ctx-16k --batch-size 32 --prompt-tokens 16384 --new-tokens 256 --shared-prompt
    gen ctx-32k --batch-size 16 --prompt-tokens 32768 --new-tokens 256 --shared-prompt
    echo "== tests"; grep -E "passed|failed|FAILED|Error" "$OUT/pytest-gpu.log" | tail -15
elif [ "$mode" = verify ]; then
    timeout "${TESTS_S:-240}" python3 -m pytest -m gpu tests/generation \
        tests/attention/test_decode.py -k "paged or fused or graphed or generation" -q \
        -p no:cacheprovider >"$OUT/pytest-gpu.log" 2>&1
    status=$?
    gen hf-512 --batch-size 32 --prompt-tokens 512 --new-tokens 512 --method dense --hf --step
    gen long-4096 --batch-size 32 --prompt-tokens 512 --new-tokens 4096 --step
    echo "== tests"; grep -E "passed|failed|FAILED|Error" "$OUT/pytest-gpu.log" | tail -15
fi
(cd "$OUT" && tar czf records.tar.gz --exclude records.tar.gz ./*)
exit $status
