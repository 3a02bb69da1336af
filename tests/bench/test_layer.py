"""The one-GPU layer / attention benchmark and the gate without a GPU: tables, records,
baselines, and ``kinetics bench`` failing with one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kinetics.bench import gate, spec
from kinetics.bench.layer import DecodeComparison, MethodCheck, MethodTiming, format_table
from kinetics.bench.spec import DecodeSpec
from kinetics.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(spec, "gpu_available", lambda: (False, "no CUDA GPU (test)"))


@pytest.mark.parametrize("argv", [
    ["bench", "--model", "qwen3-8b", "--method", "blocktopk", "--context", "16384",
     "--batch-size", "64", "--page-size", "16", "--topk-pages", "64", "--tp", "8",
     "--attention-only", "--json"],
    ["bench", "--gate", "benchmarks/baseline/gpu.json", "--json-out", "unused.json"],
    ["bench", "--distributed", "--tp", "8", "--method", "both"],
    ["bench", "--whole-model", "--tp", "1", "--batch-size", "8"],
    ["bench", "--distributed", "--whole-model", "--method", "dense"],
    ["bench", "--layer-impl", "reference", "--batch-size", "256"],
    ["bench", "--grid", "--grid-contexts", "16384", "--json-out", "unused.json"],
])
def test_bench_without_gpu_exits_2_with_one_line(argv, no_gpu, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "no GPU" in lines[0]


@pytest.mark.parametrize("argv", [
    ["bench", "--page-size", "12"],
    ["bench", "--topk-pages", "0"],
    ["bench", "--tp", "3"],
    ["bench", "--model", "nope"],
    ["bench", "--repeats", "0"],
    ["bench", "--grid", "--grid-contexts", "16k"],
    ["bench", "--grid", "--grid-batches", "0"],
    ["bench", "--grid", "--grid-models", "qwen3-8b,nope"],
    ["bench", "--grid", "--grid-budget-tokens", "1000"],
    ["bench", "--grid", "--repeats", "0"],
    ["bench", "--grid", "--time-budget", "0"],
])
def test_bench_bad_flags_exit_2(argv, no_gpu, capsys):
    assert main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


GOOD_CELL = {"model": "qwen3-8b", "context": 16384, "batch_size": 64, "topk_pages": 64,
             "speedup": 4.5, "byte_roofline": 10.6, "min_speedup": 3.6}


@pytest.mark.parametrize("cell,field", [
    ({**GOOD_CELL, "min_speedup": "fast"}, "cells[0].min_speedup"),
    ({**GOOD_CELL, "context": 0}, "cells[0].context"),
    ({**GOOD_CELL, "batch_size": 2.5}, "cells[0].batch_size"),
    ({k: v for k, v in GOOD_CELL.items() if k != "byte_roofline"}, "cells[0].byte_roofline"),
    ({**GOOD_CELL, "model": 8}, "cells[0].model"),
    ({**GOOD_CELL, "replicas": True}, "cells[0].replicas"),
    ({**GOOD_CELL, "speed": 1}, "cells[0]"),
    ({**GOOD_CELL, "topk_pages": 5000}, "cells[0]"),
])
def test_gate_bad_baseline(cell, field, tmp_path, no_gpu, capsys):
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"config": {}, "cells": [cell]}))
    assert main(["bench", "--gate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"field '{field}'" in err and str(path) in err and len(err.strip().splitlines()) == 1


def test_stored_baseline_is_valid():
    baseline = gate.load_baseline(ROOT / "benchmarks" / "baseline" / "gpu.json")
    cells = baseline.cells
    assert len(cells) >= 3
    keys = {(c.spec.model, c.spec.context, c.spec.batch_size, c.spec.topk_pages)
            for c in cells}
    assert set(gate.GATE_CELLS) <= keys  # standard point, long-CoT 64k and 128k, GQA group 8
    for c in cells:
        assert 1 < c.min_speedup <= c.speedup <= c.byte_roofline
        c.spec.validate()


def test_baseline_from_grid_round_trips(tmp_path):
    grid = {"device": "GPU", "date": "today", "versions": {"torch": "2"},
            "spec": {"base": DecodeSpec().to_dict()},
            "cells": [{**GOOD_CELL, "replicas": 5, "speedup": 4.47, "byte_roofline": 10.59}]}
    data = gate.baseline_from_grid(grid, cells=[("qwen3-8b", 16384, 64, 64)])
    assert data["cells"][0]["min_speedup"] == 3.5  # floor(0.8 * 4.47, 0.1)
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(data))
    baseline = gate.load_baseline(path)
    (cell,) = baseline.cells
    assert cell.spec.replicas == 5 and baseline.repeats == 100
    assert (cell.speedup, cell.byte_roofline, cell.min_speedup) == (4.47, 10.59, 3.5)
    with pytest.raises(KeyError):
        gate.baseline_from_grid(grid, cells=[("qwen3-8b", 8192, 64, 64)])


def _timing(ms, frac=0.92, **parts):
    return MethodTiming(ms, ms, ms, 64 / (ms * 1e-3), 1e6, 2700.0, frac, **parts)


def _comparison(dense_ms=0.2, sparse_ms=0.04, fraction=0.9, layer_err=None, scope="attention"):
    methods = {"dense": _timing(dense_ms, fraction),
               "blocktopk": _timing(sparse_ms, 0.2, selection_ms=0.015,
                                    sparse_attention_ms=0.025)}
    return DecodeComparison(
        {"device": "GPU", "date": "today", "versions": {"torch": "2.x"}}, DecodeSpec(), scope,
        "fused", 100, 4, 1, 128, 2900.0, methods=methods,
        checks={"dense": MethodCheck(True, 1e-3, True)},
        layer_rel_errs={} if layer_err is None else {"dense": layer_err})


def test_format_table_and_json_record():
    result = _comparison(0.2, 0.04)
    text = format_table(result)
    assert "speedup blocktopk over dense: 5.00x" in text and "attention only" in text
    assert "0.0150" in text
    assert "1.00e-03" in text and "FAIL" not in text
    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert record["kind"] == "decode" and record["scope"] == "attention"
    assert record["speedup"] == pytest.approx(5.0) and record["checks_passed"] is True
    assert record["roofline_speedup"] == pytest.approx(1.0)  # both timings say 1e6 bytes
    assert record["methods"]["blocktopk"]["selection_ms"] == 0.015
    assert "selection_ms" not in record["methods"]["dense"]
    assert record["spec"]["topk_pages"] == 64 and record["device"] == "GPU"
    assert "layer_impl" not in record
    layer = _comparison(scope="layer", layer_err=2e-3).to_dict()
    assert layer["layer_impl"] == "fused" and layer["layer_rel_err_vs_reference"]
    only = _comparison()
    del only.methods["blocktopk"]
    assert only.speedup is None and "speedup" not in only.to_dict()


def test_baseline_unknown_config_key(tmp_path):
    from kinetics.errors import InputError

    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"config": {"contexts": 1}, "cells": [GOOD_CELL]}))
    with pytest.raises(InputError, match="unknown keys"):
        gate.load_baseline(path)
    path.write_text(json.dumps({"config": {"attention_only": True}, "cells": [GOOD_CELL]}))
    with pytest.raises(InputError, match="unknown keys"):
        gate.load_baseline(path)
    path.write_text(json.dumps({"config": {"repeats": 0}, "cells": [GOOD_CELL]}))
    with pytest.raises(InputError, match="positive"):
        gate.load_baseline(path)
    path.write_text(json.dumps({"config": {}, "cells": []}))
    with pytest.raises(InputError, match="non-empty list"):
        gate.load_baseline(path)


@pytest.mark.parametrize("layer_ms,fraction,layer_err,code", [
    (0.05, 0.7, 1e-3, 0),     # layer speedup 4x, 70% of copy: above the floors
    (0.1, 0.7, 1e-3, 1),      # layer speedup 2x: below min_speedup 3
    (0.05, 0.4, 1e-3, 1),     # dense layer at 40% of copy: below 0.5
    (0.05, 0.7, 5e-2, 1),     # fused layer disagrees with the reference layer
])
def test_gate_layer_floors(tmp_path, monkeypatch, layer_ms, fraction, layer_err, code):
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"config": {"repeats": 7}, "cells": [{**GOOD_CELL,
                                                                     "min_speedup": 3}],
                                "layer": [{"batch_size": 256, "min_speedup": 3,
                                           "min_dense_fraction_of_copy": 0.5}]}))
    calls = []

    def fake_compare(spec, methods, *, scope, repeats, layer_impl="fused", **_):
        calls.append((spec, scope, repeats, layer_impl))
        if scope == "attention":
            return _comparison(0.2, 0.04, 0.9)
        return _comparison(0.2, layer_ms, fraction, layer_err, scope="layer")

    monkeypatch.setattr(gate, "compare_decode", fake_compare)
    run = gate.run_gate(path, printer=lambda *_: None)
    assert run.code == code
    assert [c[1] for c in calls] == ["attention", "layer"]
    assert calls[1][0].batch_size == 256 and calls[1][3] == "fused"
    assert {c[2] for c in calls} == {7}  # the baseline's replays, both scopes
    record = json.loads(json.dumps(run.record, allow_nan=False))
    assert record["kind"] == "gate"
    assert record["layer"][0]["passed"] is (code == 0) and record["cells"][0]["gate"]["passed"]
    assert record["passed"] is (code == 0)


@pytest.mark.parametrize("layer,field", [
    ({"min_speedup": 2}, "layer[0].batch_size"),
    ({"batch_size": 64, "min_dense_fraction_of_copy": -1}, "layer[0].min_dense_fraction_of_copy"),
    ("fast", "layer[0]"),
    ({"batch_size": 64, "min_speedup_triton": 2}, "layer[0]"),
])
def test_baseline_bad_layer_gate(tmp_path, layer, field):
    from kinetics.errors import InputError

    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"config": {}, "cells": [GOOD_CELL], "layer": [layer]}))
    with pytest.raises(InputError, match="expected|unknown keys") as err:
        gate.load_baseline(path)
    assert field in str(err.value)


@pytest.mark.parametrize("argv", [
    ["bench", "--attention-only", "--json-out", "{f}"],
    ["bench", "--gate", "benchmarks/baseline/gpu.json", "--json-out", "{f}"],
    ["bench", "--grid", "--grid-contexts", "16384", "--plot", "{f}"],
])
def test_bench_never_replaces_a_users_file(argv, tmp_path, capsys, monkeypatch):
    """An existing --json-out / --plot file is refused before any work (GPU or not),
    byte for byte untouched; --force is the way to replace it."""
    monkeypatch.chdir(ROOT)
    mine = tmp_path / "mine.csv"
    mine.write_text("user data\n")
    assert main([a.format(f=mine) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--force" in err[0]
    assert mine.read_text() == "user data\n"


def test_builders_reject_bad_input_before_any_gpu_work():
    torch = pytest.importorskip("torch")
    from kinetics.errors import InputError

    with pytest.raises(InputError, match="unknown method"):
        spec.paged_attend(DecodeSpec(), "sparse", 4, 1, 64, dtype=torch.float32, device="cpu",
                          seed=0)
    with pytest.raises(InputError, match="unknown method"):
        spec.make_decoder(DecodeSpec(), "sparse", None, 4)


@pytest.mark.parametrize("with_provenance", [False, True])
def test_the_gate_prints_the_baselines_provenance_and_records_it(tmp_path, monkeypatch, capsys,
                                                                 with_provenance):
    """`kinetics bench --gate` end to end (timings faked): the first line names what made
    the baseline (or that an old one says nothing), the --json-out record keeps it and
    fits the bench-record schema."""
    from kinetics.provenance import describe_provenance, provenance
    from tests.schemas import errors, validate

    made = provenance(["kinetics", "bench", "--grid"], device="NVIDIA H200").to_dict()
    data = {"config": {"repeats": 3}, "cells": [{**GOOD_CELL, "min_speedup": 3}]}
    if with_provenance:
        data["provenance"] = made
    path, out = tmp_path / "gpu.json", tmp_path / "gate.json"
    path.write_text(json.dumps(data))
    validate(data, "gate-baseline")
    monkeypatch.setattr(spec, "gpu_available", lambda: (True, "stub GPU"))
    monkeypatch.setattr(gate, "compare_decode", lambda *a, **kw: _comparison(0.2, 0.04))
    assert main(["bench", "--gate", str(path), "--json-out", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    if with_provenance:
        assert first == f"gate: {describe_provenance(made)}"
        assert "device NVIDIA H200" in first and made["date"] in first
    else:
        assert first == "gate: baseline has no provenance record"
    record = validate(json.loads(out.read_text()), "bench-record")
    assert record["baseline_provenance"] == (made if with_provenance else None)
    assert record["provenance"]["command"] == f"kinetics bench --gate {path} --json-out {out}"
    assert errors({k: v for k, v in record.items() if k != "provenance"}, "bench-record")
    assert errors({**record, "passed": "yes"}, "bench-record")
