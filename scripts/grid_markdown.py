"""Markdown tables (one per model) of a `kinetics bench --grid` JSON, as in
benchmarks/RESULTS.md: per (context, batch) the dense step and, per budget, the block
top-k step (selection with the default top-k: `bi` bitonic / `fl` flashinfer;
attention), its speedup over dense and the byte roofline (share; with the run's read
curve also the share its floor allows, kinetics.bench.floors).

    python scripts/grid_markdown.py GRID.json > tables.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

SHORT = {"bitonic": "bi", "flashinfer": "fl"}


def tables(grid: dict) -> str:
    floor = {}
    if grid.get("read_curve"):
        from kinetics.bench.floors import ReadCurve, cell_limits

        for x in cell_limits(grid, ReadCurve.from_dict(grid["read_curve"])):
            floor[(x.model, x.context, x.batch_size, x.budget_tokens)] = x.floor_share
    page = grid["spec"]["page_size"]
    by_model: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    budgets = sorted({c["topk_pages"] for c in grid["cells"]})
    for c in grid["cells"]:
        by_model[c["model"]][(c["context"], c["batch_size"])][c["topk_pages"]] = c
    out = []
    for model, rows in by_model.items():
        head = ["context", "batch", "KV MB", "dense ms", "dense % copy"]
        for b in budgets:
            head += [f"{b * page:,} tokens: ms (sel / attn)",
                     "speedup / roofline (share" + ("; floor)" if floor else ")")]
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
                sel = c["selection_ms"][c["topk_kernel"]]
                line += [f"{c['blocktopk_ms']:.4f} ({sel:.4f} {SHORT[c['topk_kernel']]} / "
                         f"{c['attention_ms']:.4f})",
                         f"{c['speedup']:.2f}x / {c['byte_roofline']:.2f}x "
                         f"({100 * c['share_of_roofline']:.0f}%" + (
                             f"; {100 * floor[(c['model'], context, batch, b * page)]:.0f}%)"
                             if floor else ")")]
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        print(tables(json.load(fh)))
