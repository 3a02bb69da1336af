"""``kinetics check``: gate CI on the frontier numbers.

Exit 0 when every number is within tolerance of the baseline, 1 with a table of
what moved, 2 on bad input. ``--update`` rewrites the baseline deliberately, with this
run's provenance; a check first prints one line with the baseline's provenance (or that
it has none: a baseline written before provenance existed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kinetics.cli._args import (
    add_cost_settings,
    add_hardware,
    add_model_config,
    add_param_count,
    cost_settings,
    finite_float,
    model_configs,
    run_provenance,
)
from kinetics.cli._output import refuse_output_over_inputs, write_json_file
from kinetics.hardware import resolve_intensity
from kinetics.jsonfile import read_json_object
from kinetics.provenance import describe_provenance

# The gate baseline for the embedded data ships inside the package, so a bare
# `kinetics check` works from an installed wheel; in a checkout this is the file that
# CI gates on and `kinetics check --update` rewrites.
PACKAGED_BASELINE = Path(__file__).resolve().parents[1] / "data" / "frontier_baseline.json"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "The baseline's own hardware/intensity, parameter count and cost settings (KV and "
        "weight dtypes, batch size) are used unless --hardware, --intensity, --param-count, "
        "--kv-dtype, --weight-dtype or --batch-size is given. Update a baseline on purpose with --update and commit the diff."
    )
    parser.add_argument("--baseline", metavar="PATH",
                        help="stored summary.json to compare with (default: the embedded "
                        "data's baseline shipped in the package, kinetics/data/"
                        f"{PACKAGED_BASELINE.name})")
    parser.add_argument("--trials", metavar="PATH",
                        help="trial table (CSV, JSONL or Parquet); default: the embedded set")
    parser.add_argument("--tolerance", type=finite_float, default=0.005,
                        help="largest accepted absolute change in accuracy (fraction)")
    add_hardware(parser, default=None)
    add_model_config(parser, "; as given to kinetics report")
    add_param_count(parser, default=None)
    add_cost_settings(parser, baseline=True)
    parser.add_argument("--update", action="store_true",
                        help="rewrite the baseline with the recomputed summary and exit 0")


def _read_baseline(path: Path) -> dict:
    from kinetics.analysis.regression import validate_summary

    data = read_json_object(path, missing_hint=" (create one with --update)")
    return validate_summary(data, str(path))


def _settings(args: argparse.Namespace, baseline: dict):
    """The cost settings: each flag given, else the baseline's, else the default. A
    --batch-size or --weight-dtype flag replaces the baseline's pair as a whole."""
    if args.batch_size is None and args.weight_dtype is None:
        weight, batch = baseline.get("weight_dtype"), baseline.get("batch_size")
    else:
        weight, batch = args.weight_dtype, args.batch_size
    return cost_settings(args.kv_dtype or baseline.get("kv_dtype"), weight, batch)


def run(args: argparse.Namespace) -> int:
    from kinetics.analysis.regression import compare_summaries
    from kinetics.analysis.report import build_summary
    from kinetics.analysis.trials import load_trials

    configs = model_configs(args.model_config)
    path = Path(args.baseline) if args.baseline else PACKAGED_BASELINE
    if args.update:  # the baseline is rewritten by intent; what the run reads never is
        refuse_output_over_inputs(path, [args.trials, *configs.values()], flag="--baseline")
    baseline = None if args.update and not path.exists() else _read_baseline(path)
    hardware, intensity = args.hardware, args.intensity
    if hardware is None and intensity is None and baseline is not None:
        hardware, intensity = baseline.get("hardware"), baseline.get("intensity")
        if hardware is not None:
            intensity = None
    intensity_value = resolve_intensity(hardware, intensity)
    param_count = args.param_count or (baseline or {}).get("param_count", "published")
    settings = _settings(args, baseline or {})
    trials, synthetic = load_trials(args.trials)
    current = build_summary(trials, intensity_value, hardware=hardware if intensity is None else None,
                            synthetic=synthetic, source=args.trials or "embedded",
                            model_configs=configs, param_count=param_count,
                            settings=settings).to_json()
    if args.update:
        current["provenance"] = run_provenance(args)
        write_json_file(path, current, indent=1, sort_keys=True)
        print(f"kinetics check: wrote {len(current['entries'])} entries to {path}")
        return 0
    print(f"kinetics check: {describe_provenance(baseline.get('provenance'))}")
    diffs = compare_summaries(current, baseline, args.tolerance)
    label = "SYNTHETIC embedded data" if synthetic else (args.trials or "")
    if diffs.empty:
        print(f"kinetics check: OK, {len(current['entries'])} frontier numbers within "
              f"{args.tolerance} of {path} ({label})")
        return 0
    print(f"kinetics check: {len(diffs)} frontier number(s) moved beyond {args.tolerance} "
          f"against {path} ({label}):")
    print(diffs.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("If the change is intended, run `kinetics check --update` and commit the baseline.")
    return 1
