"""Flag types and parsers shared by several subcommands."""

from __future__ import annotations

import argparse
import math

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


def parse_model_configs(values: list[str]) -> dict[str, str]:
    """``--model-config NAME=PATH`` pairs -> dict (InputError on a malformed one)."""
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputError(f"--model-config expects NAME=PATH, got {value!r}")
        out[name.strip()] = path.strip()
    return out
