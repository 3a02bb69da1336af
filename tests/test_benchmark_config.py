"""Benchmark configuration: asv's commit links and the frontier tracks' summaries (the
CPU speed gate's baseline: tests/test_cpu_gate.py).

asv summarizes a parameterized benchmark by the geometric mean over its parameters, so
one tracked 0 pins the summary thumbnail at 0: every track must stay positive.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark(name: str):
    path = ROOT / "benchmarks" / "asv" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"asv_suite_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_commit_links_follow_the_repository_url():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    conf = json.loads(re.sub(r"^\s*//.*$", "", (ROOT / "asv.conf.json").read_text(), flags=re.M))
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert conf["show_commit_url"] == repository.rstrip("/") + "/commit/"


def _tracked(benchmark, cache) -> dict[tuple, dict[str, float]]:
    """{params: {track name: value}} for every parameter combination setup accepts."""
    tracks = [name for name in dir(benchmark) if name.startswith("track_")]
    values = {}
    for params in itertools.product(*benchmark.params):
        try:
            benchmark.setup(cache, *params)
        except NotImplementedError:
            continue
        values[params] = {name: getattr(benchmark, name)(cache, *params) for name in tracks}
    return values


@pytest.fixture(scope="module")
def frontier():
    return _load_benchmark("bench_frontier")


@pytest.fixture(scope="module")
def entries(frontier):
    return frontier._Summary().setup_cache()


def test_every_frontier_track_is_positive(frontier, entries):
    for cls in (frontier.FrontierNumbers, frontier.FrontierReach):
        values = _tracked(cls(), entries)
        assert values, cls.__name__
        assert all(v > 0 for tracks in values.values() for v in tracks.values()), cls.__name__


def test_only_budgets_where_nothing_fits_are_skipped(frontier, entries):
    tracked = _tracked(frontier.FrontierNumbers(), entries)
    assert set(tracked) == {key for key, e in entries.items() if e.accuracy > 0}
    assert len(tracked) < len(entries)  # the embedded data has budgets where nothing fits


def test_reach_is_the_smallest_budget_with_a_fit(frontier, entries):
    reach = _tracked(frontier.FrontierReach(), entries)
    assert len(reach) == len(frontier.LAWS) * len(frontier.STRATEGIES) * len(frontier.METHODS)
    for curve, tracks in reach.items():
        fits = [e.budget_eflops for key, e in entries.items() if key[:3] == curve and e.accuracy > 0]
        assert tracks["track_smallest_feasible_budget_eflops"] == min(fits)
