"""pytest-benchmark: the whole embedded analysis (both strategies, both laws, all methods).

Run with `nox -s bench` (or `pytest benchmarks/pytest --benchmark-enable`).
"""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kinetics.analysis.report import analyze, build_summary
from kinetics.analysis.synthetic import replicate_queries
from kinetics.analysis.trials import embedded_path, load_trials, resolve_models
from kinetics.hardware import B200_INTENSITY


def test_full_embedded_analysis(benchmark):
    def work():
        trials, synthetic = load_trials(None)
        models = resolve_models(trials)
        analysis = analyze(trials, models, B200_INTENSITY)
        summary = build_summary(trials, B200_INTENSITY, hardware="b200", synthetic=synthetic,
                                source="embedded", options=analysis.options)
        return analysis, summary

    benchmark.extra_info.update(trials="embedded synthetic", device="cpu")
    analysis, summary = benchmark.pedantic(work, rounds=5, iterations=1, warmup_rounds=1)
    assert len(analysis.frontier) == 2 * 3 * 3 * 100
    assert summary.synthetic is True


# The child runs the CLI in-process and reports its own peak RSS (KiB) and CPU seconds,
# then the largest peak RSS and the CPU seconds of its own children (the figure processes).
_CHILD = ("import resource, sys; from kinetics.cli import main; code = main(sys.argv[1:]); "
          "use = resource.getrusage(resource.RUSAGE_SELF); "
          "kids = resource.getrusage(resource.RUSAGE_CHILDREN); print('rusage', use.ru_maxrss, "
          "use.ru_utime + use.ru_stime, kids.ru_maxrss, kids.ru_utime + kids.ru_stime, "
          "file=sys.stderr); sys.exit(code)")


# rounds per table size: the CPU speed gate (benchmarks/cpu_gate.py) takes the minimum,
# which needs a few rounds to be steady; 50x is one round (35-66 s) and its time is not gated
REPORT_ROUNDS = {1: 3, 10: 3, 50: 1}


@pytest.mark.parametrize("copies", list(REPORT_ROUNDS))
def test_report_time_and_peak_rss(benchmark, tmp_path, copies):
    """`kinetics report` with plots on 1x, 10x, 50x the embedded table (55,440 to
    2,772,000 rows) in a fresh process: the time is the benchmark, the child's peak
    RSS and CPU seconds go into extra_info (issue 10: 10x < 1.5 GB, < 15 s; issue 11:
    50x must not run out of memory); ``cpu_seconds_min``, the least CPU time of a round
    (report and figure processes), is what the CPU speed gate compares."""
    trials = tmp_path / f"trials-{copies}x.parquet"
    table = replicate_queries(pd.read_parquet(embedded_path()), copies)
    table.to_parquet(trials)
    command = [sys.executable, "-c", _CHILD, "report", "--quiet", "--trials", str(trials),
               "--out", str(tmp_path / "report")]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    cpu_rounds: list[float] = []  # per round: the report's CPU seconds, figure processes included

    def one_round():
        done = subprocess.run(command, check=True, env=env, capture_output=True, text=True,
                              cwd=root)
        _, cpu, _, kids_cpu = done.stderr.split("rusage")[-1].split()[:4]
        cpu_rounds.append(float(cpu) + float(kids_cpu))
        return done

    done = benchmark.pedantic(one_round, rounds=REPORT_ROUNDS[copies], iterations=1)
    peak_kib, cpu, kids_kib, kids_cpu = done.stderr.split("rusage")[-1].split()[:4]
    benchmark.extra_info.update(trials=len(table), peak_rss_gb=round(int(peak_kib) * 1024 / 1e9, 3),
                                cpu_seconds_min=round(min(cpu_rounds), 3),
                                cpu_seconds=round(float(cpu), 1),
                                figure_process_peak_rss_gb=round(int(kids_kib) * 1024 / 1e9, 3),
                                figure_processes_cpu_seconds=round(float(kids_cpu), 1))
    assert (tmp_path / "report" / "summary.json").exists()
