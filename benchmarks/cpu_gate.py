"""The CPU speed gate: pytest-benchmark times as ratios to a reference timed in the same run.

    python benchmarks/cpu_gate.py check RUN.json [--baseline PATH]   # exit 1 on a regression
    python benchmarks/cpu_gate.py record RUN.json [--baseline PATH]  # write the baseline

RUN.json is pytest-benchmark's ``--benchmark-json`` of benchmarks/pytest, timed with
``--benchmark-timer=time.process_time`` (``nox -s bench-gate`` runs both steps). Every
benchmark's **minimum CPU seconds** over its rounds is divided by the minimum of the
reference workload (benchmarks/pytest/test_bench_reference.py) of the same run; the
baseline (benchmarks/baseline/cpu-gate.json) holds those ratios. A benchmark that runs
a child process (the `kinetics report` ones) gives its own per-round CPU seconds, the
child's and its figure processes' (extra_info ``cpu_seconds_min``).
A benchmark fails when its ratio grew more than ``max_time_growth`` (1.5x) over the
baseline's; the 10x report fails when its peak RSS grew more than ``max_rss_growth``
(1.3x). A benchmark of the run missing from the baseline, or the reverse, fails too
(except those under ``not_gated``).

Why CPU time: on a shared 2-core machine a seconds-long benchmark cannot find a quiet
moment, and its wall time grew 1.8-2x under a load average of 5 while a 90 ms
reference's minimum did not move (benchmarks/RESULTS.md): the ratio of wall times
then measures the neighbours. CPU time is what the process itself spent, nearly blind
to other processes. What it does not see: time spent waiting (I/O, a lost overlap of
the report's parallel figure processes); the wall times stay in the JSON.

Why the minimum: the noise left is one-sided (cache and frequency interference only
add time), so the fastest round is the closest to the code's own cost, and the ratio
divides out the machine's speed. The same holds for the GPU gate, which compares
block top-k to dense timed in the same run (kinetics.bench.gate).

Why a ratio: an absolute baseline recorded on one machine says nothing on another (the
committed pytest-cpu.json was ~7x slower than the development machine a week later, so
``min:50%`` let a 10x slowdown pass).

The functions here are pure (dicts in, verdicts out) and tested in tests/test_cpu_gate.py.
The gate is not part of the pytest suite: it runs in its own nox session and CI step.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE = Path(__file__).resolve().parent / "baseline" / "cpu-gate.json"
REFERENCE = "benchmarks/pytest/test_bench_reference.py::test_reference_workload"
# the gate's runs: --benchmark-timer=time.process_time, which pytest-benchmark's JSON
# writes as "process_time" (options.timer)
TIMER = "process_time"
MAX_TIME_GROWTH = 1.5
MAX_RSS_GROWTH = 1.3
# peak RSS (GB, the child process's ru_maxrss; extra_info["peak_rss_gb"]) gated for these
RSS_GATED = ("benchmarks/pytest/test_bench_frontier.py::test_report_time_and_peak_rss[10]",)
# benchmarks recorded but whose time is not gated, and why
NOT_GATED = {
    "benchmarks/pytest/test_bench_frontier.py::test_report_time_and_peak_rss[50]":
        "one 35 s round: a single sample of a long run on a shared machine",
    "benchmarks/pytest/test_bench_generate.py::test_hf_backend_vs_transformers_generate":
        "needs torch, transformers and the SmolLM2 file; already a ratio to transformers",
    "benchmarks/pytest/test_bench_report.py::test_report_time_as_a_ratio_to_a_reference":
        "its own reference in fresh processes; the time itself is gated through "
        "test_report_time_and_peak_rss[1]",
}


@dataclass(frozen=True)
class Verdict:
    """``failures``: one line per failed check; ``lines``: every check, for the log."""

    failures: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def minima(run: dict[str, Any]) -> dict[str, float]:
    """{fullname: min seconds over the rounds} of a pytest-benchmark JSON: extra_info
    ``cpu_seconds_min`` where a benchmark gives it (its child processes' CPU time), else
    the timer's minimum."""
    return {b["fullname"]: float(b.get("extra_info", {}).get("cpu_seconds_min",
                                                               b["stats"]["min"]))
            for b in run["benchmarks"]}


def timer(run: dict[str, Any]) -> str | None:
    """The run's pytest-benchmark timer (ValueError if its benchmarks used several)."""
    timers = {b.get("options", {}).get("timer") for b in run["benchmarks"]}
    if len(timers) > 1:
        raise ValueError(f"the run mixes timers {sorted(map(str, timers))}")
    return timers.pop() if timers else None


def ratios(run: dict[str, Any], reference: str = REFERENCE) -> dict[str, float]:
    """{fullname: min / the reference's min} for every benchmark but the reference.
    KeyError naming the reference if the run lacks it."""
    times = minima(run)
    if reference not in times:
        raise KeyError(f"the run has no reference benchmark {reference}")
    ref = times.pop(reference)
    return {name: t / ref for name, t in times.items()}


def peak_rss(run: dict[str, Any], names=RSS_GATED) -> dict[str, float]:
    """{fullname: extra_info peak_rss_gb} for ``names`` found in the run."""
    return {b["fullname"]: float(b["extra_info"]["peak_rss_gb"]) for b in run["benchmarks"]
            if b["fullname"] in names and "peak_rss_gb" in b.get("extra_info", {})}


def compare(baseline: dict[str, Any], now_ratios: dict[str, float],
            now_rss: dict[str, float]) -> Verdict:
    """The gate: each baseline ratio against this run's (fail above
    ``max_time_growth`` x), each baseline peak RSS against this run's (fail above
    ``max_rss_growth`` x); a benchmark on one side only fails unless not gated."""
    time_limit = float(baseline.get("max_time_growth", MAX_TIME_GROWTH))
    rss_limit = float(baseline.get("max_rss_growth", MAX_RSS_GROWTH))
    not_gated = set(baseline.get("not_gated", {}))
    failures, lines = [], []
    recorded = baseline["ratios"]
    for name in sorted(set(now_ratios) - set(recorded) - not_gated):
        failures.append(f"{name}: no baseline ratio (record one: nox -s bench-gate -- --record)")
    _check_growth(recorded, now_ratios, time_limit, "in the baseline, not in this run",
                  lambda now, base: f"ratio {now:.3f} vs {base:.3f} recorded", "SLOWER",
                  failures, lines)
    _check_growth(baseline.get("peak_rss_gb", {}), now_rss, rss_limit,
                  "no peak RSS in this run",
                  lambda now, base: f"peak RSS {now:.3f} GB vs {base:.3f} GB recorded",
                  "MORE MEMORY", failures, lines)
    return Verdict(failures, lines)


def _check_growth(recorded: dict[str, float], now: dict[str, float], limit: float,
                  missing: str, describe, worse: str, failures: list[str],
                  lines: list[str]) -> None:
    """Each recorded value against this run's: a line per name (``describe(now, base)``,
    the growth and ``ok`` or ``worse``), a failure above ``limit`` x or when this run
    lacks the name (``missing``)."""
    for name, base in sorted(recorded.items()):
        if name not in now:
            failures.append(f"{name}: {missing}")
            continue
        growth = now[name] / base
        ok = growth <= limit
        line = (f"{name}: {describe(now[name], base)} -> {growth:.2f}x (limit {limit:g}x) "
                f"{'ok' if ok else worse}")
        lines.append(line)
        if not ok:
            failures.append(line)


def record(run: dict[str, Any], allow_dirty: bool = False) -> dict[str, Any]:
    """A baseline from a run: ratios of the gated benchmarks, peak RSS of RSS_GATED, the
    commit and machine. ValueError on a run from a dirty tree (unless ``allow_dirty``):
    a baseline names a commit that is in the history, and its code is that commit's."""
    info = run.get("commit_info", {})
    if timer(run) != TIMER:
        raise ValueError(f"the run was timed with {timer(run)}, not {TIMER} "
                         f"(--benchmark-timer=time.{TIMER}; nox -s bench-gate passes it)")
    if info.get("dirty") and not allow_dirty:
        raise ValueError("the run was made on a dirty tree: commit first, then run on a "
                         "clean checkout (git status clean)")
    all_ratios = ratios(run)
    machine = run.get("machine_info", {})
    reference_min = minima(run)[REFERENCE]
    return {
        "description": "CPU speed gate (benchmarks/cpu_gate.py, nox -s bench-gate): each "
                       "benchmark's minimum CPU seconds over its rounds divided by the reference "
                       "workload's minimum in the same run; fails at more than "
                       "max_time_growth x the recorded ratio, or max_rss_growth x the "
                       "recorded peak RSS.",
        "statistic": "min",
        "timer": TIMER,
        "reference": REFERENCE,
        "max_time_growth": MAX_TIME_GROWTH,
        "max_rss_growth": MAX_RSS_GROWTH,
        "commit": info.get("id"),
        "dirty": bool(info.get("dirty")),
        "recorded": run.get("datetime"),
        "machine": {k: machine.get(k) for k in ("node", "processor", "machine",
                                                 "python_version")} | {
            "cpu": (machine.get("cpu") or {}).get("brand_raw"),
            "cpu_count": (machine.get("cpu") or {}).get("count")},
        "reference_min_s": round(reference_min, 6),
        "ratios": {k: round(v, 4) for k, v in sorted(all_ratios.items()) if k not in NOT_GATED},
        "min_s": {k: round(v, 6) for k, v in sorted(minima(run).items())},
        "peak_rss_gb": peak_rss(run),
        "not_gated": {k: v for k, v in NOT_GATED.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cpu_gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("check", "record"))
    parser.add_argument("run", help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--baseline", default=str(BASELINE))
    parser.add_argument("--allow-dirty", action="store_true",
                        help="record: accept a run on a dirty tree (not for the committed baseline)")
    args = parser.parse_args(argv)
    run = json.loads(Path(args.run).read_text())
    if args.action == "record":
        try:
            data = record(run, allow_dirty=args.allow_dirty)
        except (ValueError, KeyError) as exc:
            print(f"cpu_gate: {exc}", file=sys.stderr)
            return 2
        Path(args.baseline).write_text(json.dumps(data, indent=2) + "\n")
        print(f"cpu_gate: wrote {args.baseline} ({len(data['ratios'])} ratios, commit "
              f"{data['commit']})")
        return 0
    try:
        baseline = json.loads(Path(args.baseline).read_text())
        if timer(run) != baseline.get("timer", TIMER):
            raise ValueError(f"the run was timed with {timer(run)}, the baseline with "
                             f"{baseline.get('timer', TIMER)}: ratios do not compare")
        verdict = compare(baseline, ratios(run, baseline.get("reference", REFERENCE)),
                          peak_rss(run, tuple(baseline.get("peak_rss_gb", RSS_GATED))))
    except (OSError, ValueError, KeyError) as exc:
        print(f"cpu_gate: {exc}", file=sys.stderr)
        return 2
    for line in verdict.lines:
        print(line)
    print(f"cpu_gate: {len(verdict.lines)} checks against {args.baseline} (commit "
          f"{baseline.get('commit')}) -> {'PASS' if verdict.passed else 'FAIL'}")
    for line in verdict.failures:
        print(f"FAIL {line}", file=sys.stderr)
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
