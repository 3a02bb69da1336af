"""Writing the report's figures: each figure built once, saved in every format, in its
own forked process.

Drawing dominates a report's time, so each figure goes to a worker process forked
after the analysis (it inherits the analysis without pickling): one per figure, as
long as there are at least two CPUs (the operating system shares them; the caller
writes its tables meanwhile). Where ``fork`` is not the safe default (macOS, Windows)
or only one CPU is available, the figures are drawn one after another in this
process. The files land in the caller's (temporary) folder;
:mod:`kinetics.cli._output` moves them into place.
"""

from __future__ import annotations

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

_JOB: dict[str, Any] = {}  # what the forked workers draw from (set before forking)


def _build(name: str):
    from kinetics.analysis import plots

    job = _JOB
    style = {"synthetic": job["synthetic"], "hardware": job["hardware"]}
    if name == "pareto_dense_vs_sparse":
        return plots.pareto_dense_vs_sparse(job["analysis"], **style)
    return getattr(plots, name)(job["analysis"], job["models"], **style)


def _draw(name: str) -> str:
    """Build figure ``name`` once and save it in each of the job's formats."""
    import matplotlib.pyplot as plt

    fig = _build(name)
    for i, ext in enumerate(_JOB["formats"]):
        options = {"pil_kwargs": PNG_OPTIONS} if ext == "png" else {}
        fig.savefig(_JOB["folder"] / f"{name}.{ext}", dpi=_JOB["dpi"], **options)
        if i == 0:  # the layout is fixed: nothing to recompute for the next format
            fig.set_layout_engine("none")
    plt.close(fig)
    return name


def workers(tasks: int) -> int:
    """Processes to draw ``tasks`` figures with: one each given two or more usable CPUs;
    1 (draw here) with one CPU or where forking is not safe."""
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return tasks if (cpus or 1) >= 2 else 1


def _quiet_worker() -> None:
    """A worker leaves signals to the parent: Ctrl-C and SIGTERM end it at once (the
    parent unwinds and terminates the pool), never with a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def write_figures(folder: Path, analysis, models: Mapping, *, synthetic: bool, hardware,
                  formats: list[str], dpi: int,
                  tick: Callable[[str], None] = lambda label: None,
                  background: Callable[[], None] | None = None) -> None:
    """Every figure in every format into ``folder``; ``tick(name)`` once a figure is
    written; ``background()`` (e.g. writing the tables) runs here while the workers draw.
    A worker's exception is raised here."""
    _JOB.update(folder=Path(folder), analysis=analysis, models=models, synthetic=synthetic,
                hardware=hardware, dpi=dpi, formats=list(formats))
    import kinetics.analysis.plots  # noqa: F401  (matplotlib once, here, not in every worker)

    try:
        count = workers(len(FIGURES))
        if count == 1:
            if background:
                background()
            for name in FIGURES:
                tick(_draw(name))
            return
        with multiprocessing.get_context("fork").Pool(count, initializer=_quiet_worker) as pool:
            results = pool.imap_unordered(_draw, FIGURES)
            if background:
                background()
            for name in results:
                tick(name)
    finally:
        _JOB.clear()
