"""``kinetics cost``: exact decode cost of one query (all N samples together)."""

from __future__ import annotations

import argparse

from kinetics.cli._args import (
    add_cost_settings,
    add_hardware,
    add_model_config,
    add_param_count,
    cost_settings,
    model_configs,
    run_provenance,
)
from kinetics.cli._output import dumps_json
from kinetics.cost import MAX_TOKENS, METHODS, AttentionConfig, query_cost
from kinetics.errors import InputError
from kinetics.hardware import Hardware, get_hardware, resolve_intensity
from kinetics.models import MODELS, ModelSpec, get_model, model_key, with_param_count

DEFAULT_MODEL = "qwen3-8b"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Example: kinetics cost --model qwen3-8b --method blocktopk --prompt-len 128 "
        "--gen-len 32768 --samples 8 --block-size 16 --topk-blocks 64 --json. "
        "Another model: kinetics cost --model-config mine=path/to/config.json ..."
    )
    parser.add_argument("--model", metavar="NAME",
                        help=f"a preset ({', '.join(MODELS)}) or a NAME given by --model-config "
                        f"(default: the one --model-config, else {DEFAULT_MODEL})")
    add_model_config(parser)
    parser.add_argument("--method", choices=METHODS, default="dense",
                        help="decode attention: dense, oracle token top-k, or block top-k")
    parser.add_argument("--prompt-len", type=int, required=True, metavar="S",
                        help="prompt length, tokens (0 to 2**31)")
    parser.add_argument("--gen-len", type=int, required=True, metavar="T",
                        help="generated tokens per sample (0 to 2**31)")
    parser.add_argument("--samples", type=int, default=1, metavar="N",
                        help="Best-of-N samples decoded together (prompt KV shared for dense)")
    add_hardware(parser)
    parser.add_argument("--budget", type=int, metavar="B",
                        help="tokens attended per step (topk; blocktopk: local + k*block)")
    parser.add_argument("--block-size", type=int, metavar="b", help="block top-k block size, tokens")
    parser.add_argument("--topk-blocks", type=int, metavar="k",
                        help="block top-k: blocks kept per step (instead of --budget)")
    parser.add_argument("--local", type=int, default=0, metavar="W",
                        help="block top-k local window, tokens")
    add_cost_settings(parser)
    add_param_count(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def model_from_args(args: argparse.Namespace) -> ModelSpec:
    """``--model NAME`` (a preset or a ``--model-config`` name); with no ``--model``, the
    single ``--model-config`` given, else the default preset (InputError on ambiguity)."""
    configs = model_configs(args.model_config)
    name = args.model
    if name is None:
        if len(configs) > 1:
            raise InputError(f"several --model-config given ({', '.join(configs)}): "
                             "pick one with --model NAME")
        name = next(iter(configs), DEFAULT_MODEL)
    model = get_model(name, configs.get(model_key(name)), config_flag=True)
    return with_param_count(model, args.param_count)


# method flag -> (attribute, smallest value); each is at most MAX_TOKENS (2**31)
SIZE_FLAGS = {"--budget": ("budget", 1), "--block-size": ("block_size", 1),
              "--topk-blocks": ("topk_blocks", 0), "--local": ("local", 0),
              "--batch-size": ("batch_size", 1)}


def check_size_flags(args: argparse.Namespace) -> None:
    """InputError naming the flag for a size flag out of its range."""
    for flag, (name, low) in SIZE_FLAGS.items():
        value = getattr(args, name)
        if value is not None and not low <= value <= MAX_TOKENS:
            raise InputError(f"{flag} must be {low}..{MAX_TOKENS} (2**31), got {value}")


def attention_from_args(args: argparse.Namespace) -> AttentionConfig:
    """Validate the method flags into an AttentionConfig (InputError on misuse, naming
    the flag)."""
    check_size_flags(args)
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
        value = getattr(args, flag)
        if not 0 <= value <= MAX_TOKENS:
            raise InputError(f"--{flag.replace('_', '-')} must be 0..{MAX_TOKENS} (2**31) tokens, "
                             f"got {value}")
    if args.samples < 1:
        raise InputError("--samples must be at least 1")
    model = model_from_args(args)
    attention = attention_from_args(args)
    settings = cost_settings(args.kv_dtype, args.weight_dtype, args.batch_size)
    intensity = resolve_intensity(args.hardware, args.intensity)
    hardware = None if args.intensity is not None else get_hardware(args.hardware)
    cost = query_cost(model, attention, args.prompt_len, args.gen_len, args.samples,
                      settings.batch_size, settings.kv_dtype, settings.weight_dtype)
    compute, memory = float(cost.compute_flops), float(cost.memory_bytes)
    eflops = float(cost.eflops(intensity))
    result = {
        "model": model.name,
        "method": attention.method,
        "config": attention.label,
        "prompt_len": args.prompt_len,
        "gen_len": args.gen_len,
        "samples": args.samples,
        "budget": attention.budget,
        "block_size": attention.block_size,
        "topk_blocks": attention.topk_blocks,
        "local": attention.local if attention.method == "blocktopk" else None,
        "batch_size": settings.batch_size,
        "kv_dtype": settings.kv_dtype,
        "weight_dtype": settings.weight_dtype,
        "active_params": model.active_params,
        "param_count": args.param_count,
        "hardware": hardware.name if hardware else None,
        "intensity": intensity,
        "compute_flops": compute,
        "memory_bytes": memory,
        "eflops": eflops,
        "flops_only_eflops": compute,
        "memory_share": intensity * memory / eflops if compute else 0.0,
        **seconds(hardware, compute, memory),
    }
    if args.json:
        print(dumps_json({**result, "provenance": run_provenance(args)}))
        return 0
    print(f"{model.name}  {attention.label}  S={args.prompt_len} T={args.gen_len} N={args.samples}"
          f"  KV {settings.kv_dtype}" + (f", weights {settings.weight_dtype} at batch "
                                         f"{settings.batch_size}" if settings.batch_size else ""))
    print(f"  I = {intensity:g} FLOPs/byte" + (
        f": {hardware.name}, {_rate(hardware.peak_flops_per_s)}FLOP/s ({hardware.precision}) "
        f"over {_rate(hardware.memory_bytes_per_s)}B/s" if hardware else " (custom: no seconds)"))
    rows = [("compute", f"{compute:.4e} FLOPs", "compute_seconds"),
            ("memory", f"{memory:.4e} bytes  x I = {intensity * memory:.4e} FLOPs",
             "memory_seconds"),
            ("eFLOPs", f"{eflops:.4e} ({100 * result['memory_share']:.1f}% from memory)",
             "seconds")]
    for name, text, key in rows:
        secs = f"{result[key]:9.4g} s" if hardware else ""
        on = f" on {hardware.name}" if key == "seconds" and hardware else ""
        print(f"  {name:8} {text:43}{secs}{on}".rstrip())
    return 0


def _rate(value: float) -> str:
    """4.5e15 -> '4.5 P', 3.35e12 -> '3.35 T' (a unit follows)."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9)):
        if value >= scale:
            return f"{value / scale:g} {prefix}"
    return f"{value:g} "


def seconds(hardware: Hardware | None, compute_flops: float, memory_bytes: float) -> dict:
    """Time on ``hardware`` at its peaks: compute FLOPs / peak FLOP/s, memory bytes /
    bandwidth, and their sum (= eFLOPs / peak FLOP/s); None without a preset."""
    if hardware is None:
        return {"seconds": None, "compute_seconds": None, "memory_seconds": None}
    compute_s = compute_flops / hardware.peak_flops_per_s
    memory_s = memory_bytes / hardware.memory_bytes_per_s
    return {"seconds": compute_s + memory_s, "compute_seconds": compute_s,
            "memory_seconds": memory_s}
