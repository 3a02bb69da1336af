"""Bench JSON records read back (``kinetics bench --from-json``): pure functions over the
dicts the benchmarks write.

* :func:`record_kind`: which benchmark wrote a record (``kind``; records made before
  it was stored are recognised by their keys);
* :func:`grid_markdown`: a grid record's per-cell markdown tables (one per model);
* :func:`floor_table`: a grid record's cells against the read floors
  (:mod:`kinetics.bench.floors`; the grid's own read curve, or one given);
* :func:`compare_grids`: a later grid's block top-k steps against an earlier one's,
  cell by cell (which got slower);
* :func:`relabel_default_impl`: a grid record whose cells timed every block top-k
  variant, each cell's default step re-chosen by today's
  :func:`kinetics.attention.decode.default_impl` from the steps it measured;
* :func:`step_cells`: every measured layer or whole-model step of decode, whole-model
  and tensor-parallel records as :class:`~kinetics.bench.cost_vs_measured.StepCell`,
  for the cost model beside the measured time.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from typing import Any

from kinetics.bench.cost_vs_measured import StepCell
from kinetics.bench.floors import ReadCurve, cell_limits, format_limits
from kinetics.errors import InputError

KINDS: tuple[str, ...] = ("grid", "decode", "model", "tp", "gate", "read-curve", "e2e")
SHORT_TOPK = {"bitonic": "bi", "flashinfer": "fl"}
# block top-k variants a grid record's cells may hold in ``step_ms`` (kinetics.bench.grid)
GRID_VARIANTS = ("fused", "separate", "fused-fp8", "separate-fp8")
E2E_IMPLS = ("fused", "fused-tc")  # the fused layer's rows in e2e records


def record_kind(record: Any, path: str = "record") -> str:
    """One of :data:`KINDS` (InputError naming ``path`` if the record is none of them).

    ``e2e``: the two-part records of the end-to-end device script that ``kinetics
    bench`` replaced (rows of layer and whole-model steps under named sections)."""
    if not isinstance(record, dict):
        raise InputError("expected a JSON object (a kinetics bench record)", path=path)
    if record.get("kind") in KINDS:
        return record["kind"]
    if "cells" in record and "spec" in record:
        return "grid"
    if "read" in record and "empty_launch_ms" in record:
        return "read-curve"
    if "baseline" in record and "cells" in record:
        return "gate"
    if "versions" in record and any(k.startswith(("layer_b", "model")) for k in record):
        return "e2e"
    raise InputError("not a kinetics bench record (no 'kind' and no known layout)",
                     path=path)


def grid_markdown(record: dict[str, Any]) -> str:
    """Markdown tables (one per model) of a grid record: per (context, batch) the dense
    step and, per budget, the block top-k step, its speedup over dense and the byte
    roofline (share; with the record's read curve also what the floor allows).

    Records whose cells timed every variant (``step_ms``): the default step with its
    implementation (``fus`` / ``sep``) and each variant's step in brackets (fused /
    separate / fused on fp8 page means / separate on fp8 page means); with a read curve
    the share the one-launch floor allows and the measured step as a share of that
    floor. Older records (one path, ``selection_ms``): the step with its selection
    (``bi`` bitonic / ``fl`` flashinfer top-k) and attention; with a read curve the
    share the four-kernel floor allows."""
    variants = any("step_ms" in c for c in record["cells"])
    floor = {}
    if record.get("read_curve"):
        for x in cell_limits(record, ReadCurve.from_dict(record["read_curve"])):
            floor[(x.model, x.context, x.batch_size, x.budget_tokens)] = x
    spec = record["spec"]
    base = spec.get("base", spec)  # flat in records made before the grid took a spec
    page = base["page_size"]
    by_model: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    budgets = sorted({c["topk_pages"] for c in record["cells"]})
    for c in record["cells"]:
        by_model[c["model"]][(c["context"], c["batch_size"])][c["topk_pages"]] = c
    if variants:
        steps, shares = ("ms (fused / separate / fused fp8 / separate fp8)",
                         "; 1-launch floor share, of floor)")
    else:
        steps, shares = "ms (sel / attn)", "; floor)"
    out = []
    for model, rows in by_model.items():
        head = ["context", "batch", "KV MB", "dense ms", "dense % copy"]
        for b in budgets:
            head += [f"{b * page:,} tokens: {steps}",
                     "speedup / roofline (share" + (shares if floor else ")")]
        out += [f"**{model} tp {base['tp']}.**", "", "| " + " | ".join(head) + " |",
                "|" + "---|" * len(head)]
        for (context, batch), cells in sorted(rows.items()):
            out.append("| " + " | ".join(_grid_row(context, batch, cells, budgets, page, floor))
                       + " |")
        out.append("")
    return "\n".join(out)


def _grid_row(context: int, batch: int, cells: dict, budgets: list[int], page: int,
              floor: dict) -> list[str]:
    first = next(iter(cells.values()))
    line = [f"{context // 1024}k", str(batch), f"{first['dense_bytes'] / 1e6:.0f}",
            f"{first['dense_ms']:.4f}", f"{100 * first['dense_fraction_of_copy']:.1f}%"]
    for b in budgets:
        c = cells.get(b)
        if c is None:
            line += ["-", "-"]
            continue
        share = f"{100 * c['share_of_roofline']:.0f}%"
        x = floor.get((c["model"], context, batch, b * page))
        if "step_ms" in c:
            if x is not None:
                share += (f"; {100 * x.one_launch_floor_share:.0f}%, "
                          f"{100 * x.of_one_launch_floor:.0f}%")
            steps = " / ".join(f"{c['step_ms'][v]:.4f}" if v in c["step_ms"] else "-"
                               for v in GRID_VARIANTS)
            line.append(f"{c['blocktopk_ms']:.4f} {c['impl'][:3]} ({steps})")
        else:
            if x is not None:
                share += f"; {100 * x.floor_share:.0f}%"
            sel = c["selection_ms"][c["topk_kernel"]]
            line.append(f"{c['blocktopk_ms']:.4f} ({sel:.4f} {SHORT_TOPK[c['topk_kernel']]} / "
                        f"{c['attention_ms']:.4f})")
        line.append(f"{c['speedup']:.2f}x / {c['byte_roofline']:.2f}x ({share})")
    return line


def _cell_key(cell: dict[str, Any]) -> tuple:
    return cell["model"], cell["context"], cell["batch_size"], cell["topk_pages"]


def grid_ratios(old: dict[str, Any], new: dict[str, Any], variant: str | None = None
                ) -> dict[tuple, float]:
    """New ms / old ms of the block top-k step per (model, context, batch, pages) cell in
    both grid records (the new record's ``variant`` step, or its default step)."""
    before = {_cell_key(c): c["blocktopk_ms"] for c in old["cells"]}
    out = {}
    for c in new["cells"]:
        key = _cell_key(c)
        ms = c.get("step_ms", {}).get(variant, math.nan) if variant else c["blocktopk_ms"]
        if key in before and math.isfinite(ms):
            out[key] = ms / before[key]
    return out


def compare_grids(old: dict[str, Any], new: dict[str, Any], tolerance: float = 0.05
                  ) -> tuple[str, int]:
    """Text comparing ``new``'s block top-k steps with ``old``'s, cell by cell, and the
    number of cells slower than ``1 + tolerance`` times the old step. Lines: the default
    step's new/old median and range; the same for each variant the new record timed
    (a variant whose code did not change gives the run-to-run noise); then every slower
    cell, slowest first."""
    ratios = grid_ratios(old, new)
    if not ratios:
        return "no cell in both grid records", 0

    def summary(r: dict[tuple, float], label: str) -> str:
        values = sorted(r.values())
        return (f"{label}: {len(values)} cells, new/old median {statistics.median(values):.3f}, "
                f"range {values[0]:.3f}-{values[-1]:.3f}")

    lines = [summary(ratios, "block top-k step")]
    for variant in GRID_VARIANTS:
        r = grid_ratios(old, new, variant)
        if r:
            lines.append(summary(r, f"{variant} step"))
    slower = {k: v for k, v in ratios.items() if v > 1 + tolerance}
    lines.append(f"{len(slower)} cells slower than before by more than {tolerance:.0%}"
                 + (":" if slower else "."))
    for (model, context, batch, pages), v in sorted(slower.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {model} {context // 1024}k batch {batch} {pages} pages: "
                     f"{v:.3f}x the old ms")
    return "\n".join(lines), len(slower)


def relabel_default_impl(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a grid ``record`` whose cells timed the block top-k variants
    (``step_ms``), each cell's ``impl`` and ``blocktopk_ms`` re-chosen by today's
    :func:`kinetics.attention.decode.default_impl` from that cell's measured steps
    (speedup and share follow). InputError for a record without variant steps, or a cell
    that did not time the variant the rule picks (no number is made up)."""
    from kinetics.attention.decode import default_impl
    from kinetics.bench.spec import DecodeSpec

    if not record["cells"] or not all("step_ms" in c for c in record["cells"]):
        raise InputError("only a grid record whose cells timed every block top-k variant "
                         "(step_ms) can be re-labelled")
    out = json.loads(json.dumps(record))
    spec = out["spec"]
    base = {k: v for k, v in spec.get("base", spec).items() if k in ("page_size", "tp")}
    for c in out["cells"]:
        cell = DecodeSpec(model=c["model"], context=c["context"], batch_size=c["batch_size"],
                          topk_pages=c["topk_pages"], **base)
        hq, hkv = cell.local_heads()
        impl = default_impl(cell.batch_size * hkv, cell.pages, cell.topk_pages, hq // hkv)
        if impl not in c["step_ms"]:
            raise InputError(f"cell {c['model']} context {c['context']} batch "
                             f"{c['batch_size']} {c['topk_pages']} pages did not time "
                             f"'{impl}', today's default there")
        c["impl"], c["blocktopk_ms"] = impl, c["step_ms"][impl]
        c["speedup"] = c["dense_ms"] / c["blocktopk_ms"]
        c["share_of_roofline"] = c["speedup"] / c["byte_roofline"]
    out["relabelled"] = ("impl and blocktopk_ms re-chosen from step_ms by "
                         "kinetics.attention.decode.default_impl (kinetics bench --from-json "
                         "--relabel)")
    return out


def floor_table(record: dict[str, Any], curve: ReadCurve | None = None) -> str:
    """The markdown table of :func:`kinetics.bench.floors.format_limits` for a grid
    record, against ``curve`` (default: the record's own read curve; InputError if it
    has none)."""
    if curve is None:
        if not record.get("read_curve"):
            raise InputError("the grid record has no read curve (run with --no-floors or "
                             "before them): give a read-curve record too")
        curve = ReadCurve.from_dict(record["read_curve"])
    return format_limits(cell_limits(record, curve))


def _cell(row: dict[str, Any], label: str, ms: float) -> StepCell:
    return StepCell(label, row["model"], row["method"], row["scope"],
                    row.get("batch_size", row.get("batch")), row["context"], row["tp"], ms,
                    row.get("page_size", 16), row.get("topk_pages", 64))


def step_cells(record: dict[str, Any]) -> list[StepCell]:
    """The measured layer / whole-model steps of a decode (layer scope), whole-model,
    tensor-parallel or e2e record, labelled ``scope b<batch> tp<tp> method [impl]``.
    Attention-only decode records hold no layer step: none."""
    kind = record_kind(record)
    rows: list[tuple[dict, float]] = []
    if kind == "decode" and record.get("scope") == "layer":
        spec = record["spec"]
        rows = [({**spec, "method": m, "scope": "layer"}, t["ms_per_step"])
                for m, t in record["methods"].items()]
    elif kind in ("model", "tp"):
        rows = [(r, r["ms"] if kind == "model" else r["step_ms"]) for r in record["rows"]]
    elif kind == "e2e":  # the fused rows of each section ("-tc": tensor-core dense)
        rows = [(r, r["ms"]) for key, value in record.items()
                if key.startswith(("layer_b", "model")) and isinstance(value, list)
                for r in value if isinstance(r, dict) and r.get("impl") in E2E_IMPLS]
    out = []
    for row, ms in rows:
        batch = row.get("batch_size", row.get("batch"))
        label = f"{row['scope']} b{batch} tp{row['tp']} {row['method']}"
        out.append(_cell(row, label, ms))
    return out


def copy_gbps(record: dict[str, Any]) -> float | None:
    """The copy bandwidth a record measured (GB/s), or None."""
    if "copy_gbps" in record:
        return float(record["copy_gbps"])
    rows = record.get("rows") or []
    return float(rows[0]["copy_gbps"]) if rows and "copy_gbps" in rows[0] else None


def device(record: dict[str, Any]) -> str | None:
    """The device name a record ran on, or None."""
    return record.get("device") or (record.get("versions") or {}).get("device")
