"""Packaging metadata that `nox -s wheel` exercises end to end (build, install the wheel
with only `[ingest]`, run the CLI from another folder); these checks run in every CI
run without building anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower() for req in requirements}


def test_distribution_name_is_not_the_taken_one_but_the_command_is_kinetics(project):
    assert project["name"] == "kinetics-tts"  # `kinetics` on PyPI is another project
    assert project["scripts"] == {"kinetics": "kinetics.cli:main"}


def test_license_file_is_the_declared_license(project):
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a stub


def test_extras(project):
    extras = {name: _names(reqs) for name, reqs in project["optional-dependencies"].items()}
    assert {"datasets", "transformers", "jinja2", "math-verify"} <= extras["ingest"]  # chat templates need jinja2
    assert {"transformers", "gguf", "math-verify", "datasets", "jinja2"} <= extras["generate"]
    assert {"flashinfer-python", "triton"} <= extras["gpu"]
    assert {"nox", "asv", "ruff", "build"} <= extras["dev"]
    assert {"check-jsonschema", "zizmor"} <= extras["test"]  # tests/test_ci_workflows.py
    assert all("torch" not in names for names in extras.values())  # no multi-GB CUDA wheel
    assert "torch" not in _names(project["dependencies"])


def test_sdist_manifest_carries_the_test_suite():
    grafts = {line.split()[1] for line in (ROOT / "MANIFEST.in").read_text().splitlines()
              if line.startswith("graft ")}
    assert {"tests", "benchmarks", "scripts", ".github"} <= grafts


def test_sdist_manifest_leaves_the_run_records_out():
    lines = (ROOT / "MANIFEST.in").read_text().splitlines()
    assert "prune benchmarks/results" in lines
    baseline = sorted(p.name for p in (ROOT / "benchmarks" / "baseline").iterdir())
    assert baseline == ["accuracy-smollm2.json", "cpu-gate.json", "gpu.json"]  # gates only


def _sdist_members(tmp_path) -> list[str]:
    """The member names of an sdist built (setuptools' PEP 517 backend, no network)
    from a copy of this tree."""
    import shutil
    import subprocess
    import sys
    import tarfile

    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".nox", ".asv", ".benchmarks", ".hypothesis", "__pycache__", "*.egg-info",
        "build", "dist", "kinetics-report", "mutants", ".whl"))
    out = tmp_path / "dist"
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.build_sdist(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"no sdist built here: {proc.stderr.strip().splitlines()[-1:]}")
    with tarfile.open(out / proc.stdout.strip().splitlines()[-1]) as tar:
        return [m.split("/", 1)[1] for m in tar.getnames() if "/" in m]


def test_sdist_has_no_run_records(tmp_path):
    members = _sdist_members(tmp_path)
    assert "benchmarks/baseline/gpu.json" in members and "tests/conftest.py" in members
    assert "tests/data/bench/grid-synthetic.json" in members
    assert not [m for m in members if m.startswith("benchmarks/results")]
    assert "benchmarks/gpu/constraints.txt" in members  # the GPU pins, not a record
    records = [m for m in members if m.startswith("benchmarks/")
               and m.endswith((".png", ".log", ".txt", ".json"))
               and not m.startswith("benchmarks/baseline/")
               and m != "benchmarks/gpu/constraints.txt"]
    assert records == []
