"""kinetics.bench.timing.environment: the bench records' device, date and versions, a view
of the one provenance record (no GPU needed)."""

from __future__ import annotations

import datetime as dt

import pytest

pytest.importorskip("torch")

from kinetics import provenance as prov  # noqa: E402
from kinetics.bench.timing import environment  # noqa: E402


def test_environment_is_the_provenance_records_device_date_and_gpu_libraries(monkeypatch):
    monkeypatch.setattr(prov, "utc_now", lambda: "2026-01-31T12:34:56Z")
    monkeypatch.setattr(prov, "library_versions", lambda: {
        "numpy": "2", "pandas": "3", "pyarrow": "4", "torch": "2.9.0+cu130",
        "triton": "3.6.0", "flashinfer": None})
    monkeypatch.setattr(prov, "current_device", lambda: "NVIDIA H200")
    assert environment() == {"device": "NVIDIA H200", "date": "2026-01-31 12:34 UTC",
                             "versions": {"torch": "2.9.0+cu130", "triton": "3.6.0"}}


def test_environment_here():
    import torch

    env = environment()
    assert env["versions"]["torch"] == torch.__version__
    dt.datetime.strptime(env["date"], "%Y-%m-%d %H:%M UTC")
    assert env["device"] == (torch.cuda.get_device_name() if torch.cuda.is_available()
                             else "cpu")
