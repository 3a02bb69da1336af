"""Where the fused block top-k step spends its time, phase by phase (H200 exploration).

    python benchmarks/explore/explore_phases.py OUT.json [CELLS]

Per cell (indices into explore_fused.CELLS; default the gate cells and 16k / 256): the
grid's replicas, each with a :class:`~kinetics.attention.decode.FusedBlockTopkDecode`
built with ``record_phases=True``, timed as the grid times them (one CUDA graph of two
rounds over the replicas), beside the same decoders without stamps (the stamps' own
cost). After the stamped replays every decoder holds its last launch's clocks; per
program: the SM clock (cycles, converted to ns by each program's own cycles per global
ns) between the phase boundaries (start, scored, row arrived, selected, attended,
finished), and from the global timer the program's start after the kernel's first
program, its end, and the gap between one replica's kernel and the next. Prints a table
of medians (p90 after the slash) in us, writes JSON. PHASES_OPTIONS: decoder options as
JSON (e.g. '{"num_stages": 4}').
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PHASES = ("score", "arrive", "select", "attend", "finish")  # between consecutive stamps


def summarize(stamps: list) -> dict:
    """Medians and p90s (us) of the phases of every program of consecutive launches
    ``stamps`` (one int64 ``[rows, splits, 6, 2]`` tensor per launch, in launch order)."""
    import torch

    def q(x, p):
        return float(torch.quantile(x.double().flatten(), p)) / 1e3

    cycles = torch.stack([s[..., 0] for s in stamps]).double()
    ns = torch.stack([s[..., 1] for s in stamps]).double()
    ghz = (cycles[..., 5] - cycles[..., 0]) / (ns[..., 5] - ns[..., 0]).clamp(min=1)
    first = ns[..., 0].flatten(1).min(1).values  # per launch
    last = ns[..., 5].flatten(1).max(1).values
    n = first.shape[0]
    out = {"cycles_per_ns": float(ghz.median()),
           "span": [q(last - first, 0.5), q(last - first, 0.9)],
           "gap_to_next": [q(first[1:] - last[:-1], 0.5), q(first[1:] - last[:-1], 0.9)]
           if n > 1 else None,
           "start_after_first": [q(ns[..., 0] - first.view(n, 1, 1), 0.5),
                                 q(ns[..., 0] - first.view(n, 1, 1), 0.9)],
           "end_after_first": [q(ns[..., 5] - first.view(n, 1, 1), 0.5),
                               q(ns[..., 5] - first.view(n, 1, 1), 0.9)]}
    for i, name in enumerate(PHASES):
        d = (cycles[..., i + 1] - cycles[..., i]) / ghz
        out[name] = [q(d, 0.5), q(d, 0.9)]
    d = (cycles[..., 5] - cycles[..., 0]) / ghz
    out["program"] = [q(d, 0.5), q(d, 0.9)]
    return out


def main(path: str, cells: str = "0,1,2,3,6") -> None:
    import torch
    from explore_fused import CELLS
    from precompile_fused import precompile

    from kinetics.attention.decode import FusedBlockTopkDecode
    from kinetics.bench.grid import GridCell, GridSpec, replicas_for
    from kinetics.bench.layer import time_steps
    from kinetics.bench.spec import DecodeSpec, build_workload
    from kinetics.models import get_model

    options = json.loads(os.environ.get("PHASES_OPTIONS", "{}"))  # decoder options
    spec = GridSpec()
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    chosen = [CELLS[int(i)] for i in cells.split(",")]
    shapes = []
    for model, context, batch, pages in chosen:
        hq, hkv = DecodeSpec(model=model, tp=spec.base.tp).local_heads()
        shapes += [(hq, hkv, get_model(model).head_dim, context, batch, pages, "bf16",
                    {**options, "record_phases": r}) for r in (False, True)]
    t0 = time.monotonic()
    precompile(shapes, min(14, len(shapes)))
    print(f"compiled {len(shapes)} kernels in {time.monotonic() - t0:.0f} s", flush=True)
    records = []
    for model, context, batch, pages in chosen:
        cell = GridCell(model, context, batch, pages)
        dense_b, sparse_b = cell.step_bytes(spec)
        w = build_workload(cell.spec(spec, replicas_for(dense_b, sparse_b, spec, l2)))
        plain = [FusedBlockTopkDecode(c, w.q_heads, pages, 1, **options) for c in w.caches]
        stamped = [FusedBlockTopkDecode(c, w.q_heads, pages, 1, record_phases=True, **options)
                   for c in w.caches]
        ms_plain = time_steps(w, plain, spec.repeats).ms
        ms_stamped = time_steps(w, stamped, spec.repeats).ms
        torch.cuda.synchronize()
        rec = {"cell": [model, context, batch, pages], "launch": str(stamped[0].launch),
               "replicas": len(w.caches), "step_us": ms_plain * 1e3,
               "stamped_step_us": ms_stamped * 1e3,
               **summarize([d.phase_stamps.cpu() for d in stamped])}
        records.append(rec)
        print(json.dumps(rec), flush=True)
        del w, plain, stamped
        torch.cuda.empty_cache()
    Path(path).write_text(json.dumps({
        "device": torch.cuda.get_device_name(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cells": records}, indent=1))
    cols = ("span", "gap_to_next", "start_after_first", *PHASES, "program", "end_after_first")
    print("\ncell                  step  stamped " + " ".join(f"{c[:11]:>11}" for c in cols))
    for r in records:
        vals = " ".join("          -" if r[c] is None else f"{r[c][0]:5.2f}/{r[c][1]:5.2f}"
                        for c in cols)
        print(f"{' '.join(map(str, r['cell'])):20s} {r['step_us']:6.2f} {r['stamped_step_us']:6.2f}"
              f"  {vals}")


if __name__ == "__main__":
    main(*sys.argv[1:])
