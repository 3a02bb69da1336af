"""The GPU regression gate (``kinetics bench --gate BASELINE``, ``nox -s gpu``).

The baseline JSON (benchmarks/baseline/gpu.json) holds a :class:`BenchConfig` and the
speedup floors; one run of :func:`kinetics.bench.decode.compare_decode` at that
configuration must reach them with every in-run correctness check passing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from kinetics.bench.decode import BENCH_METHODS, BenchConfig, compare_decode, format_table
from kinetics.errors import InputError
from kinetics.jsonfile import read_json_object

FLOOR_KEYS = {"speedup": "min_speedup", "speedup_triton": "min_speedup_triton"}


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read a GPU gate baseline (InputError naming the file and field on problems)."""
    path = Path(path)
    data = read_json_object(path)
    for name in FLOOR_KEYS.values():
        floor = data.get(name)
        if floor is None and name != "min_speedup":
            continue
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) \
                or not math.isfinite(floor) or floor <= 0:
            raise InputError("expected a positive number", path=str(path), field=name)
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise InputError("expected an object", path=str(path), field="config")
    known = set(BenchConfig.__dataclass_fields__)  # other top-level keys are notes
    unknown = set(config) - known
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}", path=str(path), field="config")
    return data


def run_gate(baseline_path: str | Path, json_out: str | Path | None = None,
             printer=print) -> int:
    """The GPU regression gate: 0 if block top-k's speedup over dense (dense ms / block
    top-k ms, selection included) is at least the baseline's ``min_speedup`` (and the
    Triton-attention variant's at least ``min_speedup_triton``, if stored) and every
    in-run correctness check passed, else 1."""
    baseline = load_baseline(baseline_path)
    cfg = BenchConfig(**baseline.get("config", {}))
    result = compare_decode(cfg, BENCH_METHODS, check=True)
    floors = {key: float(baseline[name]) for key, name in FLOOR_KEYS.items()
              if baseline.get(name) is not None}
    speed = {key: result.speedups[key] >= floor for key, floor in floors.items()}
    passed = all(speed.values()) and result.checks_passed
    printer(format_table(result))
    for key, floor in floors.items():
        printer(f"gate: {key} {result.speedups[key]:.2f}x vs floor {floor:.2f}x "
                f"({'ok' if speed[key] else 'BELOW FLOOR'})")
    printer(f"gate: checks {'ok' if result.checks_passed else 'FAILED'} -> "
            f"{'PASS' if passed else 'FAIL'}")
    if json_out is not None:
        record = {**result.to_dict(), "gate": {
            "baseline": str(baseline_path), "floors": floors, "speedup_ok": speed,
            "checks_ok": result.checks_passed, "passed": passed}}
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(record, indent=2) + "\n")
    return 0 if passed else 1
