"""Packaging metadata that `nox -s wheel` exercises end to end (build, install the wheel
with only `[ingest]`, run the CLI from another folder; then the CPU torch and the model
extras); these checks run in every CI run without building a wheel."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kinetics"
REPOSITORY_BLOB = "https://github.com/kinetics-tts/kinetics-tts/blob/main/"


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the `test` extra brings tomli
        tomllib = pytest.importorskip("tomli", reason="tomllib is in the standard library "
                                      "from 3.11; on 3.10 the `test` extra installs tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def pyproject():
    return _pyproject()


@pytest.fixture(scope="module")
def project(pyproject):
    return pyproject["project"]


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
    assert {"transformers", "jinja2", "math-verify", "huggingface-hub"} <= extras["ingest"]  # chat templates need jinja2
    assert "datasets" not in extras["ingest"]  # nothing `kinetics ingest` runs imports it
    assert {"transformers", "gguf", "accelerate", "math-verify", "datasets", "jinja2"} \
        <= extras["generate"]
    assert {"transformers", "gguf", "accelerate", "safetensors"} <= extras["quality"]
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


@pytest.fixture(scope="module")
def sdist_members(tmp_path_factory) -> list[str]:
    return _sdist_members(tmp_path_factory.mktemp("sdist"))


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


def test_sdist_has_no_run_records(sdist_members):
    members = sdist_members
    assert "benchmarks/baseline/gpu.json" in members and "tests/conftest.py" in members
    assert "tests/data/bench/grid-synthetic.json" in members
    assert not [m for m in members if m.startswith("benchmarks/results")]
    assert "benchmarks/gpu/constraints.txt" in members  # the GPU pins, not a record
    records = [m for m in members if m.startswith("benchmarks/")
               and m.endswith((".png", ".log", ".txt", ".json"))
               and not m.startswith("benchmarks/baseline/")
               and m != "benchmarks/gpu/constraints.txt"]
    assert records == []


def test_sdist_carries_every_package_data_file(sdist_members):
    missing = [f for f in _package_files() if f"kinetics/{f}" not in sdist_members]
    assert missing == []


# --- package data: every file under kinetics/data (and the schemas) ships ---------------

def _package_files() -> list[str]:
    """Non-Python files under kinetics/data and kinetics/schemas, relative to kinetics/."""
    return sorted(str(p.relative_to(PACKAGE)) for folder in ("data", "schemas")
                  for p in (PACKAGE / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def test_every_data_file_matches_the_package_data_patterns(pyproject):
    """setuptools ships kinetics/data/* only where [tool.setuptools.package-data] says so:
    a new data file (quality_prompt.txt was one) must not be left out of the wheel."""
    patterns = pyproject["tool"]["setuptools"]["package-data"]["kinetics"]
    shipped = {str(p.relative_to(PACKAGE)) for pattern in patterns
               for p in PACKAGE.glob(pattern) if p.is_file()}
    files = _package_files()
    assert "data/quality_prompt.txt" in files and "data/frontier_baseline.json" in files
    assert [f for f in files if f not in shipped] == []


def test_package_data_is_read_where_it_is_shipped():
    """Each read of package data in the code names a file under kinetics/data that exists."""
    uses = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        uses |= set(re.findall(r"data/([\w.-]+\.\w+)", text))
        if 'joinpath("data' in text or '/ "data" /' in text:
            uses |= set(re.findall(r'"data" / "?([\w.-]+\.\w+)', text))
    assert {"quality_prompt.txt", "frontier_baseline.json"} <= uses
    assert [name for name in uses if not (PACKAGE / "data" / name).is_file()
            and name.endswith((".txt", ".json", ".parquet"))
            and not (ROOT / name).exists()] == []


# --- one version ---------------------------------------------------------------------

def test_the_version_is_written_once(pyproject):
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kinetics.__version__"}
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    literal = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
               and isinstance(node.value, ast.Constant)]
    assert len(literal) == 1 and re.fullmatch(r"\d+\.\d+\.\d+\S*", literal[0])


def test_the_installed_version_is_the_package_version():
    from importlib import metadata

    import kinetics

    try:
        dist = metadata.distribution("kinetics-tts")
    except metadata.PackageNotFoundError:
        pytest.skip("kinetics-tts is not installed (a checkout on PYTHONPATH)")
    origin = dist.read_text("direct_url.json") or ""
    from_here = Path(kinetics.__file__).resolve() == Path(
        dist.locate_file("kinetics/__init__.py")).resolve() or ROOT.as_uri() in origin
    if not from_here:
        pytest.skip(f"the installed kinetics-tts is not this tree ({origin or dist.locate_file('')})")
    assert kinetics.__version__ == dist.version


# --- the README is the package index's page: links that work there -------------------

def test_readme_links_are_absolute_and_point_at_files_that_exist():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(\s*<?([^)\s>]+)", text)  # [text](target)
    targets += re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?\s*$", text, re.M)  # [ref]: target
    targets += re.findall(r"""(?:href|src)\s*=\s*["']([^"']+)""", text)  # HTML
    assert targets, "no links found: the regexes are wrong"
    relative = [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]
    assert relative == [], "relative links break on the package index page"
    missing = [t for t in targets if t.startswith(REPOSITORY_BLOB)
               and not (ROOT / t[len(REPOSITORY_BLOB):].split("#")[0]).exists()]
    assert missing == []


def test_readme_links_use_the_repository_url(project):
    assert REPOSITORY_BLOB.startswith(project["urls"]["Repository"].rstrip("/") + "/blob/")


# --- every third-party import is declared by the extra of the commands using it ------

# import name -> distribution name, where they differ
DISTRIBUTION = {"huggingface_hub": "huggingface-hub", "math_verify": "math-verify",
                "flashinfer": "flashinfer-python", "yaml": "pyyaml"}
# the modules each extra's commands import (function-level imports included)
EXTRA_MODULES = {
    "ingest": ["cli/ingest_cmd.py", "analysis/ingest.py", "analysis/answers.py"],
    "generate": ["cli/generate_cmd.py", "generation/*.py", "quality/load.py",
                 "analysis/answers.py", "model/checkpoint.py", "model/decoder.py",
                 "model/layer.py", "attention/cache.py", "attention/reference.py"],
    "quality": ["cli/quality_cmd.py", "quality/*.py"],
    "kernels": ["attention/kernels/*.py"],
    "gpu": ["attention/*.py", "attention/kernels/*.py", "bench/*.py", "model/*.py"],
}
NEVER_DECLARED = {"torch"}  # installed apart, CPU or CUDA build (README: torch first)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "kinetics"}


def _declared(requirements: list[str]) -> set[str]:
    return {name.replace("_", "-") for name in _names(requirements)}


def test_each_extra_declares_what_its_commands_import(project):
    core = _declared(project["dependencies"])
    extras = {name: _declared(reqs) for name, reqs in project["optional-dependencies"].items()}
    undeclared = {}
    for extra, globs in EXTRA_MODULES.items():
        for pattern in globs:
            for path in sorted(PACKAGE.glob(pattern)):
                for name in _imports(path) - NEVER_DECLARED:
                    dist = DISTRIBUTION.get(name, name).replace("_", "-")
                    if dist not in core | extras[extra]:
                        undeclared.setdefault(extra, set()).add(f"{dist} ({path.name})")
    assert undeclared == {}


def test_every_import_is_declared_somewhere(project):
    declared = _declared(project["dependencies"]).union(
        *(_declared(reqs) for reqs in project["optional-dependencies"].values()))
    undeclared = sorted({f"{DISTRIBUTION.get(n, n)} ({p.relative_to(ROOT)})"
                         for p in PACKAGE.rglob("*.py") for n in _imports(p) - NEVER_DECLARED
                         if DISTRIBUTION.get(n, n).replace("_", "-") not in declared})
    assert undeclared == []


# --- test what the classifiers claim -------------------------------------------------

def _versions(text: str) -> list[str]:
    return sorted(re.findall(r"3\.\d+", text), key=lambda v: tuple(map(int, v.split("."))))


def test_ci_tests_every_python_the_classifiers_claim(project):
    claimed = _versions(" ".join(c for c in project["classifiers"]
                                 if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)))
    assert project["requires-python"] == f">={claimed[0]}"
    matrix = re.search(r"python-version:\s*\[([^\]]*)\]",
                       (ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert matrix and _versions(matrix.group(1)) == claimed
    nox_matrix = re.search(r"^MATRIX_PYTHONS = \[([^\]]*)\]", (ROOT / "noxfile.py").read_text(),
                           re.M)
    assert nox_matrix and _versions(nox_matrix.group(1)) == [claimed[0], claimed[-1]]
