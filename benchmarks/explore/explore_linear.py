"""Exploration for issue 15 (run on the GPU machine): the split-K Triton GEMM of the
decode-step projections against cuBLAS, then the fused layer with each.

    python3 benchmarks/explore/explore_linear.py OUT_DIR [--budget SECONDS]

Part A: for each projection shape of the benchmarked layers (Qwen3-8B tp-8 shard at
batch 64 and 256; the tp-1 and tp-2 layers at batch 32), every launch option of
``kinetics.model._linear_kernel.splitk_linear`` (block_n, block_k, splits, warps,
stages) is checked against ``F.linear`` (rel err < 1e-2, no NaN), then timed against
cuBLAS on the same inputs. Weights cycle through enough copies to exceed the L2
cache, so each call streams its weight from HBM as in a decode step. Part B: the
fused layer (`compare_decode`, layer mode) at batch 64 and 256 with cuBLAS and with
the fastest launch per shape from part A, dense and block top-k, same run.
Writes OUT_DIR/explore-linear.{json,txt}.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time

import torch
import torch.nn.functional as F

import kinetics.model.fused as fused
from kinetics.bench.decode import BenchConfig, compare_decode
from kinetics.bench.timing import copy_bandwidth, time_graph
from kinetics.model._linear_kernel import splitk_linear
from kinetics.model.fused import LinearLaunch

# (label, rows, out_features, in_features): qkv, o, gate/up, down of each layer
LAYERS = {"8b-tp8": (768, 4096, 3072, 4096, 4096, 512, 4096, 1536),
          "8b-tp1": (6144, 4096, 24576, 4096, 4096, 4096, 4096, 12288),
          "8b-tp2": (3072, 4096, 12288, 4096, 4096, 2048, 4096, 6144)}
NAMES = ("qkv", "gate_up", "o", "down")
CASES = [(layer, rows) for layer, rows in (("8b-tp8", 64), ("8b-tp8", 256),
                                            ("8b-tp1", 32), ("8b-tp2", 32))]
L2_BYTES = 200e6


def shapes():
    for layer, rows in CASES:
        dims = LAYERS[layer]
        for i, name in enumerate(NAMES):
            yield f"{layer} b{rows} {name}", rows, dims[2 * i], dims[2 * i + 1]


def options(rows: int, k: int):
    block_ms = [None] if rows <= 64 else [64, 128]
    for bn, bk, splits, (warps, stages), bm in itertools.product(
            (32, 64, 128), (64, 128, 256), (1, 2, 4, 8, 16, 32), ((4, 3), (4, 4), (8, 3)),
            block_ms):
        if k // splits < bk or (bn == 128 and bk == 256 and stages > 3):
            continue
        yield LinearLaunch(bn, bk, splits, warps, stages, bm)


def timed(fn, copies: int) -> float:
    return time_graph(fn, steps=copies, repeats=30, warmup=3).ms


def sweep_shape(label, rows, n, k, copy_gbps, deadline):
    weight_bytes = n * k * 2
    copies = max(2, min(32, int(L2_BYTES // weight_bytes) + 1))
    ws = [torch.randn(n, k, dtype=torch.bfloat16, device="cuda") * 0.02 for _ in range(copies)]
    x = torch.randn(rows, k, dtype=torch.bfloat16, device="cuda")
    ref = F.linear(x, ws[0]).float()
    cublas = timed(lambda: [F.linear(x, w) for w in ws], copies)
    rec = {"label": label, "rows": rows, "n": n, "k": k, "weight_mb": weight_bytes / 1e6,
           "copies": copies, "cublas_ms": cublas,
           "cublas_gbps": weight_bytes / (cublas * 1e-3) / 1e9, "options": []}
    for opt in options(rows, k):
        if time.time() > deadline:
            rec["truncated"] = True
            break
        args = (opt.block_n, opt.block_k, opt.splits, opt.num_warps, opt.num_stages,
                opt.block_m)
        try:
            out = splitk_linear(x, ws[0], *args).float()
            out2 = splitk_linear(x, ws[0], *args).float()  # counters reset: same again
            err = ((out - ref).norm() / ref.norm()).item()
            ok = bool(torch.isfinite(out).all()) and err < 1e-2 and torch.equal(out, out2)
            ms = timed(lambda a=args: [splitk_linear(x, w, *a) for w in ws], copies) if ok \
                else float("nan")
        except Exception as exc:  # noqa: BLE001 - out of resources etc.: record, go on
            rec["options"].append({**dataclasses.asdict(opt), "error": repr(exc)[:200]})
            continue
        rec["options"].append({**dataclasses.asdict(opt), "ms": ms, "rel_err": err, "ok": ok})
    good = [o for o in rec["options"] if o.get("ok")]
    if good:
        best = min(good, key=lambda o: o["ms"])
        rec["best"] = best
        rec["best_gbps"] = weight_bytes / (best["ms"] * 1e-3) / 1e9
        rec["speedup_vs_cublas"] = cublas / best["ms"]
    rec["copy_fraction_cublas"] = rec["cublas_gbps"] / copy_gbps
    return rec


def layer_ab(batch: int, table: dict) -> dict:
    out = {}
    original = fused.choose_linear_launch
    for variant in ("cublas", "triton"):
        def choose(rows, n, k, v=variant):
            if v == "cublas":
                return None
            best = table.get((rows, n, k))
            return LinearLaunch(**{f: best[f] for f in ("block_n", "block_k", "splits",
                                                        "num_warps", "num_stages", "block_m")}
                                ) if best else None
        fused.choose_linear_launch = choose
        try:
            cfg = BenchConfig(batch_size=batch, attention_only=False)
            res = compare_decode(cfg)
            out[variant] = {"methods": {m: t.to_dict() for m, t in res.methods.items()},
                            "speedups": res.speedups, "checks_passed": res.checks_passed,
                            "layer_rel_errs": res.layer_rel_errs}
        finally:
            fused.choose_linear_launch = original
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--budget", type=float, default=330.0)
    args = ap.parse_args()
    t0 = time.time()
    copy_gbps = copy_bandwidth()
    record = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "copy_gbps": copy_gbps, "shapes": [], "layer": {}}
    import triton
    record["triton"] = triton.__version__
    lines = []
    for label, rows, n, k in shapes():
        rec = sweep_shape(label, rows, n, k, copy_gbps, t0 + args.budget)
        record["shapes"].append(rec)
        b = rec.get("best", {})
        line = (f"{label:22s} {rec['weight_mb']:7.1f} MB cuBLAS {rec['cublas_ms']*1e3:7.1f} us "
                f"({rec['cublas_gbps']:5.0f} GB/s) best {b.get('ms', float('nan'))*1e3:7.1f} us "
                f"({rec.get('best_gbps', 0):5.0f} GB/s) x{rec.get('speedup_vs_cublas', 0):.2f} "
                f"{ {f: b.get(f) for f in ('block_n', 'block_k', 'splits', 'num_warps', 'num_stages', 'block_m')} }")
        print(line, flush=True)
        lines.append(line)
        with open(f"{args.out}/explore-linear.json", "w") as fh:
            json.dump(record, fh, indent=1)
    table = {(r["rows"], r["n"], r["k"]): r["best"] for r in record["shapes"]
             if r.get("best") and r["speedup_vs_cublas"] > 1.0}
    for batch in (64, 256):
        t1 = time.time()
        try:
            record["layer"][batch] = layer_ab(batch, table)
        except Exception as exc:  # noqa: BLE001
            record["layer"][batch] = {"error": repr(exc)}
        for variant, v in record["layer"][batch].items():
            if isinstance(v, dict):
                ms = {m: round(t["ms_per_step"], 4) for m, t in v["methods"].items()}
                line = (f"layer b{batch} {variant:7s} {ms} speedup "
                        f"{v['speedups'].get('speedup', float('nan')):.2f} checks "
                        f"{v['checks_passed']} errs {v['layer_rel_errs']}")
            else:
                line = f"layer b{batch} {variant} {v}"
            print(line, flush=True)
            lines.append(line)
        print(f"[layer b{batch}] {time.time() - t1:.0f} s", flush=True)
    with open(f"{args.out}/explore-linear.json", "w") as fh:
        json.dump(record, fh, indent=1, default=str)
    with open(f"{args.out}/explore-linear.txt", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
