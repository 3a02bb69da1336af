"""The read floors measured on a GPU (skipped without one)."""

from __future__ import annotations

import importlib.util
import math

import pytest

torch = pytest.importorskip("torch")

from kinetics.bench.floors import measure_read_curve  # noqa: E402
from kinetics.bench.timing import copy_bandwidth  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
    reason="needs a CUDA GPU and triton")]


def test_read_curve_is_a_plausible_streaming_read():
    curve = measure_read_curve((1e6, 64e6, 512e6))
    assert all(math.isfinite(ms) and ms > 0 for ms in curve.ms)
    assert curve.ms[0] < curve.ms[1] < curve.ms[2]
    assert 0 < curve.launch_ms < min(curve.ms[0], 0.01)  # a launch: well under 10 us
    read_gbps = 512e6 / (curve.ms[2] * 1e-3) / 1e9
    # a pure read of 512 MB streams at about the copy rate (read + write bytes over time)
    assert 0.5 < read_gbps / copy_bandwidth() < 1.5
