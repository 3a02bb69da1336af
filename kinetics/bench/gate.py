"""The GPU regression gate (``kinetics bench --gate BASELINE``, ``nox -s gpu``).

The baseline JSON (benchmarks/baseline/gpu.json) holds the settings shared by its
cells (``config``: :class:`~kinetics.bench.spec.DecodeSpec` fields, and ``repeats``
and ``layer_impl`` of the run) and a list of ``cells``, each one object with its
``model``, ``context``, ``batch_size``, ``topk_pages`` (optionally ``replicas``), the
``speedup`` and ``byte_roofline`` of the run that set it (so its share of the roofline
reads off the file) and its floor ``min_speedup``. One attention-only
:func:`kinetics.bench.layer.compare_decode` run per cell must reach the floor with
every in-run correctness check passing.

An optional ``layer`` list adds decoder-layer gates at the shared ``config`` (model,
context and budget default to the standard point): each entry names a ``batch_size``
and floors for the layer (``layer_impl`` of the config, default fused) at that
batch, attention included: ``min_speedup`` (dense layer ms / block top-k layer ms) and
``min_dense_fraction_of_copy`` (the dense layer's bytes per second over the copy
bandwidth of the same run).

An optional ``provenance`` object (:mod:`kinetics.provenance`) says what made the
baseline; the gate prints it in one line before the cells (or that the file has none)
and its record (``--json-out``) keeps it as ``baseline_provenance``. The file's JSON
Schema is ``kinetics/schemas/gate-baseline.schema.json``.

``versions`` records the torch, triton and flashinfer the floors were set with (the
pins of benchmarks/gpu/constraints.txt, which the GPU workflow installs). The gate
refuses (one line, exit 2) to compare a run on other versions with those floors
unless told to (``--allow-version-mismatch``): :func:`version_mismatches`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from kinetics.bench.layer import compare_decode, format_table
from kinetics.bench.spec import METHODS, DecodeSpec
from kinetics.errors import InputError
from kinetics.jsonfile import read_json_object
from kinetics.provenance import describe_provenance, installed_version

CELL_SIZES = ("context", "batch_size", "topk_pages")
CELL_NUMBERS = ("speedup", "byte_roofline", "min_speedup")
CELL_KEYS = frozenset(("model", "replicas", *CELL_SIZES, *CELL_NUMBERS))
RUN_KEYS = {"repeats": 100, "layer_impl": "fused"}  # config keys beside the spec's
SPEC_KEYS = frozenset(f.name for f in fields(DecodeSpec))
# the libraries whose versions a baseline records: import name -> distribution name
PINNED = {"torch": "torch", "triton": "triton", "flashinfer": "flashinfer-python"}
LAYER_FLOOR_KEYS = {"speedup": "min_speedup", "dense_fraction_of_copy": "min_dense_fraction_of_copy"}


@dataclass(frozen=True)
class GateCell:
    """One gated attention-only workload with its recorded speedup and floor."""

    spec: DecodeSpec
    speedup: float
    byte_roofline: float
    min_speedup: float


def _positive(value: Any, integer: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return math.isfinite(value) and value > 0


def _cell(raw: Any, i: int, base: DecodeSpec, path: Path) -> GateCell:
    where = f"cells[{i}]"
    if not isinstance(raw, dict):
        raise InputError("expected an object", path=str(path), field=where)
    unknown = set(raw) - CELL_KEYS
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}", path=str(path), field=where)
    if not isinstance(raw.get("model"), str):
        raise InputError("expected a model name", path=str(path), field=f"{where}.model")
    optional = {"replicas"} - set(raw)
    for key in sorted(set(CELL_KEYS) - {"model"} - optional):
        if not _positive(raw.get(key), integer=key not in CELL_NUMBERS):
            raise InputError("expected a positive number", path=str(path),
                             field=f"{where}.{key}")
    spec = replace(base, **{k: raw[k] for k in ("model", "replicas", *CELL_SIZES) if k in raw})
    try:
        spec.validate()
    except InputError as exc:
        raise InputError(str(exc), path=str(path), field=where) from None
    return GateCell(spec, float(raw["speedup"]), float(raw["byte_roofline"]),
                    float(raw["min_speedup"]))


@dataclass(frozen=True)
class Baseline:
    """A parsed gate baseline: attention-only cells, the shared spec and run settings
    (replays, layer implementation), layer gates, and the file's provenance (None in a
    file written before provenance existed; never checked, only reported)."""

    cells: list[GateCell]
    spec: DecodeSpec
    repeats: int = 100
    layer_impl: str = "fused"
    layer: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] | None = None  # the file's provenance record, if it has one
    versions: dict[str, str] = field(default_factory=dict)


def running_versions() -> dict[str, str]:
    """The installed versions of :data:`PINNED` (by import name; those installed), each
    module's own ``__version__`` first (:func:`kinetics.provenance.installed_version`,
    importing it)."""
    out = {}
    for name, dist in PINNED.items():
        version = installed_version(name, (dist,), import_module=True)
        if version is not None:
            out[name] = version
    return out


def version_mismatches(recorded: Mapping[str, str], running: Mapping[str, str]) -> list[str]:
    """One 'name recorded X, running Y' per library of ``recorded`` whose running version
    differs (or is missing: 'running none'); versions compare as written, local labels
    (``+cu130``) included. Empty when ``recorded`` is empty."""
    return [f"{name} recorded {want}, running {running.get(name, 'none')}"
            for name, want in sorted(recorded.items()) if running.get(name) != want]


def check_versions(recorded: Mapping[str, str], running: Mapping[str, str],
                   allow: bool = False, what: str = "the baseline") -> list[str]:
    """InputError (exit 2) naming every mismatch unless ``allow``; returns the mismatches."""
    mismatches = version_mismatches(recorded, running)
    if mismatches and not allow:
        raise InputError(f"the installed libraries are not those of {what} ("
                         f"{'; '.join(mismatches)}): the floors do not apply; install the "
                         "pinned ones (benchmarks/gpu/constraints.txt) or pass "
                         "--allow-version-mismatch")
    return mismatches


def read_constraints(path: str | Path) -> dict[str, str]:
    """The ``name==version`` pins of a pip constraints file, keyed by import name (for
    :data:`PINNED`'s distributions; comments, options and other lines skipped)."""
    by_dist = {dist: name for name, dist in PINNED.items()}
    out = {}
    for line in Path(path).read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+)", line)
        if match and match.group(1).lower() in by_dist:
            out[by_dist[match.group(1).lower()]] = match.group(2)
    return out


def _check_versions_field(data: dict[str, Any], path: Path) -> dict[str, str]:
    versions = data.get("versions", {})
    if not isinstance(versions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in versions.items()):
        raise InputError("expected an object of version strings", path=str(path),
                         field="versions")
    unknown = set(versions) - set(PINNED)
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}", path=str(path), field="versions")
    return dict(versions)


def _check_layer_gates(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    gates = data.get("layer", [])
    if not isinstance(gates, list):
        raise InputError("expected a list", path=str(path), field="layer")
    for i, gate in enumerate(gates):
        where = f"layer[{i}]"
        if not isinstance(gate, dict):
            raise InputError("expected an object", path=str(path), field=where)
        if not _positive(gate.get("batch_size"), integer=True):
            raise InputError("expected a positive integer", path=str(path),
                             field=f"{where}.batch_size")
        unknown = set(gate) - {"batch_size", *LAYER_FLOOR_KEYS.values()}
        if unknown:
            raise InputError(f"unknown keys {sorted(unknown)}", path=str(path), field=where)
        for name in LAYER_FLOOR_KEYS.values():
            if name in gate and not _positive(gate[name], integer=False):
                raise InputError("expected a positive number", path=str(path),
                                 field=f"{where}.{name}")
    return gates


def load_baseline(path: str | Path) -> Baseline:
    """Read a GPU gate baseline (InputError naming the file and field on problems)."""
    path = Path(path)
    data = read_json_object(path)
    common = data.get("config", {})
    if not isinstance(common, dict):
        raise InputError("expected an object", path=str(path), field="config")
    unknown = set(common) - SPEC_KEYS - set(RUN_KEYS)
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}", path=str(path), field="config")
    run = {k: common.get(k, default) for k, default in RUN_KEYS.items()}
    if not _positive(run["repeats"], integer=True):
        raise InputError("expected a positive integer", path=str(path), field="config.repeats")
    base = DecodeSpec(**{k: v for k, v in common.items() if k in SPEC_KEYS})
    cells = data.get("cells")
    if not isinstance(cells, list) or not cells:
        raise InputError("expected a non-empty list of cells", path=str(path), field="cells")
    record = data.get("provenance")
    return Baseline([_cell(raw, i, base, path) for i, raw in enumerate(cells)], base,
                    run["repeats"], run["layer_impl"], _check_layer_gates(data, path),
                    record if isinstance(record, dict) else None,
                    _check_versions_field(data, path))


def _layer_gate(baseline: Baseline, gate: dict[str, Any], printer) -> tuple[bool, dict]:
    """One decoder-layer gate: (passed, record)."""
    spec = replace(baseline.spec, batch_size=gate["batch_size"])
    result = compare_decode(spec, METHODS, scope="layer", layer_impl=baseline.layer_impl,
                            repeats=baseline.repeats)
    values = {"speedup": result.speedup,
              "dense_fraction_of_copy": result.methods["dense"].fraction_of_copy}
    floors = {key: float(gate[name]) for key, name in LAYER_FLOOR_KEYS.items() if name in gate}
    ok = {key: values[key] >= floor for key, floor in floors.items()}
    printer(format_table(result))
    for key, floor in floors.items():
        printer(f"gate: layer batch {spec.batch_size} {key} {values[key]:.2f} vs floor "
                f"{floor:.2f} ({'ok' if ok[key] else 'BELOW FLOOR'})")
    passed = all(ok.values()) and result.checks_passed
    return passed, {"batch_size": spec.batch_size, "values": values, "floors": floors,
                    "checks_ok": result.checks_passed, "passed": passed,
                    "result": result.to_dict()}


@dataclass(frozen=True)
class GateRun:
    """The gate's verdict: ``code`` 0 (pass) or 1 (fail), and ``record``, the JSON-ready
    numbers of every cell and layer gate (the CLI writes it to ``--json-out``)."""

    code: int
    record: dict[str, Any]


def run_gate(baseline_path: str | Path, printer=print) -> GateRun:
    """The GPU regression gate: code 0 if, in every baseline cell, block top-k's speedup
    over dense (dense ms / block top-k ms, selection included) is at least the cell's
    ``min_speedup``, every layer gate holds and every in-run correctness check passed,
    else 1."""
    baseline = load_baseline(baseline_path)
    printer(f"gate: {describe_provenance(baseline.provenance)}")
    records, passed = [], True
    for cell in baseline.cells:
        result = compare_decode(cell.spec, METHODS, scope="attention", repeats=baseline.repeats)
        speedup = result.speedup
        ok = speedup >= cell.min_speedup and result.checks_passed
        passed = passed and ok
        printer(format_table(result))
        printer(f"gate: speedup {speedup:.2f}x vs floor {cell.min_speedup:.2f}x "
                f"(recorded {cell.speedup:.2f}x of {cell.byte_roofline:.2f}x), checks "
                f"{'ok' if result.checks_passed else 'FAILED'} -> {'ok' if ok else 'FAIL'}")
        records.append({**result.to_dict(), "gate": {
            "min_speedup": cell.min_speedup, "recorded_speedup": cell.speedup, "passed": ok}})
    layers = [_layer_gate(baseline, gate, printer) for gate in baseline.layer]
    passed = passed and all(ok for ok, _ in layers)
    printer(f"gate: {len(baseline.cells)} cells, {len(layers)} layer gates -> "
            f"{'PASS' if passed else 'FAIL'}")
    return GateRun(0 if passed else 1,
                   {"kind": "gate", "baseline": str(baseline_path),
                    "baseline_provenance": baseline.provenance, "passed": passed,
                    "cells": records,
                    "layer": [rec for _, rec in layers]})


GATE_CELLS = (("qwen3-8b", 16384, 64, 64), ("qwen3-8b", 65536, 16, 64),
              ("qwen3-8b", 131072, 16, 64),
              ("qwen3-32b", 16384, 64, 64))  # standard point, long-CoT 64k / 128k, GQA group 8
FLOOR_FRACTION = 0.8


def baseline_from_grid(grid: dict[str, Any], cells=GATE_CELLS,
                       fraction: float = FLOOR_FRACTION) -> dict[str, Any]:
    """A gate baseline from a recorded grid run (``GridResult.to_dict()``): each of
    ``cells`` (model, context, batch size, pages) with its recorded speedup, byte
    roofline and replicas, floor ``min_speedup`` = ``fraction`` x the speedup rounded
    down to 0.1; the grid record's provenance (what measured the numbers), when it has
    one. KeyError if a cell is missing from the run."""
    ran = {(c["model"], c["context"], c["batch_size"], c["topk_pages"]): c
           for c in grid["cells"]}
    spec = grid["spec"]
    base = spec.get("base", spec)  # flat in records made before the grid took a spec
    out = []
    for key in cells:
        c = ran[tuple(key)]
        out.append({"model": c["model"], "context": c["context"],
                    "batch_size": c["batch_size"], "topk_pages": c["topk_pages"],
                    "replicas": c["replicas"], "speedup": round(c["speedup"], 3),
                    "byte_roofline": round(c["byte_roofline"], 3),
                    "min_speedup": math.floor(fraction * c["speedup"] * 10) / 10})
    return {"description": "GPU regression gate for `kinetics bench --gate` (nox -s gpu): "
                           "in every cell, block top-k decode attention (selection included) "
                           "must be at least min_speedup times faster than dense decode, in "
                           "one run, with every in-run correctness check passing.",
            "config": {"page_size": base["page_size"], "tp": base["tp"],
                       "local_pages": base["local_pages"], "repeats": 100},
            "cells": out,
            **({"provenance": grid["provenance"]} if "provenance" in grid else {}),
            "versions": {k: v for k, v in grid["versions"].items() if k in PINNED},
            "how_set": f"min_speedup = {fraction:g} x the speedup of the grid run of "
                       f"{grid['date']} on {grid['device']} "
                       f"({', '.join(f'{k} {v}' for k, v in sorted(grid['versions'].items()))}),"
                       " rounded down to 0.1 (kinetics.bench.gate.baseline_from_grid); "
                       "see benchmarks/RESULTS.md."}


def pins_main(argv: list[str] | None = None) -> int:
    """``python -m kinetics.bench.gate CONSTRAINTS [--allow-version-mismatch]``: exit 2
    (one line) when the installed torch/triton/flashinfer differ from the pins of a
    constraints file (nox's GPU sessions run it first); 0, with a warning per mismatch
    under --allow-version-mismatch."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    allow = "--allow-version-mismatch" in args
    paths = [a for a in args if a != "--allow-version-mismatch"]
    if len(paths) != 1:
        print("usage: python -m kinetics.bench.gate CONSTRAINTS [--allow-version-mismatch]",
              file=sys.stderr)
        return 2
    try:
        mismatches = check_versions(read_constraints(paths[0]), running_versions(), allow,
                                    what=paths[0])
    except (InputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in mismatches:
        print(f"warning: {line} (--allow-version-mismatch)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(pins_main())
