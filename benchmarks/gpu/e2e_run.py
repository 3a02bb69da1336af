"""End-to-end decode on the lent GPUs: fused layer, whole model, cost model, TP (issue 15).

    python3 benchmarks/gpu/e2e_run.py single OUT_DIR [--compile] [--quick]  # GPU 0
    torchrun --nproc-per-node 2 benchmarks/gpu/e2e_run.py tp OUT_DIR [--quick]  # 2 GPUs

--quick: only the fused layer (no reference / kv-separate / profile / CUDA-core
attention), the whole model fused only; at tp 2 only the whole-step-graph layer and
the whole model.

single: copy bandwidth and bf16 matmul rate; one Qwen3-8B tp-8 layer shard (16k
context, 64 pages of 16) at batch 64 and 256, dense and block top-k, reference vs
fused layer (and torch.compile with --compile), attention alone for reference; the
whole Qwen3-8B model (36 layers, batch 32, 16k context), reference vs fused, one
CUDA graph a step; the cost model's prediction for every cell.
tp: the previous piecewise-graph TP bench (kinetics.bench.tp.run_tp_bench) and the
whole-step-graph layer at tp 2 vs tp 1 (batch 32, 32k context), both methods; the
whole model at tp 2 vs tp 1 (batch 32, 16k context).
Each section is guarded: a failure is recorded and the next section runs. JSON and
a short table go to OUT_DIR.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

from kinetics.bench.cost_vs_measured import (
    StepCell,
    format_predictions,
    hardware_for_device,
    predict,
)
from kinetics.bench.decode import BenchConfig, compare_decode
from kinetics.bench.model import StepTiming, model_timings
from kinetics.bench.timing import copy_bandwidth
from kinetics.bench.tp import tp_layer_timing

METHODS = ("dense", "blocktopk")
_NOT_RANK0 = dataclasses.make_dataclass("NotRank0", [])()  # run_tp_bench's None elsewhere
LAYER_METHODS = METHODS  # blocktopk-triton joined blocktopk (issue 14)


def _guard(record: dict, name: str, fn):
    t0 = time.time()
    try:
        record[name] = fn()
    except Exception:  # noqa: BLE001 - a device run records every failure and goes on
        record[name + "_error"] = traceback.format_exc()
        print(f"[{name}] FAILED\n{record[name + '_error']}", flush=True)
    record.setdefault("seconds", {})[name] = round(time.time() - t0, 1)
    print(f"[{name}] {record['seconds'][name]} s", flush=True)
    if "_out" in record:  # keep what was measured if a later section is killed
        Path(record["_out"]).write_text(json.dumps(record, indent=1, default=str))


def _matmul_tflops() -> float:
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record()
    end.synchronize()
    return 2 * 8192**3 * 10 / (start.elapsed_time(end) * 1e-3) / 1e12


def _versions() -> dict:
    import flashinfer
    import triton

    return {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "triton": triton.__version__, "flashinfer": flashinfer.__version__,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "gpus": torch.cuda.device_count()}


def _asdict(timings) -> list[dict]:
    return [{**dataclasses.asdict(t), "tokens_per_s": t.tokens_per_s,
             "fraction_of_copy": t.fraction_of_copy} for t in timings]


def _predictions(timings, copy_gbps: float) -> list:
    hw = hardware_for_device(torch.cuda.get_device_name())
    preds = []
    for t in timings:
        label = f"{t.scope} b{t.batch} {t.method} {t.impl}"
        cell = StepCell(label, t.model, t.method, t.scope, t.batch, t.context, t.tp, t.ms)
        preds.append(predict(cell, hw, copy_gbps * 1e9))
    return preds


def _layer_cells(result, sink: list) -> list[dict]:
    """StepTimings (scope 'layer') of a layer-mode compare_decode result, added to sink."""
    cfg = result.config
    cells = [StepTiming(cfg.model, m, cfg.layer_impl + ("-tc" if cfg.use_tensor_cores else ""),
                        cfg.batch_size, cfg.context, cfg.tp, "layer", t.ms_per_step, t.ms_min,
                        t.ms_p90, t.bytes_per_step, result.copy_gbps,
                        {"rel_err_vs_reference": result.layer_rel_errs.get(m),
                         "checks_passed": result.checks_passed})
             for m, t in result.methods.items()]
    sink.extend(cells)
    return _asdict(cells)


def _profile(batch: int, method: str, path: Path) -> str:
    """Kernel table (torch.profiler, 20 eager fused-layer steps) of one layer shard."""
    from kinetics.bench.decode import layer_step_fn
    from kinetics.bench.model import layer_attend
    from kinetics.model.layer import ShardedDecoderLayer
    from kinetics.models import get_model

    layer = ShardedDecoderLayer(get_model("qwen3-8b"), 8, 0, dtype=torch.bfloat16,
                                device="cuda")
    attend = layer_attend(layer, method, batch, 16384, 16, 64)
    hidden = torch.randn(batch, layer.hidden_size, dtype=torch.bfloat16, device="cuda")
    positions = torch.full((batch,), 16383, device="cuda")
    step = layer_step_fn(layer, "fused")
    with torch.inference_mode():
        for _ in range(3):
            step(hidden, attend, positions)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                step(hidden, attend, positions)
            torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="device_time_total", row_limit=30)
    with path.open("a") as fh:
        fh.write(f"== fused layer, batch {batch}, {method}, 20 eager steps\n{table}\n")
    return table[:3000]


def single(out: Path, compile_too: bool, quick: bool = False) -> dict:
    rec: dict = {"versions": _versions(), "_out": str(out / "e2e-single.json")}
    rec["copy_gbps"] = copy_bandwidth()
    _guard(rec, "matmul_tflops", _matmul_tflops)
    copy = rec["copy_gbps"]
    layers = []
    for batch in (64, 256):
        for impl in ("fused",) if quick else ("reference", "fused", "fused-kv-separate"):
            cfg = BenchConfig(batch_size=batch, attention_only=False, repeats=50, layer_impl=impl)
            _guard(rec, f"layer_b{batch}_{impl}", lambda cfg=cfg: _layer_cells(
                compare_decode(cfg, LAYER_METHODS, check=True, copy_gbps=copy), layers))
        for tc in (True,) if quick else (False, True):
            acfg = BenchConfig(batch_size=batch, attention_only=True, repeats=50,
                               use_tensor_cores=tc)
            _guard(rec, f"attention_b{batch}{'_tc' if tc else ''}", lambda acfg=acfg: {
                m: v.ms_per_step for m, v in compare_decode(
                    acfg, METHODS, check=False, copy_gbps=copy).methods.items()})
    tcfg = BenchConfig(batch_size=256, attention_only=False, repeats=50, use_tensor_cores=True)
    if not quick:
        _guard(rec, "layer_b256_fused_tc", lambda: _layer_cells(
            compare_decode(tcfg, ("dense",), check=True, copy_gbps=copy), []))
    for batch, method in () if quick else ((64, "blocktopk"), (256, "dense")):
        _guard(rec, f"profile_b{batch}_{method}", lambda b=batch, m=method: _profile(
            b, m, out / "profile.txt"))
    models = []
    _guard(rec, "model", lambda: _asdict(
        models.extend(model_timings("qwen3-8b", LAYER_METHODS, 32, 16384,
                                    impls=("fused",) if quick else ("reference", "fused"),
                                    copy_gbps=copy)) or models))
    preds = _predictions(layers + models, copy)
    rec["predictions"] = [{**dataclasses.asdict(p), "measured_over_predicted":
                           p.measured_over_predicted} for p in preds]
    rec["prediction_table"] = format_predictions(preds)
    print(summary_single(rec), flush=True)
    if compile_too:
        cfg = BenchConfig(batch_size=64, attention_only=False, repeats=50, layer_impl="compiled")
        _guard(rec, "layer_b64_compiled", lambda: _layer_cells(
            compare_decode(cfg, METHODS, check=True, copy_gbps=copy), []))
    (out / "e2e-single.json").write_text(json.dumps(rec, indent=1, default=str))
    return rec


def tp(out: Path, quick: bool = False) -> dict | None:
    from kinetics.bench.tp import paged_attend_factory, run_tp_bench
    from kinetics.model.parallel import init_distributed, shutdown_distributed

    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = init_distributed(world)
    rank, group = info.rank, info.group
    rec: dict = {"versions": _versions()}
    if rank == 0:
        rec["_out"] = str(out / "e2e-tp.json")
    def graph_timing(method: str, impl: str, symm: bool) -> dict:
        t = tp_layer_timing("qwen3-8b", method, 32, 32768, world, rank, group, impl=impl,
                            try_symm=symm)
        return {**dataclasses.asdict(t), "scaling_efficiency": t.scaling_efficiency,
                "comm_share": t.comm_share}

    try:
        for method in () if quick else METHODS:
            _guard(rec, f"piecewise_{method}", lambda m=method: dataclasses.asdict(run_tp_bench(
                "qwen3-8b", m, 32768, 32, 16, 64, world, 50, 10, "bfloat16",
                paged_attend_factory(m, 16, 64)) or _NOT_RANK0))
        for method in METHODS:
            _guard(rec, f"graph_{method}_fused", lambda m=method: graph_timing(m, "fused", False))
        if rank == 0:
            _guard(rec, "model_tp1", lambda: _asdict(model_timings(
                "qwen3-8b", METHODS, 32, 16384, impls=("fused",), copy_gbps=1.0)))
        torch.distributed.barrier(group=group)
        if world > 1:
            _guard(rec, "model_tp2", lambda: _asdict(model_timings(
                "qwen3-8b", METHODS, 32, 16384, impls=("fused",), tp=world, rank=rank,
                group=group, copy_gbps=1.0)))
        for method in () if quick else METHODS:
            _guard(rec, f"graph_{method}_reference",
                   lambda m=method: graph_timing(m, "reference", False))
        for method in () if quick else METHODS:  # last: an optional all-reduce that might not run here
            _guard(rec, f"graph_{method}_symm", lambda m=method: graph_timing(m, "fused", True))
    finally:
        shutdown_distributed(info)
    if rank != 0:
        return None
    (out / "e2e-tp.json").write_text(json.dumps(rec, indent=1, default=str))
    return rec


def summary_single(rec: dict) -> str:
    lines = [f"{rec['versions']}", f"copy {rec['copy_gbps']:.0f} GB/s, matmul "
             f"{rec.get('matmul_tflops', float('nan')):.0f} TFLOP/s"]
    for batch in (64, 256):
        rows = {(r["method"], r["impl"]): r for impl in ("reference", "fused", "fused-kv-separate")
                for r in rec.get(f"layer_b{batch}_{impl}", [])}
        for impl in ("reference", "fused", "fused-kv-separate"):
            d = rows.get(("dense", impl))
            for m in LAYER_METHODS[1:]:
                b = rows.get((m, impl))
                if d and b:
                    lines.append(
                        f"layer b{batch} {impl:<9} dense {d['ms']:.4f} ms "
                        f"({100 * d['fraction_of_copy']:.0f}% copy) {m} {b['ms']:.4f} ms "
                        f"speedup {d['ms'] / b['ms']:.2f}x err "
                        f"{d['extra']['rel_err_vs_reference']:.1e}/"
                        f"{b['extra']['rel_err_vs_reference']:.1e} ok "
                        f"{b['extra']['checks_passed']}")
        lines.append(f"attention only b{batch}: {rec.get(f'attention_b{batch}')} tensor cores: "
                     f"{rec.get(f'attention_b{batch}_tc')}")
    for r in rec.get("layer_b256_fused_tc", []):
        lines.append(f"layer b256 fused, dense tensor cores {r['ms']:.4f} ms "
                     f"({100 * r['fraction_of_copy']:.0f}% copy)")
    for r in rec.get("layer_b64_compiled", []):
        lines.append(f"layer b64 compiled {r['method']} {r['ms']:.4f} ms {r['extra']}")
    for r in rec.get("model", []):
        lines.append(f"model {r['method']:<9} {r['impl']:<9} {r['ms']:.3f} ms "
                     f"{r['tokens_per_s']:.0f} tok/s ({100 * r['fraction_of_copy']:.0f}% copy) "
                     f"{r['extra']}")
    lines.append(rec.get("prediction_table", ""))
    return "\n".join(lines)


def summary_tp(rec: dict) -> str:
    lines = []
    for method in METHODS:
        p = rec.get(f"piecewise_{method}") or {}
        if p:
            lines.append(f"piecewise {method}: tp2 {p['step_ms']:.3f} tp1 {p['tp1_step_ms']:.3f} "
                         f"eff {p['scaling_efficiency']:.2f} comm {p['comm_ms']:.3f} "
                         f"(max {p['comm_ms_max']:.3f}) nocomm {p['nocomm_step_ms']:.3f} "
                         f"ranks {p['per_rank_step_ms']}")
        for variant in ("fused", "reference", "symm"):
            g = rec.get(f"graph_{method}_{variant}") or {}
            if g:
                lines.append(
                    f"graph {method} {variant}: tp2 {g['step_ms']:.4f} tp1 {g['tp1_ms']:.4f} eff"
                    f" {g['scaling_efficiency']:.2f} nocomm {g['nocomm_ms']:.4f} allreduce-only "
                    f"{g['allreduce_ms']:.4f} comm share {g['comm_share']:.2f} piecewise "
                    f"gpu/host {g['piecewise_gpu_ms']:.3f}/{g['piecewise_host_ms']:.3f} "
                    f"ranks {g['per_rank_ms']}")
                if variant == "symm":
                    lines.append(f"  symm: step {g['symm_step_ms']} allreduce-only "
                                 f"{g['symm_allreduce_ms']} error {g['symm_error']}")
    for key in ("model_tp1", "model_tp2"):
        for r in rec.get(key) or []:
            lines.append(f"{key} {r['method']} {r['ms']:.3f} ms {r['tokens_per_s']:.0f} tok/s "
                         f"{r['extra']}")
    errors = [k for k in rec if k.endswith("_error")]
    lines.append(f"errors: {errors}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    mode, out = argv[0], Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if mode == "single":
        rec = single(out, "--compile" in argv, "--quick" in argv)
        text = summary_single(rec)
        errors = [k for k in rec if k.endswith("_error")]
        text += f"\nerrors: {errors}"
    else:
        rec = tp(out, "--quick" in argv)
        if rec is None:
            return 0
        text = summary_tp(rec)
    print("==== summary\n" + text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
