"""Grid cells against their read floors (issue 14; kinetics.bench.floors).

    python scripts/floor_limits.py GRID.json [FLOORS.json] > limits.md

GRID.json: a `kinetics bench --grid` record; its own read curve (same run) is used,
or FLOORS.json's (benchmarks/explore/explore_floors.py) when given or when the grid
has none. Prints the markdown table of `kinetics.bench.floors.format_limits` (cells
whose dense step takes >= 0.1 ms) and the count of cells that meet / could meet 75%
of the byte roofline. Exit 2 on a wrong call or a grid without any read curve.
"""

from __future__ import annotations

import json
import sys

from kinetics.bench.floors import ReadCurve, cell_limits, format_limits


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python scripts/floor_limits.py GRID.json [FLOORS.json]", file=sys.stderr)
        return 2
    try:
        with open(argv[0]) as fh:
            grid = json.load(fh)
        if len(argv) == 2:
            with open(argv[1]) as fh:
                curve = ReadCurve.from_dict(json.load(fh))
        elif grid.get("read_curve"):
            curve = ReadCurve.from_dict(grid["read_curve"])
        else:
            print(f"{argv[0]}: no read_curve (grid run with --no-floors or before them): "
                  "give FLOORS.json", file=sys.stderr)
            return 2
        text = format_limits(cell_limits(grid, curve))
    except KeyError as exc:
        print(f"floor_limits: {argv[-1]}: missing field {exc} (not a grid / floors record?)",
              file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError) as exc:
        print(f"floor_limits: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
