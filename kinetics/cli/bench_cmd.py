"""``kinetics bench``: time dense vs block top-k decode on a GPU (see kinetics.bench)."""

from __future__ import annotations

import argparse
import json
import sys

from kinetics.attention.cache import PAGE_MEANS_DTYPES
from kinetics.bench.decode import BENCH_METHODS, BLOCKTOPK_IMPLS, LAYER_IMPLS, TOPK_KERNELS
from kinetics.cli._args import positive_ints
from kinetics.cli._output import check_output_file, staged_file, write_json_file
from kinetics.errors import InputError
from kinetics.models import MODELS


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Example: kinetics bench --model qwen3-8b --context 16384 --batch-size 64 "
        "--page-size 16 --topk-pages 64 --tp 8 --attention-only. "
        "Gate: kinetics bench --gate benchmarks/baseline/gpu.json --json-out gate.json. "
        "Grid: kinetics bench --grid --json-out grid.json --plot grid.png"
    )
    parser.add_argument("--model", default="qwen3-8b", help=f"model preset ({', '.join(MODELS)})")
    parser.add_argument("--method", choices=("dense", "blocktopk", "both"), default="both",
                        help="decode attention to time: dense (flashinfer), blocktopk (page "
                        "selection + Triton sparse attention) or both (and the speedup)")
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
    parser.add_argument("--cuda-cores", action="store_true",
                        help="dense: flashinfer's CUDA-core decode (default: its tensor-core "
                        "decode, fa2 backend)")
    parser.add_argument("--topk", choices=TOPK_KERNELS, default="auto",
                        help="block top-k selection's top-k kernel (auto: bitonic for rows of "
                        "<= 1024 pages, else flashinfer's radix top-k)")
    parser.add_argument("--impl", choices=BLOCKTOPK_IMPLS, default="auto",
                        help="block top-k implementation: fused (one kernel per step: "
                        "scoring, selection and attention), separate (selection kernels, then "
                        "the sparse attention), auto (the library default)")
    parser.add_argument("--page-means-dtype", choices=PAGE_MEANS_DTYPES, default="bf16",
                        help="storage of the page means block top-k scores (fp8: e4m3)")
    parser.add_argument("--replicas", type=int, default=4,
                        help="independent caches cycled through, to defeat the L2 cache")
    parser.add_argument("--repeats", type=int, default=100, help="timed CUDA graph replays")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--gate", metavar="BASELINE",
                        help="run the standard configuration stored in BASELINE (JSON) for "
                        "both methods; exit 1 if the speedup is under its min_speedup or a "
                        "correctness check fails")
    parser.add_argument("--json-out", metavar="PATH",
                        help="also write the numbers to PATH (a new file unless --force)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --json-out / --plot file")
    parser.add_argument("--layer-impl", choices=LAYER_IMPLS, default="fused",
                        help="decoder layer outside attention: fused (Triton add+RMSNorm, "
                        "q/k norm+RoPE writing the KV cache, SiLU*mul; cuBLAS GEMMs) or the "
                        "reference torch layer (fused-kv-separate, compiled: for comparison)")
    parser.add_argument("--whole-model", action="store_true",
                        help="time the whole model's decode step (embedding, all layers, "
                        "final norm, LM head, greedy sampling) as one CUDA graph; with "
                        "--tp 1 the full model on one GPU (default --tp 8: one rank's share)")
    parser.add_argument("--distributed", action="store_true",
                        help="real tensor parallelism: run under torchrun --nproc-per-node TP; "
                        "on GPUs times one decoder layer (or, with --whole-model, the whole "
                        "model) per rank over NCCL, the whole step in one CUDA graph "
                        "(kinetics.bench.tp); without a GPU: gloo, eager, dense")
    parser.add_argument("--piecewise", action="store_true",
                        help="with --distributed on GPUs: the older scheme, CUDA graphs around "
                        "eager attention with each all-reduce timed (run_tp_bench)")
    grid = parser.add_argument_group(
        "grid", "--grid: every cell of models x contexts x batch sizes x budgets (tp, page "
        "size and local pages from the flags above); prints a table, --json-out writes the "
        "numbers, --plot the figure")
    grid.add_argument("--grid", action="store_true", help="run the regime grid")
    grid.add_argument("--grid-models", default="qwen3-8b,qwen3-32b", metavar="LIST")
    grid.add_argument("--grid-contexts", default="8192,16384,32768,65536,131072",
                      metavar="LIST", help="tokens per request")
    grid.add_argument("--grid-batches", default="1,4,16,64,256", metavar="LIST")
    grid.add_argument("--grid-budgets", default="1024,2048", metavar="LIST",
                      help="block top-k tokens attended per request and KV head")
    grid.add_argument("--grid-repeats", type=int, default=20, help="timed replays per number")
    grid.add_argument("--time-budget", type=float, metavar="S",
                      help="list the cells not reached after S seconds as skipped")
    grid.add_argument("--plot", metavar="PATH", help="grid figure (PNG/PDF/SVG)")
    grid.add_argument("--no-floors", action="store_true",
                      help="with --grid: skip measuring the read floors (~15 s: a pure read "
                           "of 0.5 MB to 2 GB and an empty launch, which give each cell the "
                           "share of the byte roofline its floor allows, column @floor); "
                           "that column is then '-'")


def run(args: argparse.Namespace) -> int:
    from kinetics.bench import decode as bench
    from kinetics.bench import gate

    cfg = bench.BenchConfig(model=args.model, context=args.context, batch_size=args.batch_size,
                            page_size=args.page_size, topk_pages=args.topk_pages, tp=args.tp,
                            attention_only=args.attention_only, local_pages=args.local_pages,
                            replicas=args.replicas, repeats=args.repeats,
                            use_tensor_cores=not args.cuda_cores, topk_kernel=args.topk,
                            layer_impl=args.layer_impl, blocktopk_impl=args.impl,
                            page_means_dtype=args.page_means_dtype)
    for value in (args.json_out, getattr(args, "plot", None)):  # before any GPU work
        if value is not None:
            check_output_file(value, replace=args.force)
    if args.grid:
        return _run_grid(args)
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
        run = gate.run_gate(args.gate)
        if args.json_out:
            write_json_file(args.json_out, run.record)
        return run.code
    methods = bench.BENCH_METHODS if args.method == "both" else (args.method,)
    if args.whole_model:
        return _run_whole_model(args, methods, cfg.tp, 0, None)
    result = bench.compare_decode(cfg, methods, check=True)
    _write(args, result.to_dict())
    if not args.json:
        print(bench.format_table(result))
    if not result.checks_passed:
        print("kinetics bench: a correctness check failed", file=sys.stderr)
        return 1
    return 0


def _write(args: argparse.Namespace, record) -> None:
    if args.json:
        print(json.dumps(record), flush=True)
    if args.json_out:
        write_json_file(args.json_out, record)


def _run_whole_model(args: argparse.Namespace, methods, tp: int, rank: int, group) -> int:
    """``--whole-model``: one CUDA graph per step of all layers (kinetics.bench.model)."""
    from dataclasses import asdict

    from kinetics.bench.model import format_step_timings, model_timings

    timings = model_timings(args.model, methods, args.batch_size, args.context,
                            page_size=args.page_size, topk_pages=args.topk_pages,
                            impls=(args.layer_impl,), tp=tp, rank=rank, group=group,
                            repeats=args.repeats)
    if rank == 0:
        if not args.json:
            print(format_step_timings(timings), flush=True)
        _write(args, [{**asdict(t), "tokens_per_s": t.tokens_per_s} for t in timings])
    return 0


def _run_tp_graphs(args: argparse.Namespace, wanted, info) -> int:
    """``--distributed`` on GPUs: whole-step graphs (layer, or --whole-model)."""
    from dataclasses import asdict

    from kinetics.bench.tp import format_tp_layer_timing, tp_layer_timing

    if args.whole_model:
        return _run_whole_model(args, wanted, args.tp, info.rank, info.group)
    results = {}
    for method in wanted:
        t = tp_layer_timing(args.model, method, args.batch_size, args.context, args.tp,
                            info.rank, info.group, page_size=args.page_size,
                            topk_pages=args.topk_pages, impl=args.layer_impl,
                            repeats=args.repeats)
        results[method] = {**asdict(t), "scaling_efficiency": t.scaling_efficiency}
        if info.rank == 0 and not args.json:
            print(format_tp_layer_timing(t), flush=True)
    if info.rank == 0:
        _write(args, results)
    return 0


def _run_distributed(args: argparse.Namespace, gpu: bool) -> int:
    """``--distributed``: one tensor-parallel layer (or model) per rank (kinetics.bench.tp).

    On GPUs: NCCL, paged KV cache, flashinfer dense / Triton-selected block top-k,
    each whole step one CUDA graph (``--piecewise``: graphs around eager attention).
    Without a GPU: gloo and dense torch attention (method dense only), so the
    sharded code path can be exercised anywhere.
    """
    from dataclasses import asdict

    from kinetics.bench.tp import format_tp_result, paged_attend_factory, run_tp_bench
    from kinetics.model.parallel import init_distributed, shutdown_distributed

    graphs = gpu and not args.piecewise
    wanted = BENCH_METHODS if args.method == "both" else (args.method,)
    if not gpu and args.whole_model:
        raise InputError("no GPU here: --whole-model needs a GPU")
    if not gpu and wanted != ("dense",):
        raise InputError("no GPU here: --distributed without a GPU runs --method dense only "
                         "(gloo, torch attention); block top-k needs a GPU")
    info = init_distributed(args.tp)  # once: every method reuses this process group
    results = {}
    try:
        if graphs:
            return _run_tp_graphs(args, wanted, info)
        for method in wanted:
            factory = (paged_attend_factory(method, args.page_size, args.topk_pages,
                                            local_pages=args.local_pages,
                                            use_tensor_cores=not args.cuda_cores)
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
    if results:
        _write(args, results)
    return 0


def _run_grid(args: argparse.Namespace) -> int:
    """``--grid``: the regime grid (kinetics.bench.grid); table on stdout, progress on
    stderr, numbers to --json-out, figure to --plot."""
    from pathlib import Path

    from kinetics.bench import grid
    from kinetics.bench.decode import gpu_available

    if args.grid_repeats < 1:
        raise InputError("--grid-repeats must be >= 1")
    spec = grid.GridSpec(
        models=tuple(m.strip() for m in args.grid_models.split(",")),
        contexts=tuple(positive_ints(args.grid_contexts, "--grid-contexts")),
        batch_sizes=tuple(positive_ints(args.grid_batches, "--grid-batches")),
        budgets=tuple(positive_ints(args.grid_budgets, "--grid-budgets")), page_size=args.page_size,
        tp=args.tp, local_pages=args.local_pages, repeats=args.grid_repeats,
        measure_floors=not args.no_floors)
    grid.grid_cells(spec)  # bad names and sizes are input errors, GPU or not
    ok, why = gpu_available()
    if not ok:
        print(f"kinetics bench: no GPU benchmark on this machine: {why}", file=sys.stderr)
        return 2
    result = grid.run_grid(spec, progress=lambda line: print(line, file=sys.stderr,
                                                             flush=True),
                           deadline_s=args.time_budget)
    print(grid.format_grid(result))
    if args.json_out:
        write_json_file(args.json_out, result.to_dict())
    if args.plot:
        with staged_file(Path(args.plot)) as tmp:
            grid.grid_figure(result).savefig(tmp, dpi=120)
    if not all(r.checks_passed for r in result.cells):
        print("kinetics bench: a correctness check failed", file=sys.stderr)
        return 1
    return 0
