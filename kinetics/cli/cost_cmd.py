"""``kinetics cost``: exact decode cost of one query (all N samples together)."""

from __future__ import annotations

import argparse

from kinetics.cli import add_param_count
from kinetics.cli._args import finite_float
from kinetics.cli._output import dumps_json
from kinetics.cost import METHODS, AttentionConfig, query_cost
from kinetics.errors import InputError
from kinetics.hardware import HARDWARE, resolve_intensity
from kinetics.models import MODELS, get_model, with_param_count


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Example: kinetics cost --model qwen3-8b --method blocktopk --prompt-len 128 "
        "--gen-len 32768 --trials 8 --block-size 16 --topk-blocks 64 --json"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default="qwen3-8b",
                       help=f"model preset ({', '.join(MODELS)})")
    which.add_argument("--model-config", metavar="PATH",
                       help="a local HF config.json (or its folder) for any other model")
    parser.add_argument("--method", choices=METHODS, default="dense",
                        help="decode attention: dense, oracle token top-k, or block top-k")
    parser.add_argument("--prompt-len", type=int, required=True, metavar="S",
                        help="prompt length, tokens")
    parser.add_argument("--gen-len", type=int, required=True, metavar="T",
                        help="generated tokens per sample")
    parser.add_argument("--trials", type=int, default=1, metavar="N",
                        help="Best-of-N samples decoded together (prompt KV shared for dense)")
    hw = parser.add_mutually_exclusive_group()
    hw.add_argument("--hardware", choices=sorted(HARDWARE), default="b200",
                    help="preset giving the intensity I = peak FLOP/s / bandwidth")
    hw.add_argument("--intensity", type=finite_float, metavar="I",
                    help="custom intensity, FLOPs per byte (0 gives the FLOPs-only law)")
    parser.add_argument("--budget", type=int, metavar="B",
                        help="tokens attended per step (topk; blocktopk: local + k*block)")
    parser.add_argument("--block-size", type=int, metavar="b", help="block top-k block size, tokens")
    parser.add_argument("--topk-blocks", type=int, metavar="k",
                        help="block top-k: blocks kept per step (instead of --budget)")
    parser.add_argument("--local", type=int, default=0, metavar="W",
                        help="block top-k local window, tokens")
    parser.add_argument("--batch-size", type=int, metavar="BS",
                        help="count parameter reads, amortized over this decode batch "
                        "(off by default, as in the paper)")
    add_param_count(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def attention_from_args(args: argparse.Namespace) -> AttentionConfig:
    """Validate the method flags into an AttentionConfig (InputError on misuse)."""
    if args.method == "dense":
        extra = [f for f in ("budget", "block_size", "topk_blocks") if getattr(args, f) is not None]
        if extra or args.local:
            raise InputError("--method dense takes no --budget/--block-size/--topk-blocks/--local")
        return AttentionConfig.dense()
    if args.method == "topk":
        if args.budget is None:
            raise InputError("--method topk needs --budget")
        if args.block_size is not None or args.topk_blocks is not None or args.local:
            raise InputError("--method topk takes no --block-size/--topk-blocks/--local")
        return AttentionConfig.topk(args.budget)
    if args.block_size is None:
        raise InputError("--method blocktopk needs --block-size")
    return AttentionConfig.blocktopk(args.block_size, topk_blocks=args.topk_blocks,
                                     budget=args.budget, local=args.local)


def run(args: argparse.Namespace) -> int:
    for flag in ("prompt_len", "gen_len"):
        if getattr(args, flag) < 0:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 0 tokens")
    if args.trials < 1:
        raise InputError("--trials must be at least 1")
    model = with_param_count(get_model(args.model, args.model_config), args.param_count)
    attention = attention_from_args(args)
    intensity = resolve_intensity(args.hardware, args.intensity)
    cost = query_cost(model, attention, args.prompt_len, args.gen_len, args.trials,
                      batch_size=args.batch_size)
    compute, memory = float(cost.compute_flops), float(cost.memory_bytes)
    result = {
        "model": model.name,
        "method": attention.method,
        "config": attention.label,
        "prompt_len": args.prompt_len,
        "gen_len": args.gen_len,
        "trials": args.trials,
        "budget": attention.budget,
        "block_size": attention.block_size,
        "topk_blocks": attention.topk_blocks,
        "local": attention.local if attention.method == "blocktopk" else None,
        "batch_size": args.batch_size,
        "active_params": model.active_params,
        "param_count": args.param_count,
        "hardware": None if args.intensity is not None else args.hardware,
        "intensity": intensity,
        "compute_flops": compute,
        "memory_bytes": memory,
        "eflops": compute + intensity * memory,
        "flops_only_eflops": compute,
        "memory_share": intensity * memory / (compute + intensity * memory) if compute else 0.0,
    }
    if args.json:
        print(dumps_json(result))
        return 0
    print(f"{model.name}  {attention.label}  S={args.prompt_len} T={args.gen_len} N={args.trials}"
          f"  I={intensity:g} FLOPs/byte")
    print(f"  compute  {compute:.4e} FLOPs")
    print(f"  memory   {memory:.4e} bytes  (x I = {intensity * memory:.4e} FLOPs)")
    print(f"  eFLOPs   {result['eflops']:.4e}  ({100 * result['memory_share']:.1f}% from memory)")
    return 0
