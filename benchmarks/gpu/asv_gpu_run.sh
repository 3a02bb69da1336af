#!/usr/bin/env bash
# asv's GPU suite (bench_gpu.DecodeGrid or GenerateEngine) on a lent GPU machine, on this
# working tree; with TESTS=1 then the GPU tests of tests/bench and tests/model for the rest
# of LIMIT_S (default 580 s). Run from the repository root; records under $OUT.
#
#   bash benchmarks/gpu/asv_gpu_run.sh
#
# ASV_BENCH: asv's --bench pattern (default DecodeGrid). Each suite's setup_cache takes
# minutes (DecodeGrid: the whole grid, then ~1-2 min of asv's own per-track processes;
# GenerateEngine: four generation workloads, more than 4 min), and asv writes a commit's
# results only when its run ends, so a run cut by the limit leaves none: on a 10-minute
# call, one suite per call. asv gets all of LIMIT_S but TAIL_S (default 45 s: publish,
# copy; with TESTS=1 the tests get what is left after asv).
#
# Needs the carried wheels: .whl/*.whl as setup_env.sh installs them (flashinfer and
# jsonschema, whose tests validate the JSON they write), and .whl/asv/ (asv and nox with
# what they need, installed only where the machine's python lacks them). `nox -s asv-gpu`
# benchmarks committed revisions through git worktrees; the machine's copy of the
# repository keeps the git HEAD of the session's start, so this script runs asv on the
# working tree instead (ASV_PYTHONPATH=$PWD), labelled with `git rev-parse HEAD` (name
# the real commit in the record's README). The fused kernel is compiled for every grid cell first, in parallel
# (precompile_fused.py), as in fused_run.sh. What goes to $OUT: asv's results JSON
# (results/), the published regressions.json, the log, and a summary printed last.
set -u -o pipefail
OUT="${OUT:-/tmp/out}"
LIMIT_S="${LIMIT_S:-580}"
mkdir -p "$OUT"
log="$OUT/run.log"
source benchmarks/gpu/setup_env.sh >>"$log" 2>&1 || { echo "setup failed"; exit 1; }
python3 -m pip install -q --no-index --find-links .whl/asv asv nox >>"$log" 2>&1 \
    || { echo "asv install failed"; tail -5 "$log"; exit 1; }
source benchmarks/gpu/steps.sh
sha=$(git rev-parse HEAD)
config=$(python3 -c "import noxfile; print(noxfile._asv_config())")
machine="${KINETICS_ASV_MACHINE:-h200-lent}"
step precompile 150 python3 benchmarks/gpu/precompile_fused.py --workers 14
step asv-machine 30 python3 -m asv machine --yes --machine "$machine" --config "$config"
export ASV_PYTHONPATH="$PWD"  # asv hands it to its benchmark processes
step asv-run "$(( $(left) - ${TAIL_S:-45} ))" python3 -m asv run --config "$config" \
    --machine "$machine" --environment existing:python3 --set-commit-hash "$sha" \
    --bench "${ASV_BENCH:-DecodeGrid}" --show-stderr
step asv-publish 60 python3 -m asv publish --config "$config"
mkdir -p "$OUT/results"
cp -r .asv/results/"$machine" "$OUT/results/" 2>>"$log"
cp .asv/html/regressions.json "$OUT/" 2>>"$log"
if [ "${TESTS:-0}" = 1 ]; then
    step tests "$(left)" python3 -m pytest -m gpu -q -p no:cacheprovider tests/bench tests/model
fi
echo "== summary (asv labelled $sha)"
grep -E "^== |passed|failed|Error|\[ *[0-9]+\.[0-9]+%\]" "$log" | tail -40
