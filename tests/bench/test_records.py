"""Bench records read back (kinetics.bench.records, ``kinetics bench --from-json``): no GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kinetics.bench import records
from kinetics.bench.floors import ReadCurve, cell_limits
from kinetics.bench.layer import DecodeComparison, MethodTiming
from kinetics.bench.spec import DecodeSpec
from kinetics.bench.tp import TpLayerTiming
from kinetics.bench.whole_model import StepTiming
from kinetics.cli import main
from kinetics.errors import InputError
from tests.schemas import validate

GRID = Path(__file__).resolve().parents[1] / "data" / "bench" / "grid-synthetic.json"
VARIANTS = GRID.with_name("grid-variants-synthetic.json")  # cells that timed every variant
ENV = {"device": "NVIDIA H200", "date": "2000-01-01 00:00 UTC", "versions": {}}


@pytest.fixture
def grid() -> dict:
    return json.loads(GRID.read_text())


def _decode_record(scope="layer") -> dict:
    t = {m: MethodTiming(ms, ms, ms, 1.0, 1.0, 1.0, 0.5) for m, ms in
         (("dense", 0.17), ("blocktopk", 0.07))}
    return DecodeComparison(ENV, DecodeSpec(), scope, "fused", 100, 4, 1, 128, 4200.0,
                            methods=t).to_dict()


def _model_record() -> dict:
    spec = DecodeSpec(tp=1, batch_size=32)
    rows = [StepTiming(spec, m, "fused", "model", ms, ms, ms, 1e10, 4200.0).to_dict()
            for m, ms in (("dense", 22.3), ("blocktopk", 7.1))]
    return {"kind": "model", **ENV, "rows": rows}


def _tp_record() -> dict:
    spec = DecodeSpec(tp=2, batch_size=32, context=32768)
    rows = [TpLayerTiming(spec, m, "fused", "nccl", "NVIDIA H200", ms, ms, 0.02, 2 * ms,
                          [ms, ms]).to_dict() for m, ms in (("dense", 0.59), ("blocktopk", 0.15))]
    return {"kind": "tp", **ENV, "rows": rows}


def test_kinds_new_and_old(grid):
    assert records.record_kind(grid) == "grid"
    assert records.record_kind({"cells": [], "spec": {"page_size": 16}}) == "grid"  # old
    assert records.record_kind({"read": [], "empty_launch_ms": 0.001}) == "read-curve"
    assert records.record_kind({"baseline": "x", "cells": []}) == "gate"
    assert records.record_kind({"versions": {}, "layer_b64_fused": []}) == "e2e"
    for bad in ([1, 2], {"what": 1}):
        with pytest.raises(InputError, match="kinetics bench record"):
            records.record_kind(bad, "x.json")


def test_grid_markdown_rows_and_floor_share(grid):
    text = records.grid_markdown(grid)
    lines = text.splitlines()
    assert lines[0] == "**qwen3-8b tp 8.**"
    assert "1,024 tokens: ms (sel / attn)" in lines[2] and "floor)" in lines[2]
    row = next(line for line in lines if line.startswith("| 16k | 64 |"))
    cell = grid["cells"][0]
    assert f"{cell['blocktopk_ms']:.4f} ({cell['selection_ms']['bitonic']:.4f} bi" in row
    assert f"{cell['speedup']:.2f}x / {cell['byte_roofline']:.2f}x" in row
    flat = {**grid, "spec": grid["spec"]["base"], "read_curve": None}  # an old record
    assert "floor)" not in records.grid_markdown(flat)


def test_floor_table_own_or_given_curve(grid):
    own = records.floor_table(grid)
    assert own.splitlines()[-1].startswith("2 cells with dense >= 0.1 ms")
    slower = ReadCurve((1e6, 1e9), (0.02, 2.5), 0.01)
    assert records.floor_table({**grid, "read_curve": None}, slower) != own
    with pytest.raises(InputError, match="no read curve"):
        records.floor_table({**grid, "read_curve": None})


def test_step_cells_of_each_kind():
    layer = records.step_cells(_decode_record())
    assert [c.label for c in layer] == ["layer b64 tp8 dense", "layer b64 tp8 blocktopk"]
    assert layer[1].measured_ms == 0.07 and layer[1].topk_pages == 64
    assert records.step_cells(_decode_record("attention")) == []
    model = records.step_cells(_model_record())
    assert [(c.scope, c.batch_size, c.tp, c.measured_ms) for c in model] == [
        ("model", 32, 1, 22.3), ("model", 32, 1, 7.1)]
    tp = records.step_cells(_tp_record())
    assert [(c.scope, c.tp, c.measured_ms) for c in tp] == [("layer", 2, 0.59),
                                                           ("layer", 2, 0.15)]
    old = {"versions": {"device": "NVIDIA H200"}, "copy_gbps": 4199.0, "layer_b64_fused": [
        {"model": "qwen3-8b", "method": "dense", "impl": "fused", "scope": "layer",
         "batch": 64, "context": 16384, "tp": 8, "ms": 0.2375}]}
    (cell,) = records.step_cells(old)
    assert (cell.batch_size, cell.measured_ms) == (64, 0.2375)
    assert records.device(old) == "NVIDIA H200" and records.copy_gbps(old) == 4199.0
    assert records.copy_gbps(_model_record()) == 4200.0


def test_cli_from_json_grid_tables_and_figure(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["bench", "--from-json", str(GRID), "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "**qwen3-8b tp 8.**" in text and "share at 4-kernel floor" in text
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_cli_from_json_cost_model_table(tmp_path, capsys):
    paths = []
    for name, record in (("layer", _decode_record()), ("model", _model_record()),
                         ("tp", _tp_record())):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(record))
    plot = tmp_path / "cost.png"
    assert main(["bench", "--from-json", *map(str, paths), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("cost model (h200, copy 4200 GB/s) vs measured")
    for label in ("layer b64 tp8 dense", "model b32 tp1 blocktopk", "layer b32 tp2 blocktopk"):
        assert label in text
    assert "speedup model b32 tp1 blocktopk: measured 3.14x" in text
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("content,match", [
    ('{"what": 1}', "not a kinetics bench record"),
    ("[1]", "expected a JSON object"),
    ("{", ""),
])
def test_cli_from_json_bad_records_exit_2(content, match, tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(content)
    assert main(["bench", "--from-json", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and match in err[0]


def test_cli_from_json_combinations(tmp_path, capsys):
    curve = tmp_path / "floors.json"
    curve.write_text(json.dumps({"read": [{"mb": 1, "read_ms": 0.002},
                                          {"mb": 1000, "read_ms": 0.25}],
                                 "empty_launch_ms": 0.001}))
    attention = tmp_path / "attention.json"
    attention.write_text(json.dumps(_decode_record("attention")))
    layer = tmp_path / "layer.json"
    layer.write_text(json.dumps(_decode_record()))
    assert main(["bench", "--from-json", str(GRID), str(curve)]) == 0
    assert "share at 1-launch floor" in capsys.readouterr().out
    for argv, match in (([str(curve)], "read-curve record goes with"),
                        ([str(attention)], "no layer or whole-model step"),
                        ([str(GRID), str(layer), "--plot", str(tmp_path / "x.png")],
                         "--plot draws one figure")):
        assert main(["bench", "--from-json", *argv]) == 2
        assert match in capsys.readouterr().err


def test_grid_markdown_of_a_variants_record_shows_every_step_and_the_one_launch_floor():
    record = json.loads(VARIANTS.read_text())
    lines = records.grid_markdown(record).splitlines()
    assert "1,024 tokens: ms (fused / separate / fused fp8 / separate fp8)" in lines[2]
    assert "1-launch floor share, of floor)" in lines[2]
    row = next(line for line in lines if line.startswith("| 16k | 64 |"))
    assert "0.0245 fus (0.0245 / 0.0290 / 0.0231 / 0.0262)" in row
    limit = next(x for x in cell_limits(record, ReadCurve.from_dict(
        record["read_curve"])) if x.context == 16384)
    assert (f"; {100 * limit.one_launch_floor_share:.0f}%, "
            f"{100 * limit.of_one_launch_floor:.0f}%)") in row
    row = next(line for line in lines if line.startswith("| 64k | 16 |"))
    assert "0.0250 sep (0.0196 / 0.0250 / 0.0188 / 0.0231)" in row


def test_compare_grids_lists_the_slower_cells_and_each_variant():
    old, new = json.loads(GRID.read_text()), json.loads(VARIANTS.read_text())
    text, slower = records.compare_grids(old, new)
    lines = text.splitlines()
    # 16k: 0.0245 / 0.029; 64k: 0.025 / 0.025 (the old rule's separate step, unchanged)
    assert lines[0] == ("block top-k step: 2 cells, new/old median 0.922, range 0.845-1.000")
    assert "separate step: 2 cells, new/old median" in text
    assert slower == 0 and lines[-1] == "0 cells slower than before by more than 5%."
    text, slower = records.compare_grids(new, old, tolerance=0.1)
    assert slower == 1 and text.splitlines()[-1].startswith("  qwen3-8b 16k batch 64 64 pages:")
    assert records.compare_grids(old, {**new, "cells": []}) == (
        "no cell in both grid records", 0)


def test_relabel_takes_the_current_rules_measured_step():
    new = records.relabel_default_impl(json.loads(VARIANTS.read_text()))
    by_context = {c["context"]: c for c in new["cells"]}
    # both cells are fused under today's default_impl (rows 64 and 16, 1,024 and 4,096 pages)
    assert [by_context[k]["impl"] for k in (16384, 65536)] == ["fused", "fused"]
    cell = by_context[65536]
    assert cell["blocktopk_ms"] == cell["step_ms"]["fused"] == 0.0196
    assert cell["speedup"] == pytest.approx(cell["dense_ms"] / 0.0196)
    assert cell["share_of_roofline"] == pytest.approx(cell["speedup"] / cell["byte_roofline"])
    assert "relabelled" in new
    with pytest.raises(InputError, match="timed every block top-k variant"):
        records.relabel_default_impl(json.loads(GRID.read_text()))


def test_cli_relabel_writes_the_record_and_compares_two_grids(tmp_path, capsys):
    out = tmp_path / "relabelled.json"
    assert main(["bench", "--from-json", str(VARIANTS), "--relabel", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"re-labelled (written to {out})" in text and "0.0196 fus" in text
    written = validate(json.loads(out.read_text()), "bench-record")
    assert written["cells"][1]["impl"] == "fused"
    assert written["provenance"]["command"] == f"kinetics bench --from-json {VARIANTS} --relabel {out}"
    assert "measured_provenance" not in written  # the measuring run left none
    assert main(["bench", "--from-json", str(VARIANTS), "--relabel", str(out)]) == 2
    assert "--force" in capsys.readouterr().err  # no silent overwrite
    for argv in ([str(GRID), "--relabel", str(tmp_path / "x.json")],
                 [str(VARIANTS), str(GRID), "--relabel", str(tmp_path / "y.json")]):
        assert main(["bench", "--from-json", *argv]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["bench", "--from-json", str(GRID), str(VARIANTS)]) == 0
    text = capsys.readouterr().out
    assert f"## {VARIANTS} against {GRID}" in text
    assert "0 cells slower than before by more than 5%." in text


def test_relabel_keeps_the_measuring_runs_provenance(tmp_path):
    """A re-labelled grid is this run's output (its provenance) of another run's
    measurements (``measured_provenance``, kept through a second re-labelling)."""
    from kinetics.provenance import provenance

    measured = provenance(["kinetics", "bench", "--grid"], device="NVIDIA H200").to_dict()
    source = tmp_path / "grid.json"
    source.write_text(json.dumps({**json.loads(VARIANTS.read_text()), "provenance": measured}))
    once, twice = tmp_path / "once.json", tmp_path / "twice.json"
    assert main(["bench", "--from-json", str(source), "--relabel", str(once)]) == 0
    assert main(["bench", "--from-json", str(once), "--relabel", str(twice)]) == 0
    first, second = (validate(json.loads(p.read_text()), "bench-record") for p in (once, twice))
    assert first["measured_provenance"] == second["measured_provenance"] == measured
    assert first["provenance"]["command"].endswith(f"--relabel {once}")
    assert second["provenance"]["command"].endswith(f"--relabel {twice}")
