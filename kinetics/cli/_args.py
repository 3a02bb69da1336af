"""Flag types, flags and helpers shared by several subcommands.

Import-light on purpose: every subcommand's parser is built from here for
``kinetics --help``, which must not import pandas, torch or matplotlib.
"""

from __future__ import annotations

import argparse
import math
import sys

from kinetics.errors import InputError


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan``, ``inf`` rejected with exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_ints(text: str, flag: str) -> list[int]:
    """``"64,128"`` -> ``[64, 128]`` (order kept); InputError naming ``flag`` unless every
    value is an integer >= 1 and there is at least one."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag} expects comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"{flag} needs integers >= 1, got {text!r}")
    return values


def model_config_pair(text: str) -> tuple[str, str]:
    """argparse type: ``NAME=PATH`` -> (name, path); anything else exits 2 with one line."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), path.strip()


def add_model_config(parser: argparse.ArgumentParser, what: str = "") -> None:
    """The one ``--model-config NAME=PATH`` flag (repeatable) of every command that reads
    models: a local HF config.json (or its folder) for a model that is not a preset."""
    parser.add_argument("--model-config", action="append", default=[], type=model_config_pair,
                        metavar="NAME=PATH",
                        help="a local HF config.json (or its folder) for model NAME, "
                        f"which is not a preset (repeatable){what}")


def model_configs(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``--model-config`` pairs -> {model name: path}, each name as
    :func:`kinetics.models.model_key` spells it (so ``Qwen/Qwen3-4B=`` and ``qwen3-4b=``
    name the same model, as in a trial table); InputError on a model given twice."""
    from kinetics.models import model_key

    out: dict[str, str] = {}
    for name, path in pairs:
        key = model_key(name)
        if key in out and out[key] != path:
            raise InputError(f"--model-config {name} given twice ({out[key]}, {path})")
        out[key] = path
    return out


def add_hardware(parser: argparse.ArgumentParser, default: str | None = "b200") -> None:
    """The shared ``--hardware NAME | --intensity I`` pair (exclusive) of the commands that
    price with the Kinetics law; ``default=None`` leaves both unset (e.g. to use a baseline's)."""
    from kinetics.hardware import HARDWARE

    hw = parser.add_mutually_exclusive_group()
    hw.add_argument("--hardware", choices=list(HARDWARE), default=default, metavar="NAME",
                    help="hardware preset giving the intensity I = dense peak FLOP/s / "
                    f"bandwidth: {', '.join(HARDWARE)} (-fp8: the FP8 tensor-core peak; "
                    "b200 is the paper's FP8 figure; docs/cost-model.md)")
    hw.add_argument("--intensity", type=finite_float, metavar="I",
                    help="custom intensity, FLOPs per byte (0 gives the FLOPs-only law)")


def add_cost_settings(parser: argparse.ArgumentParser, *,
                      baseline: bool = False) -> None:
    """The shared ``--kv-dtype``, ``--weight-dtype`` and ``--batch-size`` flags
    (kinetics.cost.CostSettings); ``baseline=True`` leaves them unset (``kinetics check``
    then uses its baseline's)."""
    from kinetics.cost import KV_DTYPES, WEIGHT_DTYPES

    default = None if baseline else "bf16"
    parser.add_argument("--kv-dtype", choices=list(KV_DTYPES), default=default,
                        help="KV-cache element type: bf16 (2 bytes, the paper's) or fp8 "
                        "(1 byte); scales every KV byte")
    parser.add_argument("--weight-dtype", choices=list(WEIGHT_DTYPES), default=default,
                        help="weight type of the parameter reads --batch-size counts: bf16 "
                        "(2 bytes), fp8 (1) or int4 (0.5; group scales not counted)")
    parser.add_argument("--batch-size", type=int, metavar="BS",
                        help="count parameter reads, amortized over this decode batch "
                        + ("(default: the baseline's)" if baseline
                           else "(off by default, as in the paper)"))


def cost_settings(kv_dtype: str | None, weight_dtype: str | None, batch_size: int | None):
    """The flags as a kinetics.cost.CostSettings (unset dtypes are bf16); InputError for a
    weight dtype other than bf16 without --batch-size, which would change nothing."""
    from kinetics.cost import DEFAULT_DTYPE, CostSettings

    weight_dtype = weight_dtype or DEFAULT_DTYPE
    if weight_dtype != DEFAULT_DTYPE and batch_size is None:
        raise InputError(f"--weight-dtype {weight_dtype} prices parameter reads, which only "
                         "--batch-size BS counts (off by default, as in the paper)")
    return CostSettings(kv_dtype or DEFAULT_DTYPE, weight_dtype, batch_size)


def add_param_count(parser: argparse.ArgumentParser, default: str | None = "published") -> None:
    """The shared ``--param-count published|derived`` flag of the commands that price models."""
    from kinetics.models import PARAM_COUNTS

    parser.add_argument(
        "--param-count", choices=PARAM_COUNTS, default=default,
        help="parameters P priced at 2P FLOPs a token: 'published' (the paper's counts, e.g. "
        "Qwen3-30B-A3B 3.3B active) or 'derived' from the shapes (the matrices a decode step "
        "multiplies: non-embedding weights plus the LM head once; 30B-A3B 3.04B)")


def show_progress(quiet: bool) -> bool:
    """Progress is shown only when stderr is a terminal and not ``--quiet``."""
    return not quiet and sys.stderr.isatty()


def progress(iterable=None, *, total: int | None = None, desc: str, unit: str, quiet: bool):
    """A tqdm bar on stderr, shown when :func:`show_progress` says so."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, file=sys.stderr, desc=desc, unit=unit, leave=False,
                disable=not show_progress(quiet))


def command_line(args: argparse.Namespace) -> list[str]:
    """This run's command line, program first: ``["kinetics", *words]`` (the words
    :func:`kinetics.cli.main` recorded in ``args.argv``; the command's name alone when a
    caller built ``args`` itself)."""
    words = getattr(args, "argv", None)
    if words is None:
        words = [getattr(args, "command", None) or ""]
    return ["kinetics", *[w for w in words if w != ""]]


def run_provenance(args: argparse.Namespace, device: str | None = None) -> dict:
    """The JSON object of this run's :class:`kinetics.provenance.Provenance` (its command
    line from :func:`command_line`), for the ``"provenance"`` key of an output."""
    from kinetics.provenance import provenance

    return provenance(command_line(args), device).to_dict()


def torch_device(text: str, flag: str = "--device"):
    """The ``torch.device`` of a ``--device`` value: ``cpu``, or a CUDA device that is
    there; InputError (one line) for any other type or a missing GPU. Imports torch."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise InputError(f"{flag} {text}: {str(exc).splitlines()[0][:160]}") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"{flag} {text}: only cpu and cuda devices are supported")
    if device.type == "cuda" and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise InputError(f"{flag} {text}: no such CUDA device here")
    return device
