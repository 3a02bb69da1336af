"""Grid cells against the read floors measured on the same kind of GPU (issue 14).

    python scripts/floor_limits.py GRID.json FLOORS.json > limits.md

GRID.json: a `kinetics bench --grid` record; FLOORS.json: the record of
benchmarks/explore/explore_floors.py. Prints the markdown table of
`kinetics.bench.floors.format_limits` (cells whose dense step takes >= 0.1 ms).
"""

from __future__ import annotations

import json
import sys

from kinetics.bench.floors import ReadCurve, cell_limits, format_limits


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[0]) as g, open(argv[1]) as f:
        grid, floors = json.load(g), json.load(f)
    print(format_limits(cell_limits(grid, ReadCurve.from_dict(floors))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
