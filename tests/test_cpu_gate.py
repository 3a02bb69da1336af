"""The CPU speed gate's comparison (benchmarks/cpu_gate.py), on made-up runs: ratios to a
reference timed in the same run, so a uniformly slower machine passes and a 1.5x slower
benchmark fails; the committed baseline covers the suite the gate session runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cpu_gate", ROOT / "benchmarks" / "cpu_gate.py")
cpu_gate = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("cpu_gate", cpu_gate)  # its dataclasses look their module up
_spec.loader.exec_module(cpu_gate)

REF = cpu_gate.REFERENCE
A = "benchmarks/pytest/test_bench_cost.py::test_query_cost_million_pairs[dense]"
RSS = cpu_gate.RSS_GATED[0]


def _run(times: dict[str, float], rss: float = 0.8, dirty: bool = False,
         timer: str = "process_time") -> dict:
    """A pytest-benchmark JSON with these minima (RSS, a child-process benchmark, gives
    them as cpu_seconds_min beside a meaningless timer minimum, and its peak RSS)."""
    def extra(name, t):
        return {"peak_rss_gb": rss, "cpu_seconds_min": t} if name == RSS else {}

    return {"commit_info": {"id": "abc", "dirty": dirty}, "datetime": "now",
            "machine_info": {"node": "test", "cpu": {"brand_raw": "cpu", "count": 2}},
            "benchmarks": [{"fullname": name, "options": {"timer": timer},
                            "stats": {"min": 0.001 if name == RSS else t},
                            "extra_info": extra(name, t)} for name, t in times.items()]}


BASE_TIMES = {REF: 0.1, A: 0.03, RSS: 9.0}


@pytest.fixture
def baseline():
    return cpu_gate.record(_run(BASE_TIMES))


def _check(baseline, run):
    return cpu_gate.compare(baseline, cpu_gate.ratios(run), cpu_gate.peak_rss(run))


def test_a_1_6x_slowdown_fails_and_1_1x_passes(baseline):
    assert _check(baseline, _run({**BASE_TIMES, A: 0.03 * 1.1})).passed
    verdict = _check(baseline, _run({**BASE_TIMES, A: 0.03 * 1.6}))
    assert not verdict.passed
    assert len(verdict.failures) == 1 and A in verdict.failures[0]
    assert "1.60x" in verdict.failures[0] and "SLOWER" in verdict.failures[0]


def test_a_slower_machine_is_not_a_regression(baseline):
    """Everything 7x slower, the reference included (the old absolute baseline's
    problem): every ratio is unchanged."""
    assert _check(baseline, _run({k: 7 * v for k, v in BASE_TIMES.items()})).passed
    # ... while the same code on a 7x slower machine with a 7x slower benchmark fails
    assert not _check(baseline, _run({REF: 0.1, A: 0.03 * 7, RSS: 9.0})).passed


def test_peak_rss_is_gated(baseline):
    assert _check(baseline, _run(BASE_TIMES, rss=0.8 * 1.2)).passed
    verdict = _check(baseline, _run(BASE_TIMES, rss=0.8 * 1.4))
    assert not verdict.passed and "MORE MEMORY" in verdict.failures[0]


def test_missing_and_unknown_benchmarks_fail(baseline):
    gone = _check(baseline, _run({REF: 0.1, RSS: 9.0}))
    assert [f for f in gone.failures if A in f and "not in this run" in f]
    new = _check(baseline, _run({**BASE_TIMES, "x.py::test_new": 1.0}))
    assert [f for f in new.failures if "test_new" in f and "no baseline" in f]
    with pytest.raises(KeyError, match="reference"):
        cpu_gate.ratios(_run({A: 0.03}))


def test_not_gated_benchmarks_are_neither_recorded_nor_required():
    slow = next(iter(cpu_gate.NOT_GATED))
    baseline = cpu_gate.record(_run({**BASE_TIMES, slow: 30.0}))
    assert slow not in baseline["ratios"] and slow in baseline["min_s"]
    assert _check(baseline, _run({**BASE_TIMES, slow: 300.0})).passed
    assert _check(baseline, _run(BASE_TIMES)).passed


def test_child_process_benchmarks_count_their_cpu_seconds(baseline):
    assert cpu_gate.minima(_run(BASE_TIMES))[RSS] == 9.0
    assert not _check(baseline, _run({**BASE_TIMES, RSS: 9.0 * 1.6})).passed


def test_the_timer_must_be_cpu_time(tmp_path, baseline):
    with pytest.raises(ValueError, match="process_time"):
        cpu_gate.record(_run(BASE_TIMES, timer="perf_counter"))
    path, run = tmp_path / "cpu-gate.json", tmp_path / "run.json"
    path.write_text(json.dumps(baseline))
    run.write_text(json.dumps(_run(BASE_TIMES, timer="perf_counter")))
    assert cpu_gate.main(["check", str(run), "--baseline", str(path)]) == 2


def test_a_dirty_run_is_not_recorded():
    with pytest.raises(ValueError, match="dirty"):
        cpu_gate.record(_run(BASE_TIMES, dirty=True))
    assert cpu_gate.record(_run(BASE_TIMES, dirty=True), allow_dirty=True)["dirty"] is True


@given(scale=st.floats(0.05, 50), growth=st.floats(0.2, 3.0))
def test_the_verdict_depends_on_the_ratio_alone(scale, growth):
    """Scaling every time of a run (machine speed, steady load) never changes the
    verdict; a benchmark fails exactly when its ratio grew past the limit."""
    baseline = cpu_gate.record(_run(BASE_TIMES))
    run = _run({REF: 0.1 * scale, A: 0.03 * growth * scale, RSS: 9.0 * scale})
    # RSS's own time is unchanged in ratio; A's grew by `growth` (ratios rounded to 4
    # places in the baseline: stay clear of the edge)
    if abs(growth - cpu_gate.MAX_TIME_GROWTH) > 0.01:
        assert _check(baseline, run).passed == (growth <= cpu_gate.MAX_TIME_GROWTH)


def test_the_cli_exit_codes(tmp_path, baseline):
    path = tmp_path / "cpu-gate.json"
    path.write_text(json.dumps(baseline))
    ok, slow = tmp_path / "ok.json", tmp_path / "slow.json"
    ok.write_text(json.dumps(_run(BASE_TIMES)))
    slow.write_text(json.dumps(_run({**BASE_TIMES, A: 0.03 * 1.6})))
    assert cpu_gate.main(["check", str(ok), "--baseline", str(path)]) == 0
    assert cpu_gate.main(["check", str(slow), "--baseline", str(path)]) == 1
    dirty = tmp_path / "dirty.json"
    dirty.write_text(json.dumps(_run(BASE_TIMES, dirty=True)))
    assert cpu_gate.main(["record", str(dirty), "--baseline", str(tmp_path / "new.json")]) == 2


def test_the_committed_baseline_covers_the_gate_suite():
    """Every benchmark the bench-gate session collects has a baseline ratio (or is not
    gated), and the baseline names a clean commit of this history."""
    baseline = json.loads((ROOT / "benchmarks" / "baseline" / "cpu-gate.json").read_text())
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "benchmarks/pytest", "--ignore=benchmarks/pytest/test_bench_generate.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    names = {line for line in collected.stdout.splitlines() if "::" in line} - {REF}
    gated = set(baseline["ratios"])
    assert names - set(baseline["not_gated"]) == gated, (
        "re-record the baseline: nox -s bench-gate -- --record (on a clean tree)")
    assert all(v > 0 for v in baseline["ratios"].values())
    assert baseline["statistic"] == "min" and baseline["dirty"] is False
    assert baseline["timer"] == "process_time"
    assert set(baseline["peak_rss_gb"]) == set(cpu_gate.RSS_GATED)
    if (ROOT / ".git").exists():
        known = subprocess.run(["git", "cat-file", "-e", f"{baseline['commit']}^{{commit}}"],
                               cwd=ROOT, capture_output=True)
        assert known.returncode == 0, f"commit {baseline['commit']} is not in this history"
