"""Cost model vs GPU: the table and plot of benchmarks/RESULTS.md from a device run's JSON.

    python benchmarks/gpu/plot_cost_vs_measured.py SINGLE.json TP.json OUT.png

SINGLE.json / TP.json: what ``benchmarks/gpu/e2e_run.py`` wrote (single GPU, torchrun).
Every measured cell (decoder layer and whole model, dense and block top-k, fused
implementation; the whole model at tp 1 and tp 2) is priced by
:mod:`kinetics.bench.cost_vs_measured` with the H200 preset and the copy bandwidth
measured in the single-GPU run; prints the table, writes the plot.
"""

from __future__ import annotations

import json
import sys

from kinetics.bench.cost_vs_measured import (
    StepCell,
    format_predictions,
    hardware_for_device,
    plot_predictions,
    predict,
)


def cells(single: dict, tp: dict) -> list[StepCell]:
    """The fused cells of both runs, labelled by scope, batch, tp, method."""
    rows = [r for key, value in single.items() if key.startswith("layer_b") and
            isinstance(value, list) for r in value if r["impl"] == "fused"]
    rows += [r for r in single.get("model", []) if r["impl"] == "fused"]
    rows += [r for key in ("model_tp1", "model_tp2") for r in tp.get(key) or []]
    seen, out = set(), []
    for r in rows:
        label = f"{r['scope']} b{r['batch']} tp{r['tp']} {r['method']}"
        if label in seen:  # the tp-1 model also ran in the single-GPU part
            label += " (tp run)"
        seen.add(label)
        out.append(StepCell(label, r["model"], r["method"], r["scope"], r["batch"],
                            r["context"], r["tp"], r["ms"]))
    return out


def main(argv: list[str]) -> int:
    single, tp = (json.load(open(path)) for path in argv[:2])
    hw = hardware_for_device(single["versions"]["device"])
    preds = [predict(c, hw, single["copy_gbps"] * 1e9) for c in cells(single, tp)]
    print(format_predictions(preds))
    plot_predictions(preds, argv[2], f"Kinetics cost model vs {single['versions']['device']} "
                     f"({single['versions']['date'][:10]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
