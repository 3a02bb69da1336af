# Sourced by the GPU drivers that run timed steps in one device call (fused_run.sh,
# asv_gpu_run.sh), after $log (the call's log) and LIMIT_S (the call's seconds) are set.
left() { echo $((LIMIT_S - SECONDS)); }  # seconds of the call left
step() {  # step NAME SECONDS CMD...: run with a timeout, log, note the exit code
    local name="$1" secs="$2"; shift 2
    if [ "$secs" -lt 20 ]; then echo "== $name: skipped (no time left)" | tee -a "$log"; return; fi
    echo "== $name (limit ${secs}s, at ${SECONDS}s)" >>"$log"
    timeout "$secs" "$@" >>"$log" 2>&1
    echo "== $name: exit $? after ${SECONDS}s" | tee -a "$log"
}
