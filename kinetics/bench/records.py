"""Bench JSON records read back (``kinetics bench --from-json``): pure functions over the
dicts the benchmarks write.

* :func:`record_kind`: which benchmark wrote a record (``kind``; records made before
  it was stored are recognised by their keys);
* :func:`grid_markdown`: a grid record's per-cell markdown tables (one per model);
* :func:`floor_table`: a grid record's cells against the read floors
  (:mod:`kinetics.bench.floors`; the grid's own read curve, or one given);
* :func:`step_cells`: every measured layer or whole-model step of decode, whole-model
  and tensor-parallel records as :class:`~kinetics.bench.cost_vs_measured.StepCell`,
  for the cost model beside the measured time.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kinetics.bench.cost_vs_measured import StepCell
from kinetics.bench.floors import ReadCurve, cell_limits, format_limits
from kinetics.errors import InputError

KINDS: tuple[str, ...] = ("grid", "decode", "model", "tp", "gate", "read-curve", "e2e")
SHORT_TOPK = {"bitonic": "bi", "flashinfer": "fl"}
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
    step and, per budget, the block top-k step (selection with the default top-k:
    ``bi`` bitonic / ``fl`` flashinfer; attention), its speedup over dense and the byte
    roofline (share; with the record's read curve also the share its floor allows)."""
    floor = {}
    if record.get("read_curve"):
        for x in cell_limits(record, ReadCurve.from_dict(record["read_curve"])):
            floor[(x.model, x.context, x.batch_size, x.budget_tokens)] = x.floor_share
    spec = record["spec"]
    base = spec.get("base", spec)  # flat in records made before the grid took a spec
    page = base["page_size"]
    by_model: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    budgets = sorted({c["topk_pages"] for c in record["cells"]})
    for c in record["cells"]:
        by_model[c["model"]][(c["context"], c["batch_size"])][c["topk_pages"]] = c
    out = []
    for model, rows in by_model.items():
        head = ["context", "batch", "KV MB", "dense ms", "dense % copy"]
        for b in budgets:
            head += [f"{b * page:,} tokens: ms (sel / attn)",
                     "speedup / roofline (share" + ("; floor)" if floor else ")")]
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
        sel = c["selection_ms"][c["topk_kernel"]]
        share = f"{100 * c['share_of_roofline']:.0f}%"
        if floor:
            share += f"; {100 * floor[(c['model'], context, batch, b * page)]:.0f}%"
        line += [f"{c['blocktopk_ms']:.4f} ({sel:.4f} {SHORT_TOPK[c['topk_kernel']]} / "
                 f"{c['attention_ms']:.4f})",
                 f"{c['speedup']:.2f}x / {c['byte_roofline']:.2f}x ({share})"]
    return line


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
