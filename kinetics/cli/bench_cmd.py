"""``kinetics bench``: time dense vs block top-k decode on a GPU (see kinetics.bench)."""

from __future__ import annotations

import argparse
import json
import sys

from kinetics.errors import InputError
from kinetics.models import MODELS


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Example: kinetics bench --model qwen3-8b --context 16384 --batch-size 64 "
        "--page-size 16 --topk-pages 64 --tp 8 --attention-only. "
        "Gate: kinetics bench --gate benchmarks/baseline/gpu.json --json-out gate.json"
    )
    parser.add_argument("--model", default="qwen3-8b", help=f"model preset ({', '.join(MODELS)})")
    parser.add_argument("--method", choices=("dense", "blocktopk", "blocktopk-triton", "both",
                                             "all"), default="all",
                        help="decode attention to time: 'both' = dense + blocktopk (flashinfer "
                        "attention), 'all' adds blocktopk-triton (our Triton attention); "
                        "speedups over dense are reported whenever dense runs too")
    parser.add_argument("--context", type=int, default=16384, metavar="T",
                        help="tokens in each request's KV cache")
    parser.add_argument("--batch-size", type=int, default=64, metavar="B", help="requests")
    parser.add_argument("--page-size", type=int, default=16, metavar="P",
                        help="tokens per KV page (a power of two)")
    parser.add_argument("--topk-pages", type=int, default=64, metavar="K",
                        help="block top-k: pages attended per request and KV head, the last "
                        "(partial) page and the local pages included")
    parser.add_argument("--local-pages", type=int, default=1, metavar="L",
                        help="block top-k: trailing pages always attended")
    parser.add_argument("--tp", type=int, default=8,
                        help="tensor-parallel degree simulated on one GPU (heads / tp)")
    parser.add_argument("--attention-only", action="store_true",
                        help="time attention alone (default: one decoder layer shard)")
    parser.add_argument("--tensor-cores", action="store_true",
                        help="flashinfer's tensor-core decode kernels (default: CUDA cores)")
    parser.add_argument("--replicas", type=int, default=4,
                        help="independent caches cycled through, to defeat the L2 cache")
    parser.add_argument("--repeats", type=int, default=100, help="timed CUDA graph replays")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--gate", metavar="BASELINE",
                        help="run the standard configuration stored in BASELINE (JSON) for "
                        "both methods; exit 1 if the speedup is under its min_speedup or a "
                        "correctness check fails")
    parser.add_argument("--json-out", metavar="PATH", help="also write the numbers to PATH")
    parser.add_argument("--distributed", action="store_true",
                        help="real tensor parallelism: run under torchrun --nproc-per-node TP; "
                        "times one decoder layer per rank over torch.distributed "
                        "(kinetics.bench.tp.run_tp_bench, paged cache + flashinfer; "
                        "methods dense and blocktopk)")


def run(args: argparse.Namespace) -> int:
    from kinetics.bench import decode as bench
    from kinetics.bench import gate

    cfg = bench.BenchConfig(model=args.model, context=args.context, batch_size=args.batch_size,
                            page_size=args.page_size, topk_pages=args.topk_pages, tp=args.tp,
                            attention_only=args.attention_only, local_pages=args.local_pages,
                            replicas=args.replicas, repeats=args.repeats,
                            use_tensor_cores=args.tensor_cores)
    if args.gate is not None:
        gate.load_baseline(args.gate)  # bad files are input errors, GPU or not
    else:
        cfg.validate()
    ok, why = bench.gpu_available()
    if args.distributed and args.gate is None:
        return _run_distributed(args, gpu=ok)
    if not ok:
        print(f"kinetics bench: no GPU benchmark on this machine: {why}", file=sys.stderr)
        return 2
    if args.gate is not None:
        return gate.run_gate(args.gate, args.json_out)
    methods = {"all": bench.BENCH_METHODS, "both": ("dense", "blocktopk")}.get(
        args.method, (args.method,))
    result = bench.compare_decode(cfg, methods, check=True)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(result.to_dict(), fh, indent=2)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(bench.format_table(result))
    if not result.checks_passed:
        print("kinetics bench: a correctness check failed", file=sys.stderr)
        return 1
    return 0


def _run_distributed(args: argparse.Namespace, gpu: bool) -> int:
    """``--distributed``: one tensor-parallel layer per rank (kinetics.bench.tp).

    On GPUs: NCCL, paged KV cache, flashinfer dense / Triton-selected block top-k.
    Without a GPU: gloo and dense torch attention (method dense only), so the
    sharded code path can be exercised anywhere.
    """
    from dataclasses import asdict

    from kinetics.bench.tp import format_tp_result, paged_attend_factory, run_tp_bench
    from kinetics.model.parallel import init_distributed, shutdown_distributed

    wanted = {"all": ("dense", "blocktopk"), "both": ("dense", "blocktopk")}.get(
        args.method, (args.method,))
    if "blocktopk-triton" in wanted:
        raise InputError("--distributed times dense and blocktopk only")
    if not gpu and wanted != ("dense",):
        raise InputError("no GPU here: --distributed without a GPU runs --method dense only "
                         "(gloo, torch attention); block top-k needs a GPU")
    info = init_distributed(args.tp)  # once: every method reuses this process group
    results = {}
    try:
        for method in wanted:
            factory = (paged_attend_factory(method, args.page_size, args.topk_pages,
                                            local_pages=args.local_pages,
                                            use_tensor_cores=args.tensor_cores)
                       if gpu else None)
            result = run_tp_bench(args.model, method, args.context, args.batch_size,
                                  args.page_size, args.topk_pages, args.tp, args.repeats, 10,
                                  "bfloat16" if gpu else "float32", factory)
            if result is not None:  # rank 0
                results[method] = asdict(result)
                if not args.json:
                    print(format_tp_result(result), flush=True)
    finally:
        shutdown_distributed(info)
    if results and args.json:
        print(json.dumps(results), flush=True)
    if results and args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0
