"""pytest-benchmark: `kinetics report` on the embedded set, as a ratio to a reference
workload timed in the same run.

The machine this runs on is shared, so a wall time alone says as much about the other
users as about the code. Each round first runs REFERENCE (a fixed mix of interpreter
start, imports, pandas, a matplotlib PNG and pure Python that kinetics does not change)
in a fresh process, untimed by the benchmark, then the default `kinetics report` in a
fresh process, timed. extra_info holds both minima and their ratio: the report's time
in units of the reference's, comparable across loads and machines. Run with
`nox -s bench` (or `pytest benchmarks/pytest --benchmark-enable`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REFERENCE = """
import io
import numpy as np
import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rng = np.random.default_rng(0)
frame = pd.DataFrame({"k": rng.integers(0, 1000, 200_000), "v": rng.random(200_000)})
for _ in range(3):
    frame.groupby("k")["v"].agg(["mean", "max"])
fig, ax = plt.subplots(figsize=(6, 4))
for i in range(8):
    ax.plot(np.cumsum(rng.random(200)), label=str(i))
ax.legend()
ax.set_xscale("log")
fig.savefig(io.BytesIO(), format="png", dpi=150)
sum(i * i % 7 for i in range(500_000))
"""
ROUNDS = 3


ROOT = Path(__file__).resolve().parents[2]


def _seconds(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def test_report_time_as_a_ratio_to_a_reference(benchmark, tmp_path):
    # run from the checkout: `python -m kinetics` imports the package of its folder first
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reference: list[float] = []
    out = tmp_path / "report"
    command = [sys.executable, "-m", "kinetics", "report", "--quiet", "--out", str(out)]

    def before_each_round():
        reference.append(_seconds([sys.executable, "-c", REFERENCE], env))

    benchmark.pedantic(subprocess.run, args=(command,), setup=before_each_round,
                       kwargs={"check": True, "env": env, "capture_output": True, "cwd": ROOT},
                       rounds=ROUNDS, iterations=1)
    report = benchmark.stats.stats.min
    benchmark.extra_info.update(
        trials="embedded synthetic", reference_min_s=round(min(reference), 3),
        report_min_s=round(report, 3), report_to_reference=round(report / min(reference), 3))
    assert (out / "summary.json").exists()
