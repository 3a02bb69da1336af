"""nox sessions: tests (CI), gpu, bench, lint, asv. See README "Benchmarks and regressions"."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

# The CPU build of torch that lies on this machine's disk; a bare `torch` would
# pull a multi-GB CUDA wheel into every venv.
CPU_TORCH = "torch==2.13.0"


def _install(session: nox.Session, *extras: str) -> None:
    session.install(CPU_TORCH)
    session.install("-e", f".[{','.join(('test',) + extras)}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The CPU suite (what .ci/run runs) and the frontier regression gate."""
    _install(session, "ingest", "kernels")
    session.run("pytest", "-m", "not gpu", "-q", *session.posargs)
    if os.path.exists("benchmarks/baseline/frontier.json"):
        session.run("kinetics", "check", "--baseline", "benchmarks/baseline/frontier.json")


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """GPU correctness tests and gated GPU benchmarks, on the installed python.

    Runs without a venv, because the GPU machine has no network: the python there
    must already hold torch, triton and flashinfer (carry wheels, see README). The
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
                    "--json-out", f"{out}/gpu-gate.json")
    except CommandFailed:
        failed.append("GPU gate")
    if failed:
        session.error(f"failed: {', '.join(failed)}")


@nox.session
def bench(session: nox.Session) -> None:
    """pytest-benchmark CPU suite (cost model, frontier); JSON under .benchmarks/."""
    _install(session)
    session.run("pytest", "benchmarks/pytest", "-m", "not gpu", "--benchmark-enable",
                "--benchmark-only", "--benchmark-autosave", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check over the package, tests, benchmarks and scripts."""
    session.install("ruff")
    session.run("ruff", "check", "kinetics", "tests", "benchmarks", "scripts", "noxfile.py")


@nox.session
def asv(session: nox.Session) -> None:
    """asv run for the current commit, then asv publish (HTML under .asv/html)."""
    session.install("asv", "virtualenv")
    session.run("asv", "machine", "--yes")
    session.run("asv", "run", "--show-stderr", "HEAD^!", *session.posargs)
    session.run("asv", "publish")
