"""The JSON Schemas shipped in kinetics/schemas: valid draft 2020-12, in the wheel,
in step with the code's names, strict, and usable by check-jsonschema as shipped."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from kinetics.jsonfile import SCHEMA_DIR, SCHEMAS, load_schema, schema_path
from kinetics.provenance import provenance
from tests.schemas import errors, validate

ROOT = Path(__file__).resolve().parents[1]
GATE_BASELINE = ROOT / "benchmarks" / "baseline" / "gpu.json"


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_schema_is_valid_draft_2020_12(name):
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_the_shipped_files_are_the_named_schemas():
    assert sorted(p.name for p in SCHEMA_DIR.iterdir()) == sorted(
        f"{name}.schema.json" for name in SCHEMAS)
    with pytest.raises(ValueError, match="unknown schema"):
        schema_path("nope")


def test_the_wheel_carries_the_schemas():
    """pyproject's package-data globs (relative to the kinetics package) match every schema
    file, so a built wheel holds them."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = project["tool"]["setuptools"]["package-data"]["kinetics"]
    for path in SCHEMA_DIR.iterdir():
        name = path.relative_to(ROOT / "kinetics").as_posix()
        assert any(fnmatch.fnmatch(name, g) for g in globs), name
    test_extra = project["project"]["optional-dependencies"]["test"]
    assert any(req.startswith("jsonschema") for req in test_extra)  # tests/schemas.py


def test_the_summary_schema_names_what_the_code_names():
    from kinetics.analysis.frontier import LAWS
    from kinetics.analysis.report import SUMMARY_STRATEGIES
    from kinetics.models import PARAM_COUNTS

    props = load_schema("summary")["properties"]
    entry = props["entries"]["items"]["properties"]
    assert tuple(entry["law"]["enum"]) == LAWS
    assert tuple(entry["strategy"]["enum"]) == SUMMARY_STRATEGIES
    assert tuple(props["param_count"]["enum"]) == PARAM_COUNTS


def test_the_gate_baseline_schema_names_what_the_reader_takes():
    from kinetics.bench.gate import CELL_KEYS, LAYER_FLOOR_KEYS, RUN_KEYS, SPEC_KEYS

    props = load_schema("gate-baseline")["properties"]
    assert set(props["config"]["properties"]) == SPEC_KEYS | set(RUN_KEYS)
    assert set(props["cells"]["items"]["properties"]) == CELL_KEYS
    assert set(props["layer"]["items"]["properties"]) == {"batch_size",
                                                          *LAYER_FLOOR_KEYS.values()}


def test_the_committed_gate_baseline_fits_with_or_without_provenance():
    data = json.loads(GATE_BASELINE.read_text())
    validate(data, "gate-baseline")  # written before provenance existed: still valid
    validate({**data, "provenance": provenance([]).to_dict()}, "gate-baseline")
    assert errors({**data, "provenance": {"kinetics": "0.1.0"}}, "gate-baseline")
    assert errors({k: v for k, v in data.items() if k != "cells"}, "gate-baseline")
    bad_cell = {**data["cells"][0], "min_speedup": "4.3"}
    assert errors({**data, "cells": [bad_cell]}, "gate-baseline")
    assert errors({**data, "cells": [{**data["cells"][0], "floor": 1}]}, "gate-baseline")


def test_a_baseline_made_from_a_grid_record_fits_and_keeps_its_provenance():
    from kinetics.bench.gate import baseline_from_grid

    grid = json.loads((ROOT / "tests" / "data" / "bench" / "grid-synthetic.json").read_text())
    record = provenance(["kinetics", "bench", "--grid"]).to_dict()
    cells = [(c["model"], c["context"], c["batch_size"], c["topk_pages"])
             for c in grid["cells"][:2]]
    assert "provenance" not in validate(baseline_from_grid(grid, cells), "gate-baseline")
    made = validate(baseline_from_grid({**grid, "provenance": record}, cells), "gate-baseline")
    assert made["provenance"] == record


@pytest.mark.parametrize("record,missing", [
    ({"kind": "tp", "command": "kinetics bench"}, "provenance"),
    ({"kind": "tp", "provenance": None}, "command"),
    ({"command": "kinetics bench", "provenance": None}, "kind"),
])
def test_a_bench_record_without_its_kind_command_or_provenance_fails(record, missing):
    assert any(missing in message for message in errors(record, "bench-record"))


@pytest.mark.skipif(shutil.which("check-jsonschema") is None
                    and not (Path(sys.executable).parent / "check-jsonschema").exists(),
                    reason="check-jsonschema is not installed")
def test_check_jsonschema_resolves_the_shipped_provenance_reference(tmp_path):
    """As a user runs it: `check-jsonschema --schemafile kinetics/schemas/summary...`; the
    $ref to provenance.schema.json is read from beside the schema file."""
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent
                                                  / "check-jsonschema")
    data = json.loads(GATE_BASELINE.read_text())
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({**data, "provenance": provenance([]).to_dict()}))
    bad.write_text(json.dumps({**data, "provenance": {"kinetics": 1}}))
    schema = str(schema_path("gate-baseline"))
    ok = subprocess.run([exe, "--schemafile", schema, str(good)], capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    fails = subprocess.run([exe, "--schemafile", schema, str(bad)], capture_output=True,
                           text=True, timeout=120)
    assert fails.returncode == 1 and "provenance" in fails.stdout + fails.stderr
