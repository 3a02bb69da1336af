"""pytest-benchmark: the whole embedded analysis (both strategies, both laws, all methods).

Run with `nox -s bench` (or `pytest benchmarks/pytest --benchmark-enable`).
"""

import resource
import subprocess
import sys

import pandas as pd

from kinetics.hardware import B200_INTENSITY
from kinetics.report import analyze, build_summary
from kinetics.synthetic import replicate_queries
from kinetics.traces import embedded_path, load_trials, resolve_models


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


def test_tenfold_report_time_and_peak_rss(benchmark, tmp_path):
    """`kinetics report` with plots on 554,400 rows in a fresh process: the time is the
    benchmark, the child's peak RSS goes into extra_info (target < 1.5 GB, < 15 s)."""
    trials = tmp_path / "tenfold.parquet"
    table = replicate_queries(pd.read_parquet(embedded_path()), 10)
    table.to_parquet(trials)
    command = [sys.executable, "-m", "kinetics", "report", "--quiet", "--trials", str(trials),
               "--out", str(tmp_path / "report")]
    benchmark.pedantic(subprocess.run, args=(command,), kwargs={"check": True}, rounds=1,
                       iterations=1)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    benchmark.extra_info.update(trials=len(table), peak_rss_gb=round(child.ru_maxrss * 1024 / 1e9, 3),
                                cpu_seconds=round(child.ru_utime + child.ru_stime, 1))
    assert (tmp_path / "report" / "summary.json").exists()
