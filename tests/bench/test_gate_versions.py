"""The GPU gate's library-version check (pure functions, no GPU): the baseline records
the torch/triton/flashinfer its floors were set with, the constraints file pins the
same, and a run on other versions is refused unless allowed."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinetics.bench import gate
from kinetics.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "benchmarks" / "gpu" / "constraints.txt"
BASELINE = ROOT / "benchmarks" / "baseline" / "gpu.json"
RECORDED = {"torch": "2.11.0+cu130", "triton": "3.6.0", "flashinfer": "0.6.1"}


def test_the_baseline_records_the_pinned_stack():
    assert gate.load_baseline(BASELINE).versions == RECORDED
    assert gate.read_constraints(CONSTRAINTS) == RECORDED


def test_equal_versions_pass():
    assert gate.version_mismatches(RECORDED, dict(RECORDED)) == []
    assert gate.check_versions(RECORDED, {**RECORDED, "extra": "1"}) == []


@pytest.mark.parametrize(("name", "running"), [
    ("torch", "2.11.0"),  # the local label counts: +cu130 vs another build
    ("torch", "2.12.0+cu130"), ("triton", "3.5.1"), ("flashinfer", "0.6.2")])
def test_any_other_version_is_refused(name, running):
    now = {**RECORDED, name: running}
    assert gate.version_mismatches(RECORDED, now) == [
        f"{name} recorded {RECORDED[name]}, running {running}"]
    with pytest.raises(InputError, match=re.escape(f"{name} recorded {RECORDED[name]}, running {running}")):
        gate.check_versions(RECORDED, now)
    assert gate.check_versions(RECORDED, now, allow=True) == [
        f"{name} recorded {RECORDED[name]}, running {running}"]


def test_a_missing_library_is_a_mismatch():
    assert gate.version_mismatches(RECORDED, {"torch": "2.11.0+cu130", "triton": "3.6.0"}) == [
        "flashinfer recorded 0.6.1, running none"]


@given(st.dictionaries(st.sampled_from(sorted(gate.PINNED)), st.text(min_size=1, max_size=8)),
       st.dictionaries(st.sampled_from(sorted(gate.PINNED)), st.text(min_size=1, max_size=8)))
def test_mismatches_are_exactly_the_differing_recorded_names(recorded, running):
    found = gate.version_mismatches(recorded, running)
    assert [line.split()[0] for line in found] == sorted(
        n for n in recorded if running.get(n) != recorded[n])
    assert gate.version_mismatches({}, running) == []


def test_the_baseline_versions_are_validated(tmp_path):
    data = json.loads(BASELINE.read_text())
    for bad in ({"jax": "0.4"}, {"torch": 2.11}, ["torch"]):
        path = tmp_path / "gpu.json"
        path.write_text(json.dumps({**data, "versions": bad}))
        with pytest.raises(InputError, match="versions"):
            gate.load_baseline(path)
    path.write_text(json.dumps({k: v for k, v in data.items() if k != "versions"}))
    assert gate.load_baseline(path).versions == {}  # an older baseline: nothing to compare


def test_pins_main(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gate, "running_versions", lambda: dict(RECORDED))
    assert gate.pins_main([str(CONSTRAINTS)]) == 0
    monkeypatch.setattr(gate, "running_versions", lambda: {**RECORDED, "triton": "3.9.0"})
    assert gate.pins_main([str(CONSTRAINTS)]) == 2
    assert "triton recorded 3.6.0, running 3.9.0" in capsys.readouterr().err
    assert gate.pins_main([str(CONSTRAINTS), "--allow-version-mismatch"]) == 0
    assert gate.pins_main([]) == 2


def test_baseline_from_grid_keeps_the_versions():
    grid = {"cells": [{"model": "qwen3-8b", "context": 16384, "batch_size": 64,
                       "topk_pages": 64, "replicas": 2, "speedup": 3.0, "byte_roofline": 9.0}],
            "spec": {"page_size": 16, "tp": 8, "local_pages": 1}, "date": "d", "device": "x",
            "versions": {**RECORDED, "device": "H200"}}
    data = gate.baseline_from_grid(grid, cells=[("qwen3-8b", 16384, 64, 64)])
    assert data["versions"] == RECORDED


def test_running_versions_take_the_modules_own_version(monkeypatch):
    """On the lent H200 torch's distribution metadata said 2.11.0 while
    ``torch.__version__`` said 2.11.0+cu130 (the pinned text): the module's word counts,
    the metadata only where the module does not import."""
    import types

    modules = {"torch": types.SimpleNamespace(__version__="2.11.0+cu130"),
               "triton": types.SimpleNamespace(__version__="3.6.0")}

    def fake_import(name):
        if name not in modules:
            raise ImportError(name)
        return modules[name]

    dists = {"torch": "2.11.0", "triton": "3.6.0", "flashinfer-python": "0.6.1"}

    def fake_version(dist):
        if dist not in dists:
            raise importlib.metadata.PackageNotFoundError(dist)
        return dists[dist]

    from kinetics import provenance

    for name in gate.PINNED:  # not imported yet: running_versions imports them
        monkeypatch.delitem(provenance.sys.modules, name, raising=False)
    monkeypatch.setattr(provenance.importlib, "import_module", fake_import)
    monkeypatch.setattr(provenance.metadata, "version", fake_version)
    assert gate.running_versions() == {"torch": "2.11.0+cu130", "triton": "3.6.0",
                                       "flashinfer": "0.6.1"}
    assert gate.version_mismatches(RECORDED, gate.running_versions()) == []
