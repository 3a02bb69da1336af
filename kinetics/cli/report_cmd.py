"""``kinetics report``: trial table -> frontiers, summary.json and plots in one folder.

Everything is written into a temporary folder beside ``--out`` and moved into place
at the end, so an error leaves no half-written report; ``--out`` may replace only an
empty folder or an earlier report (see :mod:`kinetics.cli._output`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from kinetics.cli._args import (
    add_hardware,
    add_model_config,
    add_param_count,
    model_configs,
    positive_ints,
    progress,
)
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

SYNTHETIC_NOTE = ("NOTE: SYNTHETIC data (the embedded seeded demo set, not real traces); "
                  "numbers show the pipeline, not the paper's findings.")


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
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.add_argument("--formats", default="png,svg,pdf", metavar="EXT,..",
                        help="figure formats to write (any of png, svg, pdf)")
    parser.add_argument("--dpi", type=int, default=110, help="resolution of the PNG figures")
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


def _terminal_table(summary: Summary, hardware: Hardware | None) -> str:
    """One line per (law, strategy, budget): dense accuracy and optimal model, sparse accuracy
    (the single-choice frontier); the budget also in seconds at the hardware's peak FLOP/s
    when there is a hardware preset."""
    cells: dict[tuple, dict[str, SummaryEntry]] = {}
    for e in summary.entries:
        cells.setdefault((e.law, e.strategy, e.budget_eflops), {})[e.method] = e
    seconds = f"{hardware.name.upper() + ' s':>7} " if hardware else ""
    lines = [f"{'law':8} {'strategy':9} {'eFLOPs':>8} {seconds} {'dense':>5} "
             f"{'optimal (dense)':16} {'topk':>5} {'blocktopk':>9} {'optimal (blocktopk)':19}"]
    for (law, strategy, budget), row in cells.items():
        def acc(method: str, row: dict = row) -> str:
            return f"{row[method].accuracy:.3f}" if method in row else "  -"

        def opt(method: str, row: dict = row) -> str:
            return (row[method].optimal_model or "-") if method in row else "-"

        secs = f"{budget / hardware.peak_flops_per_s:7.3f} " if hardware else ""
        lines.append(f"{law:8} {strategy:9} {budget:8.1e} {secs} {acc('dense'):>5} "
                     f"{opt('dense'):16} {acc('topk'):>5} {acc('blocktopk'):>9} "
                     f"{opt('blocktopk'):19}")
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


def _write_report(tmp: Path, analysis, summary: Summary, models, *, synthetic: bool,
                  preset: Hardware | None, formats: list[str], dpi: int, tick) -> None:
    """Every report file into the (temporary) folder ``tmp``; no figures without ``formats``."""
    analysis.frontier.assign(synthetic=synthetic).to_csv(tmp / "frontier.csv", index=False)
    analysis.pareto.to_csv(tmp / "pareto.csv", index=False)
    bon = analysis.options["best_of_n"]
    (bon.groupby(["model", "method", "config", "n"], sort=False)
     [["coverage", "majority", "compute_flops", "memory_bytes"]].mean().reset_index()
     .to_csv(tmp / "best_of_n.csv", index=False))
    lc = analysis.options["long_cot"]
    (lc.groupby(["model", "method", "config", "gen_budget"], sort=False)
     [["accuracy", "compute_flops", "memory_bytes"]].mean().reset_index()
     .to_csv(tmp / "long_cot.csv", index=False))
    (tmp / "summary.json").write_text(dumps_json(summary.to_json(), indent=2) + "\n")
    tick("tables")
    if formats:
        import matplotlib.pyplot as plt

        from kinetics.analysis import plots

        style = {"synthetic": synthetic, "hardware": preset}
        figures = {
            "accuracy_vs_cost": plots.accuracy_vs_cost(analysis, models, **style),
            "pareto_dense_vs_sparse": plots.pareto_dense_vs_sparse(analysis, **style),
            "optimal_model_size": plots.optimal_model_size(analysis, models, **style),
        }
        for name, fig in figures.items():
            for i, ext in enumerate(formats):
                fig.savefig(tmp / f"{name}.{ext}", dpi=dpi)
                if i == 0:  # keep the layout just computed: ~30% faster further saves
                    fig.set_layout_engine("none")
            plt.close(fig)
            tick(name)
    if synthetic:
        (tmp / "SYNTHETIC.txt").write_text(SYNTHETIC_NOTE + "\n")


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
    intensity = resolve_intensity(args.hardware, args.intensity)
    hardware = None if args.intensity is not None else args.hardware
    preset = get_hardware(hardware) if hardware else None
    formats = [] if args.no_plots else parse_formats(args.formats)
    if args.dpi < 10:
        raise InputError(f"--dpi must be at least 10, got {args.dpi}")
    out = check_output_folder(args.out)  # refuse a user's folder before any work
    refuse_output_over_inputs(args.out, [args.trials, *configs.values()])

    # Validate the input before the progress bar starts, so an error prints alone.
    trials, synthetic = load_trials(args.trials)
    source = EMBEDDED_SOURCE if args.trials is None else str(args.trials)
    models = resolve_models(trials, configs, source, args.param_count)

    steps = 4 + 2 * 3 + (0 if args.no_plots else 3)
    bar = progress(total=steps, desc="kinetics report", unit="step", quiet=args.quiet)

    def tick(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    try:
        with staged_folder(out) as tmp:
            tick("load")
            analysis = analyze(trials, models, intensity, gen_budgets=gen_budgets,
                               grid_points=args.grid_points, smooth=args.smooth,
                               tick=tick)
            summary = build_summary(trials, intensity, hardware=hardware, synthetic=synthetic,
                                    source=source, model_configs=configs,
                                    param_count=args.param_count,
                                    options=analysis.options, models=models)
            tick("summary")
            _write_report(tmp, analysis, summary, models, synthetic=synthetic,
                          preset=preset, formats=formats, dpi=args.dpi,
                          tick=tick)
    finally:
        bar.close()

    if args.json:
        print(dumps_json(summary.to_json()))
        return 0
    if synthetic:
        print(SYNTHETIC_NOTE)
    print(f"trials: {source} ({len(trials)} rows); I = {intensity:g} FLOPs/byte"
          + (f" ({hardware})" if hardware else "") + f"; {args.param_count} parameter counts")
    note = _uneven_note(trials)
    if note:
        print(note)
    print(_terminal_table(summary, preset))
    print(f"wrote {args.out}/: frontier.csv, pareto.csv, best_of_n.csv, long_cot.csv, summary.json"
          + ("" if args.no_plots else f", 3 plots ({', '.join(f.upper() for f in formats)})"))
    return 0
