"""Writing the report's figures in other processes, while the analysis runs and the
tables are written.

Drawing dominates a report's time. :class:`FigureWriter` forks a figure process
before the report reads its table; it imports matplotlib and draws a small figure
(fonts and caches loaded once) while the analysis runs. The report then hands it
figures as soon as their data exist (accuracy_vs_cost as soon as the options are
averaged, the others once the frontiers are done): for each, the figure process
forks a drawing process that inherits the data (the analysis without its options
tables) and builds the figure once and saves it in every format, while the report
writes its tables. Where ``fork`` is not the safe default (macOS, Windows) or there
is only one usable CPU, the figures are drawn in the report's own process. The files
land in the caller's (temporary) folder; :mod:`kinetics.cli._output` moves them into
place.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Mapping
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

FIGURES: tuple[str, ...] = ("accuracy_vs_cost", "pareto_dense_vs_sparse", "optimal_model_size")
EARLY: tuple[str, ...] = ("accuracy_vs_cost",)  # needs the option means only
# zlib level 1 instead of Pillow's 6: a 200-dpi report PNG saves in a third of the time
# and is about 30% larger.
PNG_OPTIONS = {"compress_level": 1}

_JOB: dict[str, Any] = {}  # what a drawing process draws from (set before it forks)


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


def _warm_up() -> None:
    """Import matplotlib and draw a small figure in each default format, so that the
    drawing processes forked later inherit loaded fonts and caches."""
    import io

    import matplotlib.pyplot as plt

    from kinetics.analysis import plots

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1e14, 1e16], [0.1, 0.9], marker=".", label="warm-up")
    plots.finish_panel(ax, law="kinetics", xlabel="x", ylabel="y", title="t", hardware=None,
                       synthetic=True)
    for ext in ("png", "pdf"):
        fig.savefig(io.BytesIO(), format=ext, dpi=50)
    plt.close(fig)


def _drawing_process(name: str, errors) -> None:
    """Target of one drawing process: draw ``name``; on a failure put the exception on
    ``errors`` and exit 1. Ctrl-C is the report's; SIGTERM ends it at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        _draw(name)
    except BaseException as exc:  # noqa: BLE001 - handed to the report, raised there
        try:
            errors.put(exc)
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            errors.put(RuntimeError(f"{type(exc).__name__}: {exc}"))
        os._exit(1)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # unwinds _serve, whose `finally` ends the drawing processes


def _serve(conn) -> None:
    """The figure process. Receives (names, job, last) messages; for each name forks a
    drawing process with ``job``; reports ("done", name) as each ends, then ("end",
    None) after the last message's figures, or ("error", exception) on a failure."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _warm_up()
    context = multiprocessing.get_context("fork")
    errors = context.SimpleQueue()
    running: dict[int, tuple[Any, str]] = {}  # sentinel -> (process, figure)
    last = False
    try:
        while not (last and not running):
            for ready in wait([conn, *running]):
                if ready is conn:
                    try:
                        names, job, last = conn.recv()
                    except EOFError:  # the report ended before it sent every figure
                        return
                    _JOB.clear()
                    _JOB.update(job)
                    for name in names:
                        process = context.Process(target=_drawing_process, args=(name, errors),
                                                  daemon=True)
                        process.start()
                        running[process.sentinel] = (process, name)
                    continue
                process, name = running.pop(ready)
                process.join()
                if process.exitcode:
                    conn.send(("error", errors.get() if not errors.empty() else RuntimeError(
                        f"drawing {name} ended with exit code {process.exitcode}")))
                    return
                conn.send(("done", name))
        conn.send(("end", None))
    finally:
        for process, _name in running.values():
            process.terminate()
            process.join()


class FigureWriter:
    """The report's figures: start it before the analysis, :meth:`draw` figures as their
    data exist, :meth:`finish` to wait for them, and :meth:`close` in a ``finally`` (it
    ends the drawing processes of an interrupted run)."""

    def __init__(self) -> None:
        self._process = self._conn = None
        self._finished = False
        self._drawn: list[str] = []  # drawn here (no figure process), to tick in finish
        if parallel():
            context = multiprocessing.get_context("fork")
            self._conn, child = context.Pipe()
            self._process = context.Process(target=_serve, args=(child,), daemon=False)
            self._process.start()
            child.close()

    def draw(self, names: tuple[str, ...], folder: Path, analysis, models: Mapping, *,
             synthetic: bool, hardware, formats: list[str], dpi: int, last: bool) -> None:
        """Start drawing ``names`` into ``folder`` (here, at once, without a figure
        process); ``last`` for the final call. The figures read the analysis's means and
        frontiers, never its options tables, which are left out."""
        job = {"folder": Path(folder), "models": dict(models), "synthetic": synthetic,
               "hardware": hardware, "formats": list(formats), "dpi": dpi,
               "analysis": dataclasses.replace(analysis, options={})}
        if self._process is not None:
            self._conn.send((tuple(names), job, last))
            return
        _JOB.update(job)
        try:
            self._drawn += [_draw(name) for name in names]
        finally:
            _JOB.clear()

    def finish(self, tick: Callable[[str], None] = lambda label: None,
               background: Callable[[], None] | None = None) -> None:
        """Run ``background()`` (e.g. writing the tables), then wait for every figure,
        ``tick(name)`` as each is written; a drawing process's exception is raised here."""
        if background:
            background()
        if self._process is None:
            for name in self._drawn:
                tick(name)
            return
        while True:
            kind, value = self._conn.recv()
            if kind == "end":
                self._finished = True
                return
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
        # closing our end first: the figure process sees EOF and returns even when the
        # SIGTERM came before its handler existed (a signal in the fork window is lost)
        self._conn.close()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = None
