"""``kinetics bench`` without a GPU: one line on stderr, exit code 2 (no GPU needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kinetics import bench
from kinetics.cli import main


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(bench, "gpu_available", lambda: (False, "no CUDA GPU (test)"))


@pytest.mark.parametrize("argv", [
    ["bench", "--model", "qwen3-8b", "--method", "blocktopk", "--context", "16384",
     "--batch-size", "64", "--page-size", "16", "--topk-pages", "64", "--tp", "8",
     "--attention-only", "--json"],
    ["bench", "--gate", "benchmarks/baseline/gpu.json", "--json-out", "unused.json"],
])
def test_bench_without_gpu_exits_2_with_one_line(argv, no_gpu, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "no GPU" in lines[0]


@pytest.mark.parametrize("argv", [
    ["bench", "--page-size", "12"],
    ["bench", "--topk-pages", "0"],
    ["bench", "--tp", "3"],
    ["bench", "--model", "nope"],
])
def test_bench_bad_flags_exit_2(argv, no_gpu, capsys):
    assert main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_gate_bad_baseline(tmp_path, no_gpu, capsys):
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"config": {}, "min_speedup": "fast"}))
    assert main(["bench", "--gate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "min_speedup" in err and len(err.strip().splitlines()) == 1


def test_stored_baseline_is_valid():
    root = Path(__file__).resolve().parents[2]
    data = bench.load_baseline(root / "benchmarks" / "baseline" / "gpu.json")
    cfg = bench.BenchConfig(**data["config"])
    cfg.validate()
    assert data["min_speedup"] > 1


def test_gpu_available_reports_a_reason():
    ok, why = bench.gpu_available()
    assert isinstance(ok, bool) and why
