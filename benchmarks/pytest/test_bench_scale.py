"""pytest-benchmark: `kinetics report` on 1x, 10x and 50x copies of the embedded table.

Each copy gets its own query ids, so 50x is 2.77M trial rows (the scale of issue 11,
which used to die with MemoryError). Time is the benchmark's; the peak resident
memory of the report process (its own ``ru_maxrss``) goes into ``extra_info`` as
``peak_rss_mb`` (and its CPU seconds as ``cpu_s``, steadier than wall time on a
shared machine). Run with
``pytest benchmarks/pytest/test_bench_scale.py --benchmark-enable -s`` (prints a
table line per scale; the 50x case needs ~2 minutes on 2 cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kinetics.traces import embedded_path

REPO = Path(__file__).resolve().parents[2]
# The child runs the CLI in-process and reports its own peak RSS (KiB on Linux).
CHILD = ("import resource, sys; from kinetics.cli import main; code = main(sys.argv[1:]); "
         "use = resource.getrusage(resource.RUSAGE_SELF); "
         "print('peak_rss_kib', use.ru_maxrss, 'cpu_s', use.ru_utime + use.ru_stime, "
         "file=sys.stderr); sys.exit(code)")


def scaled_table(copies: int, path: Path) -> Path:
    """The embedded trial table repeated ``copies`` times, query ids made distinct."""
    base = pd.read_parquet(embedded_path())
    parts = [base.assign(query_id=base["query_id"].astype(str) + f"~{i}") for i in range(copies)]
    pd.concat(parts, ignore_index=True).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("copies", [1, 10, 50])
def test_report_at_scale(benchmark, tmp_path, copies):
    table = scaled_table(copies, tmp_path / f"trials-{copies}x.parquet")
    out = tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    peaks, cpu = [], []

    def work():
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, "report", "--quiet", "--trials", str(table),
             "--out", str(out)], env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        numbers = proc.stderr.split("peak_rss_kib")[-1].split()
        peaks.append(int(numbers[0]) / 1024)
        cpu.append(float(numbers[2]))

    benchmark.pedantic(work, rounds=1, iterations=1)
    rows = len(pd.read_parquet(table, columns=["trial"]))
    benchmark.extra_info.update(copies=copies, rows=rows, peak_rss_mb=round(max(peaks)),
                                cpu_s=round(max(cpu), 1))
    seconds = benchmark.stats.stats.max if benchmark.stats else float("nan")
    print(f"\nkinetics report {copies}x ({rows} rows): {seconds:.1f} s wall, "
          f"{max(cpu):.1f} s CPU, peak RSS {max(peaks):.0f} MB")
    assert (out / "summary.json").is_file()
