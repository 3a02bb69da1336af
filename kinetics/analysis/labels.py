"""Display names shared by the report's figures and its terminal table (no matplotlib)."""

from __future__ import annotations

LAW_TITLES = {"kinetics": "Kinetics law (eFLOPs, I = {I} FLOPs/byte)",
              "flops": "FLOPs-only law (I = 0)"}
LAW_UNITS = {"kinetics": "eFLOPs", "flops": "FLOPs"}
STRATEGY_NAMES = {"best_of_n": "Best-of-N", "long_cot": "long CoT"}
METHOD_NAMES = {"dense": "dense", "topk": "top-k", "blocktopk": "block top-k"}


def format_intensity(intensity: float) -> str:
    """I for a title: 562.5 -> '562.5', 295.373 -> '295.4', 12345.6 -> '12,346'."""
    return f"{intensity:,.0f}" if intensity >= 1e4 else f"{intensity:.4g}"
