"""The GPU regression gate (``kinetics bench --gate BASELINE``, ``nox -s gpu``).

The baseline JSON (benchmarks/baseline/gpu.json) holds a :class:`BenchConfig` and the
speedup floors; one run of :func:`kinetics.bench.decode.compare_decode` at that
configuration must reach them with every in-run correctness check passing.

An optional ``layer`` list adds decoder-layer gates: each entry names a
``batch_size`` and floors for the fused layer (``layer_impl`` of the config, default
fused) at that batch, attention included: ``min_speedup`` / ``min_speedup_triton``
(dense layer ms / block top-k layer ms) and ``min_dense_fraction_of_copy`` (the dense
layer's bytes per second over the copy bandwidth of the same run).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from kinetics.bench.decode import BENCH_METHODS, BenchConfig, compare_decode, format_table
from kinetics.errors import InputError
from kinetics.jsonfile import read_json_object

FLOOR_KEYS = {"speedup": "min_speedup", "speedup_triton": "min_speedup_triton"}
LAYER_FLOOR_KEYS = {**FLOOR_KEYS, "dense_fraction_of_copy": "min_dense_fraction_of_copy"}


def _positive(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and value > 0)


def _check_layer_gates(data: dict[str, Any], path: Path) -> None:
    gates = data.get("layer", [])
    if not isinstance(gates, list):
        raise InputError("expected a list", path=str(path), field="layer")
    for i, gate in enumerate(gates):
        where = f"layer[{i}]"
        if not isinstance(gate, dict):
            raise InputError("expected an object", path=str(path), field=where)
        batch = gate.get("batch_size")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InputError("expected a positive integer", path=str(path),
                             field=f"{where}.batch_size")
        for name in LAYER_FLOOR_KEYS.values():
            if name in gate and not _positive(gate[name]):
                raise InputError("expected a positive number", path=str(path),
                                 field=f"{where}.{name}")


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read a GPU gate baseline (InputError naming the file and field on problems)."""
    path = Path(path)
    data = read_json_object(path)
    for name in FLOOR_KEYS.values():
        floor = data.get(name)
        if floor is None and name != "min_speedup":
            continue
        if not _positive(floor):
            raise InputError("expected a positive number", path=str(path), field=name)
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise InputError("expected an object", path=str(path), field="config")
    known = set(BenchConfig.__dataclass_fields__)  # other top-level keys are notes
    unknown = set(config) - known
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}", path=str(path), field="config")
    _check_layer_gates(data, path)
    return data


def _layer_gate(cfg: BenchConfig, gate: dict[str, Any], printer) -> tuple[bool, dict]:
    """One decoder-layer gate: (passed, record)."""
    lcfg = replace(cfg, attention_only=False, batch_size=gate["batch_size"])
    result = compare_decode(lcfg, BENCH_METHODS, check=True)
    values = {**result.speedups,
              "dense_fraction_of_copy": result.methods["dense"].fraction_of_copy}
    floors = {key: float(gate[name]) for key, name in LAYER_FLOOR_KEYS.items() if name in gate}
    ok = {key: values[key] >= floor for key, floor in floors.items()}
    printer(format_table(result))
    for key, floor in floors.items():
        printer(f"gate: layer batch {lcfg.batch_size} {key} {values[key]:.2f} vs floor "
                f"{floor:.2f} ({'ok' if ok[key] else 'BELOW FLOOR'})")
    passed = all(ok.values()) and result.checks_passed
    return passed, {"batch_size": lcfg.batch_size, "values": values, "floors": floors,
                    "checks_ok": result.checks_passed, "passed": passed,
                    "result": result.to_dict()}


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
    layers = [_layer_gate(cfg, gate, printer) for gate in baseline.get("layer", [])]
    passed = passed and all(ok for ok, _ in layers)
    printer(f"gate: checks {'ok' if result.checks_passed else 'FAILED'} -> "
            f"{'PASS' if passed else 'FAIL'}")
    if json_out is not None:
        record = {**result.to_dict(), "gate": {
            "baseline": str(baseline_path), "floors": floors, "speedup_ok": speed,
            "checks_ok": result.checks_passed, "passed": passed,
            "layer": [rec for _, rec in layers]}}
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(record, indent=2) + "\n")
    return 0 if passed else 1
