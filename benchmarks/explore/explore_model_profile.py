"""Where the whole model's decode step spends its time, kernel by kernel (H200 exploration).

    python benchmarks/explore/explore_model_profile.py OUT.json [BATCH] [CONTEXT]

The whole Qwen3-8B at tp 1 (``kinetics bench --whole-model``'s model, caches and CUDA
graph; default batch 32, 16k), dense and block top-k: the graph's step timed, then five
replays under ``torch.profiler`` (CUDA activity); each kernel's device time per step,
summed by kernel name and by kind (GEMM, attention, the fused elementwise kernels,
other), and the step's time not covered by any kernel (launch gaps). Prints a table,
writes JSON.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

KINDS = (("attention", ("fused_blocktopk", "BatchDecode", "paged_decode", "sparse", "select",
                        "score", "topk")),
         ("elementwise", ("add_rms_norm", "qk_norm_rope", "silu_mul")),
         ("gemm", ("gemm", "nvjet", "cutlass", "sm90", "xmma", "splitK", "Kernel")))


def kind_of(name: str) -> str:
    for kind, keys in KINDS:
        if any(k.lower() in name.lower() for k in keys):
            return kind
    return "other"


def profile_graph(replay, steps: int = 5) -> tuple[dict, float]:
    """Per kernel name: (launches per step, device us per step) over ``steps`` replays;
    and the profiled span per step (us: first kernel start to last kernel end)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            replay()
        torch.cuda.synchronize()
    per = defaultdict(lambda: [0.0, 0.0])
    first, last = None, None
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CUDA:
            continue
        start, end = ev.time_range.start, ev.time_range.end  # us
        per[ev.name][0] += 1 / steps
        per[ev.name][1] += (end - start) / steps
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
    span = (last - first) / steps if first is not None else float("nan")
    return dict(per), span


def main(path: str, batch: str = "32", context: str = "16384") -> None:
    import torch

    from kinetics.bench.spec import DecodeSpec
    from kinetics.bench.timing import time_replays
    from kinetics.bench.whole_model import model_attends
    from kinetics.model.capture import CapturedStep
    from kinetics.model.decoder import ShardedDecoderModel

    spec = DecodeSpec(model="qwen3-8b", tp=1, batch_size=int(batch), context=int(context))
    model_spec = spec.validate(("dense", "blocktopk"))
    dev = torch.device("cuda", 0)
    model = ShardedDecoderModel(model_spec, 1, 0, None, torch.bfloat16, dev, spec.seed)
    tokens = torch.randint(0, model_spec.vocab_size, (spec.batch_size,), device=dev)
    positions = torch.full((spec.batch_size,), spec.context - 1, dtype=torch.int64, device=dev)
    records = []
    for method in ("dense", "blocktopk"):
        attends = model_attends(model, spec, method)
        with torch.inference_mode():
            graph = CapturedStep(lambda t, p, a=attends: model.step(t, a, p, "fused"),
                                 [tokens.clone(), positions.clone()])
            graph.replay()
            step_ms = time_replays(graph.graph.replay, 1, 20).ms
            kernels, span = profile_graph(graph.graph.replay)
        del graph
        by_kind = defaultdict(float)
        for name, (_, us) in kernels.items():
            by_kind[kind_of(name)] += us
        top = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:14]
        rec = {"method": method, "batch": spec.batch_size, "context": spec.context,
               "step_us": step_ms * 1e3, "profiled_span_us": span,
               "kernel_us": sum(us for _, us in kernels.values()),
               "launches": sum(n for n, _ in kernels.values()),
               "by_kind_us": dict(by_kind),
               "top": [{"name": n[:90], "per_step": c, "us": us} for n, (c, us) in top]}
        records.append(rec)
        print(f"\n== {method}: step {rec['step_us']:.1f} us (graph), profiled span "
              f"{span:.1f} us, kernels {rec['kernel_us']:.1f} us in {rec['launches']:.0f} "
              f"launches; " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(by_kind.items())),
              flush=True)
        for t in rec["top"]:
            print(f"  {t['us']:9.1f} us {t['per_step']:5.0f}x  {t['us'] / max(t['per_step'], 1):7.2f}"
                  f" us each  {t['name']}", flush=True)
        del attends
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    Path(path).write_text(json.dumps({
        "device": torch.cuda.get_device_name(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "records": records},
        indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
