"""pytest-benchmark: the reference workload of the CPU speed gate (benchmarks/cpu_gate.py).

A fixed numpy + pandas + pure-Python computation of the same character as the suite
(vectorized integer/float arithmetic on a million elements, a sort, a groupby, an
interpreter loop) that kinetics does not change. The gate divides every benchmark's
time by this one's, timed in the same run on the same machine, so the baseline is a
set of ratios: a slower or busier machine slows both sides alike. Changing REFERENCE
changes every ratio: re-record the gate baseline in the same commit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N = 1_000_000


def reference_workload() -> float:
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, 4096, N)
    gen = rng.integers(1, 32768, N)
    flops = (prompt.astype(np.float64) * gen + gen * (gen + 1) / 2.0) * 1e-9
    ordered = np.sort(flops)
    frame = pd.DataFrame({"k": rng.integers(0, 1000, N), "v": flops})
    means = frame.groupby("k")["v"].agg(["mean", "max"])
    loop = sum(i * i % 7 for i in range(200_000))
    return float(ordered[N // 2] + means["max"].sum() + loop)


def test_reference_workload(benchmark):
    benchmark.extra_info.update(role="reference of benchmarks/cpu_gate.py")
    value = benchmark.pedantic(reference_workload, rounds=15, iterations=1, warmup_rounds=1)
    assert value > 0
