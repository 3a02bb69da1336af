"""``kinetics report``: trial table -> frontiers, summary.json and plots in one folder.

Everything is written into a temporary folder beside ``--out`` and moved into place
at the end, so an error leaves no half-written report; ``--out`` may replace only an
empty folder or an earlier report (see :mod:`kinetics.cli._output`).
"""

from __future__ import annotations

import argparse
import functools
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kinetics.cli._args import (
    add_cost_settings,
    add_hardware,
    add_model_config,
    add_param_count,
    cost_settings,
    model_configs,
    positive_ints,
    progress,
    run_provenance,
)
from kinetics.cli._figures import EARLY, FIGURES, FigureWriter
from kinetics.cli._output import (
    check_output_folder,
    dumps_json,
    refuse_output_over_inputs,
    staged_folder,
)
from kinetics.errors import InputError
from kinetics.hardware import Hardware, get_hardware, resolve_intensity

if TYPE_CHECKING:
    from kinetics.analysis.report import Summary, SummaryEntry

SYNTHETIC_NOTE = ("NOTE: SYNTHETIC data (the embedded seeded demo set, not real traces): "
                  "the numbers show the pipeline, not the paper's findings.")
WIDTH = 80  # the terminal output fits an 80-column terminal


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Without --trials, runs on the embedded SYNTHETIC trial table. "
                     "Example: kinetics report --trials trials.parquet --hardware h100 --out rep")
    parser.add_argument("--trials", metavar="PATH",
                        help="trial table (.csv, .jsonl, .parquet); default: embedded synthetic set")
    add_hardware(parser)
    parser.add_argument("--out", default="kinetics-report", metavar="DIR",
                        help="output folder: a new or empty one, or an earlier report "
                        "(anything else is refused, never overwritten)")
    add_model_config(parser)
    # defaults named, not imported: kinetics.analysis.strategies/frontier import pandas, and
    # --help must not (tests/cli/test_import_light.py checks these names match)
    parser.add_argument("--gen-budgets", metavar="T1,T2,..",
                        help="long-CoT generation budgets, tokens (default: the paper's "
                        "2048,3072,4096,6144,8192,12288,16384,24576,32768)")
    parser.add_argument("--grid-points", type=int, metavar="G",
                        help="log-spaced budgets in each frontier grid (default: 100)")
    parser.add_argument("--smooth", type=int, default=1, metavar="W",
                        help="centred moving average of odd width W over the grid for the "
                        "frontier curves (frontier.csv, plots; the paper plots W = 3); "
                        "1 = off; summary.json is never smoothed")
    add_param_count(parser)
    add_cost_settings(parser)
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.add_argument("--formats", default="png,pdf", metavar="EXT,..",
                        help="figure formats to write (any of png, svg, pdf)")
    parser.add_argument("--dpi", type=int, default=200, help="resolution of the PNG figures")
    parser.add_argument("--json", action="store_true",
                        help="print summary.json to stdout instead of the table (the folder "
                        "is still written)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (there is none anyway when stderr is not a terminal)")


FIGURE_FORMATS = ("png", "svg", "pdf")


def parse_formats(text: str) -> list[str]:
    """'png,pdf' -> ['png', 'pdf'] (InputError on an unknown or empty list)."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown or not formats:
        raise InputError(f"--formats takes some of {', '.join(FIGURE_FORMATS)}, got {text!r}")
    return formats


def _short_names(names: list[str], room: int) -> tuple[dict[str, str], str]:
    """Model names that fit ``room`` characters: unchanged when they do, else without the
    prefix up to a '-' that they all share ('qwen3-235b-a22b' -> '235b-a22b'), and what
    still does not fit cut with '…'; returns (names, the prefix cut)."""
    if max(map(len, names), default=0) <= room:
        return {n: n for n in names}, ""
    prefix = ""
    if len(names) > 1:
        first, last = min(names), max(names)
        common = first[:next((i for i, (a, b) in enumerate(zip(first, last, strict=False))
                              if a != b), min(len(first), len(last)))]
        prefix = common[:common.rfind("-") + 1]
    short = {n: n[len(prefix):] for n in names}
    return {n: s if len(s) <= room else s[:room - 1] + "…" for n, s in short.items()}, prefix


def _terminal_table(summary: Summary, hardware: Hardware | None) -> str:
    """One block per (strategy, law), one line per summary budget: each method's frontier
    accuracy and optimal model ('-' where nothing fits), and the budget in seconds on the
    hardware preset (eFLOPs / peak FLOP/s); at most WIDTH columns."""
    from kinetics.analysis.labels import (
        LAW_TITLES,
        LAW_UNITS,
        METHOD_NAMES,
        STRATEGY_NAMES,
        format_intensity,
    )

    blocks: dict[tuple[str, str], dict[float, dict[str, SummaryEntry]]] = {}
    for e in summary.entries:
        blocks.setdefault((e.strategy, e.law), {}).setdefault(e.budget_eflops, {})[e.method] = e
    methods = [m for m in METHOD_NAMES if any(e.method == m for e in summary.entries)]
    lead = 18 if hardware else 10  # the budget (and seconds) columns
    room = (WIDTH - lead) // max(len(methods), 1) - 8  # "  0.123 " then the model
    names, prefix = _short_names(sorted({e.optimal_model for e in summary.entries
                                         if e.optimal_model}), room)
    width = max([len(n) for n in names.values()] + [5])
    cell = 8 + width
    lines = [_wrap("Frontier accuracy (fraction of queries solved; one model and config per "
                   "budget) and its optimal model" + (f" (names without '{prefix}')" if prefix
                                                      else "") + "; '-': nothing fits.")]
    seconds = f"{hardware.name.upper() + ' s':>8}" if hardware else ""
    for (strategy, law), rows in blocks.items():
        title = LAW_TITLES[law].format(I=format_intensity(summary.intensity))
        note = "" if law == "kinetics" or not hardware else "; seconds count compute only"
        lines += ["", f"{STRATEGY_NAMES[strategy]}, {title}{note}",
                  f"{'budget':>9} {seconds}" + "".join(f"  {METHOD_NAMES[m]:{cell - 2}}"
                                                        for m in methods).rstrip(),
                  f"{LAW_UNITS[law]:>9} {' ' * len(seconds)}"
                  + "".join(f"  {'acc':>5} {'model':{width}}" for _ in methods).rstrip()]
        for budget, row in rows.items():
            secs = f"{budget / hardware.peak_flops_per_s:8.3g}" if hardware else ""
            cells = []
            for m in methods:
                e = row.get(m)
                if e is None or e.optimal_model is None:
                    cells.append(f"  {'-':>5} {'-':{width}}")
                else:
                    cells.append(f"  {e.accuracy:5.3f} {names[e.optimal_model]:{width}}")
            lines.append(f"{budget:9.1e} {secs}" + "".join(cells).rstrip())
    return "\n".join(lines)


def _uneven_note(trials) -> str:
    """One line naming the (model, config) pairs whose queries have unequal sample counts
    (Best-of-N stops at the fewest there); empty when every query has as many."""
    from kinetics.analysis.strategies import max_samples

    limits = max_samples(trials)
    uneven = limits[limits["fewest"] < limits["most"]]
    if uneven.empty:
        return ""
    shown = ", ".join(f"{r.model} {r.config}: N <= {r.fewest} ({r.most} at most)"
                      for r in uneven.head(3).itertuples())
    return (f"note: uneven samples per query; Best-of-N stops at the fewest a query of the "
            f"pair has: {shown}" + (", ..." if len(uneven) > 3 else ""))


def _wrap(text: str) -> str:
    """Prose wrapped to WIDTH columns, continuation lines indented."""
    return textwrap.fill(text, WIDTH, subsequent_indent="  ", break_on_hyphens=False)


def summary_record(summary: Summary, provenance: dict) -> dict:
    """summary.json's object (also ``--json``'s): :meth:`Summary.to_json` and this run's
    ``provenance`` (kinetics/schemas/summary.schema.json)."""
    return {**summary.to_json(), "provenance": provenance}


def _write_report(tmp: Path, analysis, summary: dict, *, synthetic: bool, tick,
                  figures: FigureWriter | None, draw: Callable[..., None]) -> None:
    """Every report file into the (temporary) folder ``tmp``: the figures not drawn yet
    (by ``draw``), the tables meanwhile, then wait for ``figures``. ``summary``: the
    summary.json object (:func:`summary_record`)."""
    tables = functools.partial(_write_tables, tmp, analysis, summary, synthetic, tick)
    if figures is None:
        tables()
    else:
        draw(tuple(n for n in FIGURES if n not in EARLY), analysis, last=True)
        figures.finish(tick, background=tables)
    if synthetic:
        (tmp / "SYNTHETIC.txt").write_text(SYNTHETIC_NOTE + "\n")


def _write_tables(tmp: Path, analysis, summary: dict, synthetic: bool, tick) -> None:
    """frontier.csv, pareto.csv, best_of_n.csv, long_cot.csv and summary.json."""
    analysis.frontier.assign(synthetic=synthetic).to_csv(tmp / "frontier.csv", index=False)
    analysis.pareto.to_csv(tmp / "pareto.csv", index=False)
    from kinetics.analysis.report import best_of_n_table, long_cot_table

    best_of_n_table(analysis).to_csv(tmp / "best_of_n.csv", index=False)
    long_cot_table(analysis).to_csv(tmp / "long_cot.csv", index=False)
    (tmp / "summary.json").write_text(dumps_json(summary, indent=2) + "\n")
    tick("tables")


def _draw_figures(figures: FigureWriter | None, folder: Path, models, names, analysis, *,
                  last: bool, **style) -> None:
    """Hand ``names`` to ``figures`` (nothing without figures: --no-plots)."""
    if figures is not None:
        figures.draw(names, folder, analysis, models, last=last, **style)


def run(args: argparse.Namespace) -> int:
    from kinetics.analysis.frontier import GRID_POINTS
    from kinetics.analysis.report import analyze, build_summary
    from kinetics.analysis.strategies import DEFAULT_GEN_BUDGETS
    from kinetics.analysis.trials import EMBEDDED_SOURCE, load_trials, resolve_models

    configs = model_configs(args.model_config)
    gen_budgets = (list(DEFAULT_GEN_BUDGETS) if args.gen_budgets is None
                   else positive_ints(args.gen_budgets, "--gen-budgets"))
    if args.grid_points is None:
        args.grid_points = GRID_POINTS
    if args.grid_points < 2:
        raise InputError("--grid-points must be at least 2")
    if args.smooth < 1 or args.smooth % 2 == 0:
        raise InputError(f"--smooth takes an odd width >= 1, got {args.smooth}")
    settings = cost_settings(args.kv_dtype, args.weight_dtype, args.batch_size)
    intensity = resolve_intensity(args.hardware, args.intensity)
    hardware = None if args.intensity is not None else args.hardware
    preset = get_hardware(hardware) if hardware else None
    formats = [] if args.no_plots else parse_formats(args.formats)
    if args.dpi < 10:
        raise InputError(f"--dpi must be at least 10, got {args.dpi}")
    out = check_output_folder(args.out)  # refuse a user's folder before any work
    refuse_output_over_inputs(args.out, [args.trials, *configs.values()])
    # forked before the table is read (it stays small) to import matplotlib meanwhile
    figures = FigureWriter() if formats else None
    try:
        # Validate the input before the progress bar starts, so an error prints alone.
        trials, synthetic = load_trials(args.trials)
        source = EMBEDDED_SOURCE if args.trials is None else str(args.trials)
        models = resolve_models(trials, configs, source, args.param_count)
        steps = 4 + 2 * 3 + (0 if args.no_plots else 3)
        with progress(total=steps, desc="kinetics report", unit="step",
                      quiet=args.quiet) as bar:
            def tick(label: str) -> None:
                bar.set_postfix_str(label, refresh=False)
                bar.update(1)

            with staged_folder(out) as tmp:
                tick("load")
                draw = functools.partial(_draw_figures, figures, tmp, models,
                                         synthetic=synthetic, hardware=preset,
                                         formats=formats, dpi=args.dpi)
                analysis = analyze(trials, models, intensity, gen_budgets=gen_budgets,
                                   grid_points=args.grid_points, smooth=args.smooth,
                                   tick=tick, settings=settings, hardware=preset,
                                   early=lambda part: draw(EARLY, part, last=False))
                summary = build_summary(trials, intensity, hardware=hardware,
                                        synthetic=synthetic, source=source,
                                        model_configs=configs, param_count=args.param_count,
                                        options=analysis.options, models=models,
                                        settings=settings)
                tick("summary")
                record = summary_record(summary, run_provenance(args))
                _write_report(tmp, analysis, record, synthetic=synthetic, tick=tick,
                              figures=figures, draw=draw)
    finally:
        if figures is not None:
            figures.close()

    if args.json:
        print(dumps_json(record))
        return 0
    if synthetic:
        print(_wrap(SYNTHETIC_NOTE))
    print(_wrap(f"trials: {source} ({len(trials)} rows)"))
    weights = (f", weights {settings.weight_dtype} over batch {settings.batch_size}"
               if settings.batch_size else "")
    print(_wrap(f"I = {intensity:g} FLOPs/byte" + (f" ({hardware})" if hardware else "")
                + f"; {args.param_count} parameter counts; KV {settings.kv_dtype}{weights}"))
    note = _uneven_note(trials)
    if note:
        print(_wrap(note))
    print()
    print(_terminal_table(summary, preset))
    print()
    print(_wrap(f"wrote {args.out}/: frontier.csv, pareto.csv, best_of_n.csv, long_cot.csv, "
                "summary.json" + ("" if args.no_plots else
                                  f", 3 figures ({', '.join(f.upper() for f in formats)})")))
    return 0
