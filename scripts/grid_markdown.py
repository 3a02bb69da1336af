"""Markdown tables (one per model) of a `kinetics bench --grid` JSON, as in
benchmarks/RESULTS.md: per (context, batch) the dense step and, per budget, the block
top-k step of the library default (its variants' steps in brackets: fused / separate /
fused on fp8 page means / separate on fp8 page means), its speedup over dense and the byte roofline (share; with the
run's read curve also the share the one-launch floor allows and the measured step as a
share of that floor, kinetics.bench.floors).

    python scripts/grid_markdown.py GRID.json > tables.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

VARIANTS = ("fused", "separate", "fused-fp8", "separate-fp8")


def _ms(cell: dict) -> str:
    steps = " / ".join(f"{cell['step_ms'][v]:.4f}" if v in cell["step_ms"] else "-"
                       for v in VARIANTS)
    return f"{cell['blocktopk_ms']:.4f} {cell['impl'][:3]} ({steps})"


def tables(grid: dict) -> str:
    floor = {}
    if grid.get("read_curve"):
        from kinetics.bench.floors import ReadCurve, cell_limits

        for x in cell_limits(grid, ReadCurve.from_dict(grid["read_curve"])):
            floor[(x.model, x.context, x.batch_size, x.budget_tokens)] = x
    page = grid["spec"]["page_size"]
    by_model: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    budgets = sorted({c["topk_pages"] for c in grid["cells"]})
    for c in grid["cells"]:
        by_model[c["model"]][(c["context"], c["batch_size"])][c["topk_pages"]] = c
    out = []
    for model, rows in by_model.items():
        head = ["context", "batch", "KV MB", "dense ms", "dense % copy"]
        for b in budgets:
            head += [f"{b * page:,} tokens: ms (fused / separate / fused fp8 / separate fp8)",
                     "speedup / roofline (share" + ("; 1-launch floor share, of floor)"
                                                    if floor else ")")]
        out += [f"**{model} tp {grid['spec']['tp']}.**", "", "| " + " | ".join(head) + " |",
                "|" + "---|" * len(head)]
        for (context, batch), cells in sorted(rows.items()):
            first = next(iter(cells.values()))
            line = [f"{context // 1024}k", str(batch), f"{first['dense_bytes'] / 1e6:.0f}",
                    f"{first['dense_ms']:.4f}", f"{100 * first['dense_fraction_of_copy']:.1f}%"]
            for b in budgets:
                c = cells.get(b)
                if c is None:
                    line += ["-", "-"]
                    continue
                x = floor.get((c["model"], context, batch, b * page))
                tail = (f"; {100 * x.one_launch_floor_share:.0f}%, "
                        f"{100 * x.of_one_launch_floor:.0f}%)" if x else ")")
                line += [_ms(c), f"{c['speedup']:.2f}x / {c['byte_roofline']:.2f}x "
                                 f"({100 * c['share_of_roofline']:.0f}%" + tail]
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        print(tables(json.load(fh)))
