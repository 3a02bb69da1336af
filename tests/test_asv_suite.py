"""The asv suite (benchmarks/asv): every benchmark the noxfile, the workflows and the
docs select exists, the GPU grid is one asv parameter per axis, and a run leaves no
files behind.

The names are found without asv (importing the suite's modules the way asv's discovery
does); `asv check` runs too where asv is installed. `--bench X` is a regular expression
asv searches in each benchmark's full name (``module.Class.method``): a selector that
matches none makes `asv run` print "No benchmarks selected" and exit 1.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "asv"
PREFIXES = ("time_", "timeraw_", "mem_", "peakmem_", "track_")
# where benchmark selectors are written: the noxfile, the workflows, the docs
SELECTOR_FILES = [ROOT / "noxfile.py", *sorted((ROOT / ".github" / "workflows").glob("*.yml")),
                  *sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md",
                  ROOT / "benchmarks" / "RESULTS.md"]
_CLI_SELECTOR = re.compile(r"(?:--bench(?:=|\s+)|\s-b\s+)([\"']?)([A-Za-z_][\w.*|\\]*)\1")


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"asv_suite_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark_names() -> set[str]:
    """Full names (``module.Class.method`` / ``module.function``) of the asv suite."""
    names = set()
    for path in sorted(SUITE.glob("*.py")):
        if path.name == "__init__.py":
            continue
        module = _module(path)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                names |= {f"{path.stem}.{name}.{m}" for m in dir(obj) if m.startswith(PREFIXES)}
            elif inspect.isfunction(obj) and name.startswith(PREFIXES):
                names.add(f"{path.stem}.{name}")
    return names


def noxfile_selectors(text: str) -> list[str]:
    """Every string that follows a "--bench" / "-b" argument in the noxfile's calls (a
    module-level string constant named there is read)."""
    tree = ast.parse(text)
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                 for target in node.targets if isinstance(target, ast.Name)}
    found = []
    for node in ast.walk(tree):
        items = getattr(node, "args", None) if isinstance(node, ast.Call) else None
        if items is None and isinstance(node, (ast.List, ast.Tuple)):
            items = node.elts
        items = list(items or [])
        for i, flag in enumerate(items):
            value = items[i + 1] if i + 1 < len(items) else None
            if isinstance(flag, ast.Constant) and flag.value in ("--bench", "-b") and value:
                if isinstance(value, ast.Name):
                    assert value.id in constants, f"--bench {value.id}: not a string constant"
                    found.append(constants[value.id])
                else:
                    assert isinstance(value, ast.Constant), ast.dump(value)
                    found.append(value.value)
            elif isinstance(flag, ast.Constant) and isinstance(flag.value, str):
                found += [m.group(2) for m in _CLI_SELECTOR.finditer(" " + flag.value)]
    return found


def text_selectors(text: str) -> list[str]:
    return [m.group(2) for m in _CLI_SELECTOR.finditer(text)]


def selectors() -> list[tuple[str, str]]:
    out = []
    for path in SELECTOR_FILES:
        if not path.exists():
            continue
        text = path.read_text()
        found = noxfile_selectors(text) if path.suffix == ".py" else text_selectors(text)
        out += [(path.relative_to(ROOT).as_posix(), s) for s in found]
    return out


def test_the_suite_is_found():
    names = benchmark_names()
    assert {"bench_cost.QueryCost.time_query_cost", "bench_gpu.DecodeGrid.track_blocktopk_speedup",
            "bench_frontier.TenfoldReport.peakmem_report"} <= names


def test_the_noxfile_selects_the_gpu_suite():
    """Not vacuous: the asv-gpu session names its suite, and the parser finds it."""
    found = noxfile_selectors((ROOT / "noxfile.py").read_text())
    assert found and all(re.search(s, "bench_gpu.DecodeGrid.track_blocktopk_speedup")
                         for s in found)


@pytest.mark.parametrize(("where", "selector"), selectors(), ids=lambda v: str(v))
def test_every_selector_names_a_benchmark(where, selector):
    names = benchmark_names()
    assert any(re.search(selector, name) for name in names), (
        f"{where}: `--bench {selector}` selects no asv benchmark (asv run would exit 1 with "
        f"'No benchmarks selected'); the suite has {sorted({n.rsplit('.', 1)[0] for n in names})}")


def test_a_stale_selector_is_caught():
    assert noxfile_selectors('session.run("asv", "run", "--bench", "DecodeAttention")') == [
        "DecodeAttention"]
    assert text_selectors("asv run --quick -b DecodeAttention\nasv run --bench=Foo") == [
        "DecodeAttention", "Foo"]
    assert not any(re.search("DecodeAttention", name) for name in benchmark_names())


def test_asv_check():
    asv = shutil.which("asv") or shutil.which("asv", path=str(Path(sys.executable).parent))
    if asv is None:
        pytest.skip("asv is not installed (it comes with pip install 'kinetics-tts[dev]')")
    done = subprocess.run([asv, "check", "--python=same", "--config", "asv.conf.json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "No problems found" in done.stdout, done.stdout + done.stderr


def test_decode_grid_has_one_parameter_per_axis():
    grid = _module(SUITE / "bench_gpu.py").DecodeGrid
    assert grid.param_names == ["model", "context", "batch", "budget_tokens"]
    assert len(grid.params) == 4 and all(len(axis) > 1 for axis in grid.params)
    assert all(isinstance(v, int) for axis in grid.params[1:] for v in axis)
    for method in ("setup", "track_blocktopk_speedup"):
        assert len(inspect.signature(getattr(grid, method)).parameters) == 2 + 4  # self, cache


def test_decode_grid_skips_without_a_gpu_and_off_the_grid():
    module = _module(SUITE / "bench_gpu.py")
    bench = module.DecodeGrid()
    with pytest.raises(NotImplementedError):
        bench.setup({"skip": "no CUDA GPU"}, "qwen3-8b", 8192, 1, 1024)
    cache = {"page_size": 16, "ran": {}, "cells": {("qwen3-8b", 8192, 1, 64)}}
    bench.setup(cache, "qwen3-8b", 8192, 1, 1024)  # a cell the grid skipped: NaN, not skipped
    assert bench.track_blocktopk_speedup(cache, "qwen3-8b", 8192, 1, 1024) != 0
    with pytest.raises(NotImplementedError):
        bench.setup(cache, "qwen3-8b", 8192, 1, 2048)


def test_tenfold_report_writes_under_the_run_folder(tmp_path, monkeypatch):
    """asv runs setup_cache and the benchmarks in a folder it removes afterwards: every
    file of TenfoldReport goes there, none to the temporary directory."""
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("kinetics-asv-*"))
    monkeypatch.chdir(tmp_path)
    bench = _module(SUITE / "bench_frontier.py").TenfoldReport()
    trials = bench.setup_cache()
    bench.setup(trials)
    assert Path(trials).parent == tmp_path and Path(trials).stat().st_size > 0
    assert bench.out.parent == tmp_path
    bench.teardown(trials)
    assert set(tmp.glob("kinetics-asv-*")) == before


def _asv_conf() -> dict:
    import json

    return json.loads(re.sub(r"^\s*//.*$", "", (ROOT / "asv.conf.json").read_text(), flags=re.M))


def test_regression_thresholds_are_set_and_match_benchmarks():
    thresholds = _asv_conf()["regressions_thresholds"]
    names = benchmark_names()
    assert thresholds.get(".*") == 0.05
    for regex, value in thresholds.items():
        assert 0 < float(value) < 1, regex
        assert any(re.match(regex, name) for name in names), f"{regex} matches no benchmark"


def _workflow(name: str) -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def _steps(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


@pytest.mark.parametrize(("name", "job", "html"), [("gpu.yml", "gate", "asv-gpu-html"),
                                                   ("ci.yml", "asv", "asv-cpu-html")])
def test_the_workflows_build_up_the_asv_history(name, job, html):
    """Each run restores the previous results, runs, publishes and saves them again."""
    steps = _steps(_workflow(name), job)
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    restore, save = uses.index("actions/cache/restore"), uses.index("actions/cache/save")
    run = next(i for i, s in enumerate(steps) if "nox -s asv" in s.get("run", ""))
    assert restore < run < save
    assert steps[restore]["with"]["path"] == steps[save]["with"]["path"] == ".asv/results"
    assert steps[restore]["with"]["restore-keys"] and steps[save]["with"]["key"] == steps[
        restore]["with"]["key"]
    uploads = {s["with"]["name"]: s["with"]["path"] for s in steps
               if s.get("uses", "").startswith("actions/upload-artifact")}
    assert uploads[html] == ".asv/html"


def test_the_gpu_workflow_installs_the_pinned_stack():
    text = "\n".join(s.get("run", "") for s in _steps(_workflow("gpu.yml"), "gate"))
    installs = [line for line in text.replace("\\\n", " ").splitlines() if "pip install" in line]
    assert installs and all("-c benchmarks/gpu/constraints.txt" in line for line in installs)
    assert "kinetics.bench.gate benchmarks/gpu/constraints.txt" in text


def test_the_ci_workflow_runs_the_cpu_speed_gate():
    steps = _steps(_workflow("ci.yml"), "bench-gate")
    assert any(s.get("run", "").strip() == "nox -s bench-gate" for s in steps)


def test_generate_engine_tracks_each_target_ratio_of_one_workload():
    module = _module(SUITE / "bench_gpu.py")
    bench = module.GenerateEngine()
    assert bench.param_names == ["ratio"] and bench.params == [list(module.GENERATE_RATIOS)]
    with pytest.raises(NotImplementedError):
        bench.setup({"skip": "no CUDA GPU"}, "paged_over_hf")
    for workload, _ in module.GENERATE_RATIOS.values():
        assert workload in module.GENERATE_WORKLOADS
    cache = {"ratios": {"hf-512": {"paged_over_hf": 11.5}, "long-4096": {}, "skewed": {},
                        "ctx-16k": {}}}
    assert bench.track_ratio(cache, "paged_over_hf") == 11.5
    assert math.isnan(bench.track_ratio(cache, "continuous_over_static"))
    # every workload is a valid benchmark spec
    from kinetics.bench.generate import GenerateBenchSpec

    for fields in module.GENERATE_WORKLOADS.values():
        GenerateBenchSpec(model="qwen3-1.7b", batch_size=32, **fields)
