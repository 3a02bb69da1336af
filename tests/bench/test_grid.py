"""The regime grid's pure parts (cells, replicas, table, JSON, figure): no GPU needed."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinetics.bench import grid
from kinetics.bench.spec import DecodeSpec
from kinetics.errors import InputError


def test_default_grid_is_the_issue_grid():
    cells, skipped = grid.grid_cells(grid.GridSpec())
    assert len(cells) + len(skipped) == 2 * 5 * 5 * 2
    assert not skipped  # every cell's K/V fits 2 replicas in 48 GB
    assert {c.topk_pages for c in cells} == {64, 128}
    assert cells[0] == grid.GridCell("qwen3-8b", 8192, 1, 64)


def test_cells_over_memory_or_context_are_skipped_with_a_reason():
    spec = grid.GridSpec(models=("qwen3-8b",), contexts=(512, 131072), batch_sizes=(256,),
                         budget_tokens=(1024,), memory_bytes=20e9)
    cells, skipped = grid.grid_cells(spec)
    assert cells == []
    reasons = {s.cell.context: s.reason for s in skipped}
    assert "exceeds the context" in reasons[512]
    assert "over 20 GB" in reasons[131072]  # 17.2 GB of K/V per replica


def test_bad_grid_input():
    with pytest.raises(InputError, match="unknown model"):
        grid.grid_cells(grid.GridSpec(models=("nope",)))
    with pytest.raises(InputError, match="whole number of pages"):
        grid.grid_cells(grid.GridSpec(budget_tokens=(1000,)))
    with pytest.raises(InputError, match="tp"):
        grid.grid_cells(grid.GridSpec(base=DecodeSpec(tp=3)))
    with pytest.raises(InputError, match="--repeats"):
        grid.grid_cells(grid.GridSpec(repeats=0))


def test_cells_take_the_base_spec():
    base = DecodeSpec(tp=4, page_size=32, local_pages=2, topk_kernel="bitonic",
                           dense_kernel="cuda-cores", seed=3)
    spec = grid.GridSpec(base=base, models=("qwen3-8b",), contexts=(8192,), batch_sizes=(4,),
                         budget_tokens=(1024,))
    (cell,), _ = grid.grid_cells(spec)
    assert cell.topk_pages == 32
    got = cell.spec(spec, replicas=3)
    assert got == DecodeSpec(model="qwen3-8b", tp=4, context=8192, batch_size=4,
                                  page_size=32, topk_pages=32, local_pages=2,
                                  topk_kernel="bitonic", dense_kernel="cuda-cores",
                                  replicas=3, seed=3)


def test_step_bytes_match_the_issue_numbers():
    dense, sparse = grid.GridCell("qwen3-8b", 16384, 64, 64).step_bytes(grid.GridSpec())
    assert dense == pytest.approx(537.0e6, rel=1e-3)
    assert dense / sparse == pytest.approx(10.59, abs=0.01)
    dense, sparse = grid.GridCell("qwen3-8b", 65536, 16, 64).step_bytes(grid.GridSpec())
    assert dense / sparse == pytest.approx(21.09, abs=0.01)


@given(dense=st.floats(1e6, 1e11), sparse=st.floats(1e5, 1e9), l2=st.floats(1e6, 1e8))
def test_replicas_stay_in_bounds(dense, sparse, l2):
    spec = grid.GridSpec()
    reps = grid.replicas_for(dense, sparse, spec, l2)
    assert 2 <= reps <= spec.max_replicas
    if reps > 2:  # more than the minimum only when memory holds them
        assert reps * dense <= spec.memory_bytes
    if reps < spec.max_replicas and reps * dense + dense <= spec.memory_bytes:
        assert reps * sparse >= spec.l2_multiple * l2  # enough to defeat the L2


def _result(cells=None) -> grid.GridResult:
    spec = grid.GridSpec()
    out = grid.GridResult("GPU", "today", {"torch": "2", "triton": "3"}, 4000.0, spec)
    for i, (ctx, batch) in enumerate(cells or [(16384, 64), (65536, 16), (65536, 64)]):
        cell = grid.GridCell("qwen3-8b", ctx, batch, 64)
        dense_b, sparse_b = cell.step_bytes(spec)
        out.cells.append(grid.CellResult(
            cell, 4, dense_b, sparse_b, dense_ms=0.134 * (i + 1), dense_fraction_of_copy=0.96,
            impl="fused", step_ms={"fused": 0.03, "separate": 0.031, "fused-fp8": 0.025},
            blocktopk_ms=0.03, checks_passed=i != 2,
            check_notes=("fused: rel err 2e-02",) if i == 2 else ()))
    out.skipped.append(grid.SkippedCell(grid.GridCell("qwen3-32b", 131072, 256, 128),
                                        "not reached within the time budget"))
    return out


def test_cell_result_ratios():
    r = _result().cells[0]
    assert r.speedup == pytest.approx(0.134 / 0.03)
    assert r.byte_roofline == pytest.approx(r.dense_bytes / r.blocktopk_bytes)
    assert r.share_of_roofline == pytest.approx(r.speedup / r.byte_roofline)


def test_table_lists_cells_failures_and_skips():
    text = grid.format_grid(_result())
    lines = text.splitlines()
    assert lines[0].startswith("GPU  today  copy 4000 GB/s")
    assert len(lines) == 2 + 3 + 1
    assert "4.47x" in lines[2] and "96.0%" in lines[2] and lines[2].endswith("ok")
    assert lines[2].split()[7:12] == ["0.0300", "fused", "0.0300", "0.0310", "0.0250"]
    assert "FAIL fused: rel err 2e-02" in lines[4]
    assert lines[5].startswith("skipped: qwen3-32b context 131072 batch 256 128 pages")


def test_json_holds_every_number():
    record = json.loads(json.dumps(_result().to_dict(), allow_nan=False))
    assert record["kind"] == "grid"
    assert record["spec"]["contexts"] == list(grid.GRID_CONTEXTS)
    assert record["spec"]["base"]["tp"] == 8 and record["spec"]["repeats"] == 20
    cell = record["cells"][0]
    assert (cell["model"], cell["context"], cell["batch_size"], cell["topk_pages"]) == \
        ("qwen3-8b", 16384, 64, 64)
    assert cell["speedup"] == pytest.approx(0.134 / 0.03)
    assert cell["step_ms"] == {"fused": 0.03, "separate": 0.031, "fused-fp8": 0.025}
    assert cell["impl"] == "fused" and cell["blocktopk_ms"] == 0.03
    assert math.isclose(cell["share_of_roofline"], cell["speedup"] / cell["byte_roofline"])
    assert record["cells"][2]["checks_passed"] is False
    assert record["skipped"][0]["reason"] == "not reached within the time budget"


def test_figure_has_one_panel_per_model_and_budget(tmp_path):
    result = _result()
    result.cells.append(grid.CellResult(
        grid.GridCell("qwen3-32b", 16384, 64, 128), 2, 5e8, 8e7, 0.13, 0.95, "fused",
        {"fused": 0.05}, 0.05, True))
    fig = grid.grid_figure(result.to_dict())
    assert len(fig.axes) == 2
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["qwen3-32b tp8, 2048 tokens", "qwen3-8b tp8, 1024 tokens"]
    assert len(fig.axes[1].get_lines()) == 2 * 2  # batches 16, 64: speedup and roofline
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_table_with_a_read_curve_adds_the_one_launch_floor_and_the_count():
    from kinetics.bench.floors import ReadCurve, cell_limits

    result = _result()
    curve = ReadCurve((1e6, 1e9), (0.002, 0.25), 0.001)
    assert grid.format_grid(result).splitlines()[2].split()[-4:-1] == ["-", "-", "-"]
    result.read_curve = curve
    lines = grid.format_grid(result).splitlines()
    # first cell: Qwen3-8B tp 8 (1 KV head, 4 q heads), 16k, batch 64, 64 of 1,024 pages
    selection = 64 * (1024 - 1) * (128 * 2 + 4)
    attention = 2 * 64 * 64 * 16 * 128 * 2 + 2 * 64 * 4 * 128 * 2
    floor_ms = curve.floor_ms(selection + attention) + 0.001  # one read, one launch
    cell = result.cells[0]
    assert lines[1].split()[-6:] == ["floor", "ms", "of", "floor", "@floor", "ok"]
    assert lines[2].split()[-4:-1] == [
        f"{floor_ms:.4f}", f"{floor_ms / cell.blocktopk_ms:.0%}",
        f"{cell.dense_ms / floor_ms / cell.byte_roofline:.0%}"]
    assert lines[-1].startswith("3 cells with dense >= 0.1 ms:")
    limit = cell_limits(result.to_dict(), curve)[0]
    assert limit.one_launch_floor_ms == pytest.approx(floor_ms)
    four = curve.floor_ms(selection) + curve.floor_ms(attention) + 2 * 0.001
    assert limit.floor_ms == pytest.approx(four)  # the four-kernel floor beside it
    record = json.loads(json.dumps(result.to_dict()))
    assert ReadCurve.from_dict(record["read_curve"]) == result.read_curve


def test_fp8_page_means_halve_the_selection_bytes():
    cell, spec = grid.GridCell("qwen3-8b", 16384, 64, 64), grid.GridSpec()
    _, bf16 = cell.step_bytes(spec)
    _, fp8 = cell.step_bytes(spec, "fp8")
    assert bf16 - fp8 == 64 * (1024 - 1) * 128  # one byte less per page-mean element


def test_a_variant_spec_takes_its_implementation_and_page_means():
    cell, spec = grid.GridCell("qwen3-8b", 16384, 64, 64), grid.GridSpec()
    assert (cell.spec(spec).blocktopk_impl, cell.spec(spec).page_means_dtype) == ("auto", "bf16")
    for name, (impl, means) in grid.VARIANTS.items():
        v = cell.spec(spec, 3, name)
        assert (v.blocktopk_impl, v.page_means_dtype, v.replicas) == (impl, means, 3)
        assert v.topk_kernel == spec.base.topk_kernel  # the separate variants honour --topk


def test_unknown_variant_is_an_input_error():
    with pytest.raises(InputError, match="unknown block top-k variants"):
        grid.grid_cells(grid.GridSpec(variants=("fused", "nope")))
    with pytest.raises(InputError, match="unknown block top-k variants"):
        grid.grid_cells(grid.GridSpec(variants=()))
