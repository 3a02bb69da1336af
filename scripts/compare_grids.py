"""Per-cell block top-k step of two `kinetics bench --grid` records: which cells got slower.

    python scripts/compare_grids.py OLD.json NEW.json [--tolerance 0.05] [--noise VARIANT]

For every cell in both records (model, context, batch, pages): the new block top-k ms
over the old one. Prints the cells slower than ``1 + tolerance``, the median and range
of the ratios, and, with ``--noise VARIANT`` (a variant of the new record's
``step_ms``, e.g. ``separate``: the old default path timed again), the same ratios for
that variant against the old step: run-to-run noise of unchanged code. Exit 1 if a cell
is slower than the tolerance, 2 on a wrong call or record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def _key(cell: dict) -> tuple:
    return cell["model"], cell["context"], cell["batch_size"], cell["topk_pages"]


def ratios(old: dict, new: dict, variant: str | None = None) -> dict[tuple, float]:
    """New ms / old ms per cell present in both (the new record's ``variant`` step, or its
    block top-k step)."""
    before = {_key(c): c["blocktopk_ms"] for c in old["cells"]}
    out = {}
    for c in new["cells"]:
        if _key(c) in before:
            ms = c["step_ms"][variant] if variant else c["blocktopk_ms"]
            out[_key(c)] = ms / before[_key(c)]
    return out


def summary(r: dict[tuple, float], label: str) -> str:
    values = sorted(r.values())
    return (f"{label}: {len(values)} cells, new/old median {statistics.median(values):.3f}, "
            f"range {values[0]:.3f}-{values[-1]:.3f}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--noise", metavar="VARIANT")
    args = parser.parse_args(argv)
    try:
        with open(args.old) as fh:
            old = json.load(fh)
        with open(args.new) as fh:
            new = json.load(fh)
        r = ratios(old, new)
        noise = ratios(old, new, args.noise) if args.noise else None
    except (OSError, ValueError, KeyError) as exc:
        print(f"compare_grids: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if not r:
        print("compare_grids: no cell in both records", file=sys.stderr)
        return 2
    slower = {k: v for k, v in r.items() if v > 1 + args.tolerance}
    print(summary(r, "block top-k step"))
    if noise:
        print(summary(noise, f"{args.noise} (unchanged code) vs old step"))
    print(f"{len(slower)} cells slower than old by more than {args.tolerance:.0%}:")
    for (model, context, batch, pages), v in sorted(slower.items(), key=lambda kv: -kv[1]):
        print(f"  {model} {context // 1024}k batch {batch} {pages} pages: {v:.3f}x the old ms")
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
