"""Writing the report's figures in other processes, while the analysis runs and the
tables are written.

Drawing dominates a report's time. :class:`FigureWriter` forks a process before the
analysis starts; it imports matplotlib while the analysis runs here, receives what
the figures need (the analysis without its options tables: a small pickle) and draws
each figure in a process of its own, built once and saved in every format, while
this process writes the tables. Where ``fork`` is not the safe default (macOS,
Windows) or there is only one usable CPU, the figures are drawn here, one after
another. The files land in the caller's (temporary) folder;
:mod:`kinetics.cli._output` moves them into place.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

FIGURES: tuple[str, ...] = ("accuracy_vs_cost", "pareto_dense_vs_sparse", "optimal_model_size")
# zlib level 1 instead of Pillow's 6: a 200-dpi report PNG saves in a third of the time
# and is about 30% larger.
PNG_OPTIONS = {"compress_level": 1}

_JOB: dict[str, Any] = {}  # what the drawing processes draw from (set before they fork)


def _draw(name: str) -> str:
    """Build figure ``name`` once and save it in each of the job's formats."""
    import matplotlib.pyplot as plt

    from kinetics.analysis import plots

    job = _JOB
    style = {"synthetic": job["synthetic"], "hardware": job["hardware"]}
    if name == "pareto_dense_vs_sparse":
        fig = plots.pareto_dense_vs_sparse(job["analysis"], **style)
    else:
        fig = getattr(plots, name)(job["analysis"], job["models"], **style)
    for ext in job["formats"]:
        options = {"pil_kwargs": PNG_OPTIONS} if ext == "png" else {}
        fig.savefig(job["folder"] / f"{name}.{ext}", dpi=job["dpi"], **options)
    plt.close(fig)
    return name


def parallel() -> bool:
    """Whether figures are drawn in forked processes: Linux with two or more usable CPUs."""
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cpus or 1) >= 2


def _quiet_worker() -> None:
    """A drawing process leaves Ctrl-C to the report (which then ends it) and dies at
    once on SIGTERM, never with a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # unwinds the pool's `with`, which ends its workers


def _serve(conn) -> None:
    """The forked figure process: import matplotlib, wait for the job, draw every figure
    in its own worker, report each one ("done", name), then ("end", None), or
    ("error", exception) on a failure."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    import kinetics.analysis.plots  # noqa: F401  (once, before the workers fork)

    try:
        job = conn.recv()
    except EOFError:  # the report ended before the analysis did
        return
    _JOB.update(job)
    try:
        with multiprocessing.get_context("fork").Pool(len(FIGURES),
                                                      initializer=_quiet_worker) as pool:
            for name in pool.imap_unordered(_draw, FIGURES):
                conn.send(("done", name))
        conn.send(("end", None))
    except Exception as exc:  # noqa: BLE001 - reported to the report process, raised there
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


class FigureWriter:
    """The report's figures: start it before the analysis, :meth:`write` after it, and
    :meth:`close` in a ``finally`` (it ends the drawing processes of an interrupted run)."""

    def __init__(self) -> None:
        self._process = self._conn = None
        self._finished = False
        if parallel():
            context = multiprocessing.get_context("fork")
            self._conn, child = context.Pipe()
            self._process = context.Process(target=_serve, args=(child,), daemon=False)
            self._process.start()
            child.close()

    def write(self, folder: Path, analysis, models: Mapping, *, synthetic: bool, hardware,
              formats: list[str], dpi: int, tick: Callable[[str], None] = lambda label: None,
              background: Callable[[], None] | None = None) -> None:
        """Every figure in every format into ``folder``; ``tick(name)`` once a figure is
        written; ``background()`` (e.g. writing the tables) runs here meanwhile. A
        drawing process's exception is raised here."""
        job = {"folder": Path(folder), "models": dict(models), "synthetic": synthetic,
               "hardware": hardware, "formats": list(formats), "dpi": dpi,
               # the figures read the means, never the options tables: leave those out
               "analysis": dataclasses.replace(analysis, options={})}
        if self._process is None:
            if background:
                background()
            _JOB.update(job)
            try:
                for name in FIGURES:
                    tick(_draw(name))
            finally:
                _JOB.clear()
            return
        self._conn.send(job)
        if background:
            background()
        while True:
            kind, value = self._conn.recv()
            if kind == "end":
                self._finished = True
                break
            if kind == "error":
                raise value
            tick(value)

    def close(self) -> None:
        """Wait for the figure process, or end it at once if it has not finished (an
        error or an interrupt before the figures were written)."""
        if self._process is None:
            return
        if not self._finished:
            self._process.terminate()
        self._process.join()
        self._conn.close()
        self._process = None
