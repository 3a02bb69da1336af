"""``kinetics bench``: time dense vs block top-k decode on a GPU (see kinetics.bench).

The flags build exactly one :class:`~kinetics.bench.spec.DecodeSpec` (:func:`plan`),
which the mode's benchmark takes whole. Every flag is honoured by the mode it is given
in or refused with exit 2 (:data:`HONOURED`); nothing is silently ignored.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kinetics.bench.spec import (
    BLOCKTOPK_IMPLS,
    DENSE_KERNELS,
    METHODS,
    PAGE_MEANS_DTYPES,
    TOPK_KERNELS,
    DecodeSpec,
)
from kinetics.cli._args import finite_float, positive_ints, torch_device
from kinetics.cli._output import check_output_file, dumps_json, staged_file, write_json_file
from kinetics.errors import InputError
from kinetics.model.capture import LAYER_IMPLS
from kinetics.models import MODELS

# flag -> the args attribute it sets
FLAGS: dict[str, str] = {
    "--model": "model", "--method": "method", "--context": "context",
    "--batch-size": "batch_size", "--page-size": "page_size", "--topk-pages": "topk_pages",
    "--local-pages": "local_pages", "--tp": "tp", "--cuda-cores": "cuda_cores",
    "--topk": "topk", "--impl": "impl", "--page-means-dtype": "page_means_dtype",
    "--replicas": "replicas", "--repeats": "repeats",
    "--layer-impl": "layer_impl", "--attention-only": "attention_only",
    "--whole-model": "whole_model", "--distributed": "distributed", "--json": "json",
    "--json-out": "json_out", "--force": "force", "--gate": "gate", "--grid": "grid",
    "--grid-models": "grid_models", "--grid-contexts": "grid_contexts",
    "--grid-batches": "grid_batches", "--grid-budget-tokens": "grid_budget_tokens",
    "--time-budget": "time_budget", "--no-floors": "no_floors", "--plot": "plot",
    "--from-json": "from_json", "--relabel": "relabel", "--generate": "generate",
    "--prompt-tokens": "prompt_tokens", "--new-tokens": "new_tokens", "--layers": "layers",
    "--samples": "samples", "--skewed": "skewed", "--hf": "hf", "--device": "device",
    "--shared-prompt": "shared_prompt", "--step": "step",
    "--allow-version-mismatch": "allow_version_mismatch",
}
# flag -> the DecodeSpec field it sets
SPEC_FLAGS: dict[str, str] = {
    "--model": "model", "--context": "context", "--batch-size": "batch_size",
    "--page-size": "page_size", "--topk-pages": "topk_pages", "--local-pages": "local_pages",
    "--tp": "tp", "--cuda-cores": "dense_kernel", "--topk": "topk_kernel",
    "--impl": "blocktopk_impl", "--page-means-dtype": "page_means_dtype",
    "--replicas": "replicas",
}
BLOCKTOPK_FLAGS = frozenset(("--topk-pages", "--local-pages", "--topk", "--impl",
                             "--page-means-dtype"))
DENSE_FLAGS = frozenset(("--cuda-cores",))
_SPEC = frozenset(SPEC_FLAGS)
_OUT = frozenset(("--json", "--json-out", "--force"))
_GRID = frozenset(("--grid", "--grid-models", "--grid-contexts", "--grid-batches",
                   "--grid-budget-tokens", "--time-budget", "--no-floors", "--plot"))
# mode -> the flags it honours; any other flag given is refused (exit 2)
HONOURED: dict[str, frozenset[str]] = {
    "layer": _SPEC | _OUT | {"--method", "--repeats", "--layer-impl"},
    "attention": _SPEC | _OUT | {"--method", "--repeats", "--attention-only"},
    "model": (_SPEC - {"--replicas"}) | _OUT | {"--method", "--repeats", "--layer-impl",
                                                 "--whole-model"},
    "tp": (_SPEC - {"--replicas"}) | _OUT | {"--method", "--repeats", "--layer-impl",
                                              "--distributed"},
    "tp-model": (_SPEC - {"--replicas"}) | _OUT | {"--method", "--repeats", "--layer-impl",
                                                    "--distributed", "--whole-model"},
    "grid": _GRID | _OUT | {"--page-size", "--tp", "--local-pages", "--cuda-cores", "--topk",
                            "--repeats"},
    "gate": _OUT | {"--gate", "--allow-version-mismatch"},
    "from-json": frozenset(("--from-json", "--plot", "--force", "--relabel")),
    "generate": _OUT | {"--generate", "--model", "--method", "--batch-size", "--page-size",
                        "--topk-pages", "--local-pages", "--prompt-tokens", "--new-tokens",
                        "--layers", "--samples", "--skewed", "--hf", "--device",
                        "--shared-prompt", "--step"},
}
# the CPU tensor-parallel layer: dense torch attention over a contiguous cache
CPU_TP_REFUSED = frozenset(("--page-size", "--cuda-cores")) | BLOCKTOPK_FLAGS
MODE_NAMES = {"layer": "the decoder-layer benchmark", "attention": "--attention-only",
              "model": "--whole-model", "tp": "--distributed",
              "tp-model": "--distributed --whole-model", "grid": "--grid", "gate": "--gate",
              "from-json": "--from-json", "generate": "--generate"}
HINTS = {("grid", "--context"): " (the grid's: --grid-contexts)",
         ("grid", "--batch-size"): " (the grid's: --grid-batches)",
         ("grid", "--topk-pages"): " (the grid's: --grid-budget-tokens)",
         ("grid", "--model"): " (the grid's: --grid-models)",
         ("grid", "--replicas"): " (the grid picks each cell's replicas)",
         ("grid", "--impl"): " (the grid times every variant: fused and separate, on bf16 "
                             "and fp8 page means)",
         ("grid", "--page-means-dtype"): " (the grid times every variant: fused and "
                                         "separate, on bf16 and fp8 page means)",
         ("gate", "--model"): " (the gate runs the configuration stored in BASELINE)"}
DEFAULT_REPEATS = {"layer": 100, "attention": 100, "model": 20, "tp": 30, "tp-model": 20,
                   "grid": 20}


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Example: kinetics bench --model qwen3-8b --context 16384 --batch-size 64 "
        "--page-size 16 --topk-pages 64 --tp 8 --attention-only. "
        "Gate: kinetics bench --gate benchmarks/baseline/gpu.json --json-out gate.json. "
        "Grid: kinetics bench --grid --json-out grid.json --plot grid.png. "
        "Every flag applies to the modes that use it and is refused (exit 2) elsewhere."
    )
    spec = DecodeSpec()
    parser.add_argument("--model", help=f"model preset ({', '.join(MODELS)}; default "
                        f"{spec.model})")
    parser.add_argument("--method", choices=("dense", "blocktopk", "both"),
                        help="decode attention to time: dense (flashinfer), blocktopk (page "
                        "selection + Triton sparse attention) or both (the default, and the "
                        "speedup)")
    parser.add_argument("--context", type=int, metavar="T",
                        help=f"tokens in each request's KV cache (default {spec.context})")
    parser.add_argument("--batch-size", type=int, metavar="B",
                        help=f"requests (default {spec.batch_size})")
    parser.add_argument("--page-size", type=int, metavar="P",
                        help=f"tokens per KV page, a power of two (default {spec.page_size})")
    parser.add_argument("--topk-pages", type=int, metavar="K",
                        help="block top-k: pages attended per request and KV head, the last "
                        f"(partial) page and the local pages included (default {spec.topk_pages})")
    parser.add_argument("--local-pages", type=int, metavar="L",
                        help=f"block top-k: trailing pages always attended (default "
                        f"{spec.local_pages})")
    parser.add_argument("--tp", type=int, help="tensor-parallel degree: one rank's share of "
                        f"the heads (default {spec.tp}; with --distributed, the ranks)")
    parser.add_argument("--attention-only", action="store_true",
                        help="time attention alone (default: one decoder layer shard)")
    parser.add_argument("--cuda-cores", action="store_true",
                        help="dense: flashinfer's CUDA-core decode (default: its tensor-core "
                        "decode, fa2 backend)")
    parser.add_argument("--topk", choices=TOPK_KERNELS,
                        help="block top-k selection's top-k kernel (auto, the default: "
                        "bitonic for rows of <= 1024 pages, else flashinfer's radix top-k); "
                        "the separate implementation's")
    parser.add_argument("--impl", choices=BLOCKTOPK_IMPLS,
                        help="block top-k implementation: fused (one kernel per step: "
                        "scoring, selection and attention), separate (selection kernels, then "
                        "the sparse attention) or auto (the default: the library's choice "
                        "for the shape, by kinetics.attention.decode's rule)")
    parser.add_argument("--page-means-dtype", choices=PAGE_MEANS_DTYPES,
                        help="storage of the page means block top-k scores (default bf16; "
                        "fp8: e4m3)")
    parser.add_argument("--replicas", type=int, help="independent caches cycled through, to "
                        f"defeat the L2 cache (default {spec.replicas})")
    parser.add_argument("--repeats", type=int,
                        help="timed CUDA graph replays (default: 100 for one layer or its "
                        "attention, 20 for the whole model and the grid, 30 for --distributed)")
    parser.add_argument("--layer-impl", choices=LAYER_IMPLS,
                        help="decoder layer outside attention: fused (the default: Triton "
                        "add+RMSNorm, q/k norm+RoPE writing the KV cache, SiLU*mul; cuBLAS "
                        "GEMMs) or the reference torch layer (fused-kv-separate, compiled: "
                        "for comparison)")
    parser.add_argument("--whole-model", action="store_true",
                        help="time the whole model's decode step (embedding, all layers, "
                        "final norm, LM head, greedy sampling) as one CUDA graph; with "
                        "--tp 1 the full model on one GPU (default --tp 8: one rank's share)")
    parser.add_argument("--distributed", action="store_true",
                        help="real tensor parallelism: run under torchrun --nproc-per-node TP; "
                        "times one decoder layer (or, with --whole-model, the whole model) "
                        "per rank, the whole step one CUDA graph over NCCL (kinetics.bench.tp); "
                        "without a GPU: gloo, eager, --method dense")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--gate", metavar="BASELINE",
                        help="run the standard configuration stored in BASELINE (JSON) for "
                        "both methods; exit 1 if the speedup is under its min_speedup or a "
                        "correctness check fails")
    parser.add_argument("--allow-version-mismatch", action="store_true",
                        help="--gate: compare even when torch, triton or flashinfer differ "
                        "from the versions BASELINE records (default: refuse, exit 2)")
    parser.add_argument("--json-out", metavar="PATH",
                        help="also write the record (with the command) to PATH (a new file "
                        "unless --force)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --json-out / --plot file")
    parser.add_argument("--from-json", nargs="+", metavar="RECORD",
                        help="no GPU: read bench records back: a grid's markdown tables and "
                        "its cells against the read floors (a read-curve record may be "
                        "given beside it), the cost model's predicted time beside every "
                        "measured layer / whole-model step; --plot draws the grid figure or "
                        "the cost model against the measured times; two or more grid records: "
                        "each later one's block top-k steps against the first's")
    parser.add_argument("--relabel", metavar="PATH",
                        help="with --from-json GRID (a grid that timed every block top-k "
                        "variant): write GRID with each cell's block top-k step re-chosen by "
                        "today's kinetics.attention.decode.default_impl from the steps it "
                        "measured to PATH (a new file unless --force), and print its tables")
    gen = parser.add_argument_group(
        "generation (--generate: the paged engine end to end on a random-initialised Qwen3 "
        "of --model's shapes, EOS suppressed; also on the CPU with few --layers)")
    gen.add_argument("--generate", action="store_true", help="time generation end to end")
    gen.add_argument("--prompt-tokens", type=int, metavar="P", help="tokens per prompt "
                     "(default 512)")
    gen.add_argument("--new-tokens", type=int, metavar="N",
                     help="generated tokens per sample, the cap with --skewed (default 512)")
    gen.add_argument("--layers", type=int, metavar="L",
                     help="decoder layers built (default: all of the model's)")
    gen.add_argument("--samples", type=int, metavar="S",
                     help="samples in the workload (default --batch-size; more: refills)")
    gen.add_argument("--skewed", action="store_true",
                     help="sample lengths like reasoning traces (most short, a long tail) and "
                     "static batching timed too")
    gen.add_argument("--hf", action="store_true",
                     help="also time transformers' generate on the same weights")
    gen.add_argument("--shared-prompt", action="store_true",
                     help="every sample has the same prompt (Best-of-N: prefilled once)")
    gen.add_argument("--step", action="store_true",
                     help="also time the engine's bare decode step (its CUDA graph replayed) "
                     "at the batch and the mean context, the ceiling of its tokens/s")
    gen.add_argument("--device", metavar="DEV", help="torch device (default: cuda if "
                     "available, else cpu)")
    grid = parser.add_argument_group(
        "grid", "--grid: every cell of models x contexts x batch sizes x budgets (--tp, "
        "--page-size, --local-pages, --cuda-cores, --topk and --repeats apply to every "
        "cell); prints a table, --json-out writes the record, --plot the figure")
    grid.add_argument("--grid", action="store_true", help="run the regime grid")
    grid.add_argument("--grid-models", metavar="LIST",
                      help="model presets, comma-separated (default qwen3-8b,qwen3-32b)")
    grid.add_argument("--grid-contexts", metavar="LIST",
                      help="tokens per request (default 8192,16384,32768,65536,131072)")
    grid.add_argument("--grid-batches", metavar="LIST",
                      help="requests decoded together, comma-separated (default "
                      "1,4,16,64,256)")
    grid.add_argument("--grid-budget-tokens", metavar="LIST",
                      help="block top-k tokens attended per request and KV head, whole "
                      "pages (default 1024,2048)")
    grid.add_argument("--time-budget", type=finite_float, metavar="S",
                      help="list the cells not reached after S seconds as skipped")
    grid.add_argument("--plot", metavar="PATH",
                      help="figure (PNG/PDF/SVG) of --grid or of --from-json")
    grid.add_argument("--no-floors", action="store_true",
                      help="skip measuring the read floors (a pure read of 0.5 MB to "
                           "2 GB and an empty launch, which give each cell the share of the "
                           "byte roofline its floor allows, column @floor); that column is "
                           "then '-'")


@dataclass(frozen=True)
class BenchPlan:
    """What one ``kinetics bench`` call runs: the mode, the one spec, the run settings
    and the outputs (everything the flags said, checked)."""

    mode: str
    spec: DecodeSpec
    methods: tuple[str, ...] = METHODS
    repeats: int = 100
    layer_impl: str = "fused"
    json: bool = False
    json_out: str | None = None
    plot: str | None = None
    force: bool = False
    baseline: str | None = None
    allow_version_mismatch: bool = False
    grid: Any = None  # a kinetics.bench.grid.GridSpec in grid mode
    deadline_s: float | None = None
    records: tuple[str, ...] = ()
    relabel: str | None = None
    generate: Any = None  # a kinetics.bench.generate.GenerateBenchSpec in generate mode
    device: str | None = None  # generate mode: the torch device (None: cuda if there)
    command: str = "kinetics bench"
    argv: tuple[str, ...] = ("kinetics", "bench")  # the command line, for the provenance
    given: frozenset[str] = field(default_factory=frozenset)


def mode_of(args: argparse.Namespace) -> str:
    """The mode the flags select (the first of --from-json, --gate, --grid,
    --distributed [--whole-model], --whole-model, --attention-only; else the layer)."""
    if args.from_json is not None:
        return "from-json"
    if args.generate:
        return "generate"
    if args.gate is not None:
        return "gate"
    if args.grid:
        return "grid"
    if args.distributed:
        return "tp-model" if args.whole_model else "tp"
    if args.whole_model:
        return "model"
    return "attention" if args.attention_only else "layer"


def given_flags(args: argparse.Namespace) -> frozenset[str]:
    """The flags the user gave (value flags not None, switches True)."""
    return frozenset(flag for flag, dest in FLAGS.items()
                     if getattr(args, dest) not in (None, False))


def refuse_unused(mode: str, given: frozenset[str], methods: tuple[str, ...], gpu: bool) -> None:
    """InputError naming the first flag ``mode`` would not honour (see :data:`HONOURED`)."""
    where = MODE_NAMES[mode]
    for flag in sorted(given - HONOURED[mode]):
        raise InputError(f"{flag} does not apply to {where}{HINTS.get((mode, flag), '')}")
    if "--method" in HONOURED[mode]:
        if "blocktopk" not in methods:
            for flag in sorted(given & BLOCKTOPK_FLAGS):
                raise InputError(f"{flag} is a block top-k setting: it does not apply to "
                                 "--method dense")
        if "dense" not in methods:
            for flag in sorted(given & DENSE_FLAGS):
                raise InputError(f"{flag} is a dense setting: it does not apply to "
                                 "--method blocktopk")
    if mode == "tp" and not gpu:
        for flag in sorted(given & CPU_TP_REFUSED):
            raise InputError(f"{flag} does not apply to --distributed without a GPU (gloo, "
                             "dense torch attention over a contiguous cache)")
        if methods != ("dense",):
            raise InputError("no GPU here: --distributed without a GPU runs --method dense "
                             "only (gloo, torch attention); block top-k needs a GPU")


def decode_spec(args: argparse.Namespace) -> DecodeSpec:
    """The one :class:`DecodeSpec` of the flags (defaults where not given)."""
    values: dict[str, Any] = {}
    for flag, name in SPEC_FLAGS.items():
        value = getattr(args, FLAGS[flag])
        if value in (None, False):
            continue
        values[name] = DENSE_KERNELS[1] if flag == "--cuda-cores" else value
    return DecodeSpec(**values)


def plan(args: argparse.Namespace, gpu: bool) -> BenchPlan:
    """Check the flags against the mode and build the :class:`BenchPlan` (InputError on a
    flag the mode would not honour, or a bad value). ``gpu``: whether a GPU benchmark is
    possible here (the CPU tensor-parallel layer honours fewer flags)."""
    mode, given = mode_of(args), given_flags(args)
    methods = METHODS if args.method in (None, "both") else (args.method,)
    refuse_unused(mode, given, methods, gpu)
    if args.force and not (args.json_out or args.plot or args.relabel):
        raise InputError("--force replaces an existing --json-out / --plot / --relabel file: "
                         "give one")
    if args.impl == "fused" and args.topk is not None:
        raise InputError("--topk picks the separate implementation's top-k kernel: it does "
                         "not apply to --impl fused")
    spec = decode_spec(args)
    repeats = args.repeats if args.repeats is not None else DEFAULT_REPEATS.get(mode, 100)
    if repeats < 1:
        raise InputError(f"--repeats must be >= 1, got {repeats}")
    if mode not in ("gate", "from-json", "grid", "generate"):
        spec.validate(methods)
    argv = getattr(args, "argv", None)
    common = dict(mode=mode, spec=spec, methods=methods, repeats=repeats,
                  layer_impl=args.layer_impl or "fused", json=args.json,
                  json_out=args.json_out, plot=args.plot, force=args.force,
                  command=shlex.join(["kinetics", *argv]) if argv else "kinetics bench",
                  argv=("kinetics", *argv) if argv else ("kinetics", "bench"), given=given)
    if mode == "grid":
        return BenchPlan(**common, grid=grid_spec(args, spec, repeats),
                         deadline_s=args.time_budget)
    if mode == "gate":
        return BenchPlan(**common, baseline=args.gate,
                         allow_version_mismatch=args.allow_version_mismatch)
    if mode == "from-json":
        return BenchPlan(**common, records=tuple(args.from_json), relabel=args.relabel)
    if mode == "generate":
        return BenchPlan(**common, generate=generate_spec(args, methods), device=args.device)
    return BenchPlan(**common)


def generate_spec(args: argparse.Namespace, methods: tuple[str, ...]):
    """The :class:`~kinetics.bench.generate.GenerateBenchSpec` of ``--generate``'s flags."""
    from kinetics.bench.generate import GenerateBenchSpec

    values = {name: getattr(args, name) for name in (
        "model", "layers", "batch_size", "prompt_tokens", "new_tokens", "page_size",
        "topk_pages", "local_pages", "samples") if getattr(args, name) is not None}
    return GenerateBenchSpec(**values, methods=methods, skewed=args.skewed, hf=args.hf,
                             shared_prompt=args.shared_prompt, step=args.step)


def grid_spec(args: argparse.Namespace, base: DecodeSpec, repeats: int):
    """The grid of the --grid-* flags around ``base`` (InputError on bad lists)."""
    from kinetics.bench import grid

    def listed(text: str | None, flag: str, default: tuple[int, ...]) -> tuple[int, ...]:
        return default if text is None else tuple(positive_ints(text, flag))

    models = (grid.GRID_MODELS if args.grid_models is None
              else tuple(m.strip() for m in args.grid_models.split(",") if m.strip()))
    if not models:
        raise InputError(f"--grid-models lists no model: {args.grid_models!r}")
    spec = grid.GridSpec(
        base=base, models=models,
        contexts=listed(args.grid_contexts, "--grid-contexts", grid.GRID_CONTEXTS),
        batch_sizes=listed(args.grid_batches, "--grid-batches", grid.GRID_BATCHES),
        budget_tokens=listed(args.grid_budget_tokens, "--grid-budget-tokens",
                             grid.GRID_BUDGET_TOKENS),
        repeats=repeats, measure_floors=not args.no_floors)
    if args.time_budget is not None and args.time_budget <= 0:
        raise InputError(f"--time-budget must be > 0 seconds, got {args.time_budget}")
    grid.grid_cells(spec)  # bad names and sizes are input errors, GPU or not
    return spec


def _writes_outputs(mode: str) -> bool:
    """Whether this process writes the run's files: always, except a torchrun rank > 0."""
    return mode not in ("tp", "tp-model") or int(os.environ.get("RANK", "0") or 0) == 0


def run(args: argparse.Namespace) -> int:
    from kinetics.bench.spec import gpu_available

    ok, why = gpu_available()
    p = plan(args, ok)
    # before any GPU work; under torchrun rank 0 alone checks (and later writes) the
    # outputs: two ranks probing one output lock at once would refuse each other
    outputs = (p.json_out, p.plot, p.relabel) if _writes_outputs(p.mode) else ()
    for value in outputs:
        if value is not None:
            check_output_file(value, replace=p.force)
    if p.mode == "from-json":
        return _run_from_json(p)
    if p.mode == "gate":
        from kinetics.bench import gate

        baseline = gate.load_baseline(p.baseline)  # bad files are input errors, GPU or not
    if p.mode == "generate":  # runs on the CPU too (small shapes: --layers)
        return _run_generate(p)
    if p.mode != "tp" and not ok:  # the tensor-parallel layer also runs on CPUs
        print(f"kinetics bench: error: no GPU benchmark on this machine: {why}", file=sys.stderr)
        return 2
    runners = {"layer": _run_decode, "attention": _run_decode, "model": _run_whole_model,
               "tp": _run_distributed, "tp-model": _run_distributed, "grid": _run_grid,
               "gate": _run_gate}
    if p.mode == "gate":  # floors set with other library versions do not apply
        for line in gate.check_versions(baseline.versions, gate.running_versions(),
                                        allow=p.allow_version_mismatch, what=p.baseline):
            print(f"kinetics bench: warning: {line} (--allow-version-mismatch)",
                  file=sys.stderr)
    return runners[p.mode](p)


def _write(p: BenchPlan, record: dict[str, Any], text: str | None) -> None:
    """--json prints the record, else ``text`` (if any); --json-out writes the record;
    both with the command and this run's provenance
    (kinetics/schemas/bench-record.schema.json)."""
    from kinetics.provenance import provenance

    record = {**record, "command": p.command, "provenance": provenance(p.argv).to_dict()}
    if p.json or text is not None:
        print(dumps_json(record) if p.json else text, flush=True)
    if p.json_out:
        write_json_file(p.json_out, record)


def _run_generate(p: BenchPlan) -> int:
    """``--generate``: the paged engine end to end (kinetics.bench.generate)."""
    from kinetics.bench.generate import bench_generate, format_record
    from kinetics.bench.timing import environment

    try:
        import torch
    except ImportError:
        raise InputError("--generate needs torch") from None
    device = str(torch_device(p.device or ("cuda" if torch.cuda.is_available() else "cpu")))
    record = bench_generate(p.generate, device)
    _write(p, {**record.to_dict(), **environment(), "device": record.device},
           format_record(record))
    return 0


def _run_decode(p: BenchPlan) -> int:
    """One layer shard, or its attention alone (kinetics.bench.layer)."""
    from kinetics.bench.layer import compare_decode, format_table

    result = compare_decode(p.spec, p.methods, scope=p.mode, layer_impl=p.layer_impl,
                            repeats=p.repeats)
    _write(p, result.to_dict(), format_table(result))
    if not result.checks_passed:
        print("kinetics bench: a correctness check failed", file=sys.stderr)
        return 1
    return 0


def _run_whole_model(p: BenchPlan, rank: int = 0, group=None) -> int:
    """``--whole-model``: one CUDA graph per step of all layers (kinetics.bench.whole_model)."""
    from kinetics.bench.timing import environment
    from kinetics.bench.whole_model import format_step_timings, model_timings

    timings = model_timings(p.spec, p.methods, layer_impls=(p.layer_impl,), repeats=p.repeats,
                            rank=rank, group=group)
    if rank == 0:
        record = {"kind": "model", **environment(), "spec": p.spec.to_dict(),
                  "repeats": p.repeats, "rows": [t.to_dict() for t in timings]}
        _write(p, record, format_step_timings(timings))
    return 0


def _run_distributed(p: BenchPlan) -> int:
    """``--distributed``: one tensor-parallel layer (or, on GPUs, the whole model) per
    rank (kinetics.bench.tp)."""
    from kinetics.bench.timing import environment
    from kinetics.bench.tp import format_tp_layer_timing, tp_layer_timing
    from kinetics.model.parallel import init_distributed, shutdown_distributed

    info = init_distributed(p.spec.tp)  # once: every method reuses this process group
    try:
        if p.mode == "tp-model":
            return _run_whole_model(p, info.rank, info.group)
        timings = [tp_layer_timing(p.spec, method, info.rank, info.group, info.device,
                                   layer_impl=p.layer_impl, repeats=p.repeats)
                   for method in p.methods]
    finally:
        shutdown_distributed(info)
    if info.rank == 0:
        record = {"kind": "tp", **environment(), "spec": p.spec.to_dict(),
                  "repeats": p.repeats, "rows": [t.to_dict() for t in timings]}
        _write(p, record, "\n".join(format_tp_layer_timing(t) for t in timings))
    return 0


def _run_gate(p: BenchPlan) -> int:
    """``--gate``: the GPU regression gate (kinetics.bench.gate)."""
    from kinetics.bench import gate

    result = gate.run_gate(p.baseline, printer=(lambda line: None) if p.json else print)
    _write(p, result.record, None)
    return result.code


def _run_grid(p: BenchPlan) -> int:
    """``--grid``: the regime grid (kinetics.bench.grid); table on stdout, progress on
    stderr, the record to --json-out, figure to --plot."""
    from kinetics.bench import grid

    result = grid.run_grid(p.grid, progress=lambda line: print(line, file=sys.stderr,
                                                               flush=True),
                           deadline_s=p.deadline_s)
    record = result.to_dict()
    _write(p, record, grid.format_grid(result))
    if p.plot:
        _save_figure(grid.grid_figure(record), p.plot)
    if not all(r.checks_passed for r in result.cells):
        print("kinetics bench: a correctness check failed", file=sys.stderr)
        return 1
    return 0


def _save_figure(fig, path: str) -> None:
    with staged_file(Path(path)) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".").lower() or "png")


def _run_from_json(p: BenchPlan) -> int:
    """``--from-json``: the records' tables (and --plot's figure), no GPU."""
    from kinetics.bench import records as rec
    from kinetics.jsonfile import read_json_object

    loaded = [(path, read_json_object(path)) for path in p.records]
    kinds = [(path, data, rec.record_kind(data, path)) for path, data in loaded]
    grids = [(path, data) for path, data, kind in kinds if kind == "grid"]
    curves = [data for _, data, kind in kinds if kind == "read-curve"]
    steps = [(path, data) for path, data, kind in kinds if kind in ("decode", "model", "tp",
                                                                      "e2e")]
    if len(curves) > 1 or (curves and not grids):
        raise InputError("a read-curve record goes with one or more grid records, once")
    if p.plot and bool(grids) + bool(steps) != 1:
        raise InputError("--plot draws one figure: give grid records or step records")
    if p.relabel is not None:
        if len(grids) != 1 or len(kinds) != 1:
            raise InputError("--relabel re-labels one grid record: give exactly one")
        relabelled = rec.relabel_default_impl(grids[0][1])
        _write_relabelled(p, relabelled)
        grids = [(f"{grids[0][0]} re-labelled (written to {p.relabel})", relabelled)]
    out: list[str] = []
    for path, data in grids:
        from kinetics.bench.floors import ReadCurve

        curve = ReadCurve.from_dict(curves[0]) if curves else None
        out += [f"## {path}", "", rec.grid_markdown(data)]
        if curve is not None or data.get("read_curve"):
            out += [rec.floor_table(data, curve), ""]
        if p.plot:
            from kinetics.bench.grid import grid_figure

            _save_figure(grid_figure(data), p.plot)
    for path, data in grids[1:]:
        text, _ = rec.compare_grids(grids[0][1], data)
        out += [f"## {path} against {grids[0][0]}", "", text, ""]
    if steps:
        out += _cost_table(p, steps)
    for path, data, kind in kinds:
        if kind == "gate":
            out.append(_gate_summary(path, data))
    print("\n".join(out).rstrip())
    return 0


def _write_relabelled(p: BenchPlan, record: dict[str, Any]) -> None:
    """Write a re-labelled grid ``record`` to ``--relabel``: its provenance this run's, the
    measuring run's (if it had one) kept as ``measured_provenance``."""
    from kinetics.provenance import provenance

    earlier = record.pop("provenance", None)
    if earlier is not None:  # a re-labelled record keeps the first, measuring run's
        record.setdefault("measured_provenance", earlier)
    record["provenance"] = provenance(p.argv).to_dict()
    write_json_file(p.relabel, record)


def _cost_table(p: BenchPlan, steps: list[tuple[str, dict]]) -> list[str]:
    """The cost model's prediction beside every measured step of ``steps``."""
    from kinetics.bench import records as rec
    from kinetics.bench.cost_vs_measured import (
        format_predictions,
        hardware_for_device,
        predict,
        predictions_figure,
    )

    copies = [c for _, data in steps if (c := rec.copy_gbps(data)) is not None]
    devices = [d for _, data in steps if (d := rec.device(data))]
    if not copies or not devices:
        raise InputError("no record gives the device and its copy bandwidth",
                         path=steps[0][0])
    hardware = hardware_for_device(devices[0])
    cells, seen = [], set()
    for path, data in steps:
        for cell in rec.step_cells(data):
            if cell.label in seen:  # the same configuration in another record
                cell = replace(cell, label=f"{cell.label} ({Path(path).stem})")
            seen.add(cell.label)
            cells.append(cell)
    if not cells:
        raise InputError("no layer or whole-model step in these records (attention-only "
                         "records have none)", path=steps[0][0])
    preds = [predict(c, hardware, copies[0] * 1e9) for c in cells]
    if p.plot:
        _save_figure(predictions_figure(preds, f"Kinetics cost model vs {devices[0]}"), p.plot)
    return [f"cost model ({hardware.name}, copy {copies[0]:.0f} GB/s) vs measured",
            format_predictions(preds), ""]


def _gate_summary(path: str, data: dict[str, Any]) -> str:
    lines = [f"## {path}: gate {'PASS' if data.get('passed') else 'FAIL'}"]
    for c in data.get("cells", []):
        spec, g = c.get("spec", c.get("config", {})), c.get("gate", {})
        lines.append(f"{spec.get('model')} context {spec.get('context')} batch "
                     f"{spec.get('batch_size')}: speedup {c.get('speedup', float('nan')):.2f}x "
                     f"(floor {g.get('min_speedup', float('nan')):.2f}x) "
                     f"{'ok' if g.get('passed') else 'FAIL'}")
    return "\n".join(lines)

