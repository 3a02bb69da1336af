"""Read floors (kinetics.bench.floors): the curve, the per-cell floor, the table."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinetics.bench import floors, grid


def _curve(points, launch=0.001) -> floors.ReadCurve:
    sizes = tuple(s for s, _ in points)
    return floors.ReadCurve(sizes, tuple(ms for _, ms in points), launch)


@st.composite
def curves(draw):
    n = draw(st.integers(2, 12))
    sizes = sorted(draw(st.lists(st.floats(1e5, 1e10), min_size=n, max_size=n, unique=True)))
    ms = draw(st.lists(st.floats(1e-4, 10.0), min_size=n, max_size=n))
    return floors.ReadCurve(tuple(sizes), tuple(ms), draw(st.floats(1e-4, 1e-2)))


@given(curve=curves())
def test_envelope_is_nondecreasing_and_below_the_measurements(curve):
    env = curve.envelope()
    assert all(a <= b for a, b in zip(env, env[1:], strict=False))
    assert all(e <= m for e, m in zip(env, curve.ms, strict=True))
    assert env[-1] == curve.ms[-1]


@given(curve=curves(), a=st.floats(1e4, 1e11), b=st.floats(1e4, 1e11))
def test_floor_grows_with_the_bytes(curve, a, b):
    lo, hi = sorted((a, b))
    assert 0 < curve.floor_ms(lo) <= curve.floor_ms(hi) * (1 + 1e-9)


@given(curve=curves())
def test_floor_passes_through_the_envelope_and_scales_past_the_last_size(curve):
    env = curve.envelope()
    for size, e in zip(curve.sizes, env, strict=True):
        assert curve.floor_ms(size) == pytest.approx(e, rel=1e-9)
    assert curve.floor_ms(3 * curve.sizes[-1]) == pytest.approx(3 * env[-1], rel=1e-9)
    assert curve.floor_ms(curve.sizes[0] / 2) == env[0]


def test_floor_interpolates_in_log_log():
    curve = _curve([(1e6, 0.001), (4e6, 0.004)])
    assert curve.floor_ms(2e6) == pytest.approx(0.002)  # the line through both points


def test_bad_curves_are_rejected():
    with pytest.raises(ValueError, match="two"):
        _curve([(1e6, 0.001)])
    with pytest.raises(ValueError, match="ascending"):
        _curve([(2e6, 0.001), (1e6, 0.002)])
    with pytest.raises(ValueError, match="positive"):
        _curve([(1e6, 0.0), (2e6, 0.002)])
    with pytest.raises(ValueError, match="positive"):
        _curve([(1e6, 0.001), (2e6, 0.002)], launch=-1.0)


@given(curve=curves())
def test_curve_round_trips_through_its_dict(curve):
    assert floors.ReadCurve.from_dict(curve.to_dict()) == curve


def test_curve_reads_the_exploration_record():
    record = {"read": [{"mb": 4.0, "read_ms": 0.003}, {"mb": 1.0, "read_ms": 0.002}],
              "empty_launch_ms": 0.001}
    curve = floors.ReadCurve.from_dict(record)
    assert curve.sizes == (1e6, 4e6) and curve.ms == (0.002, 0.003)
    assert curve.launch_ms == 0.001


@given(context=st.sampled_from(grid.GRID_CONTEXTS), batch=st.sampled_from(grid.GRID_BATCHES),
       pages=st.sampled_from((64, 128)), model=st.sampled_from(grid.GRID_MODELS))
def test_the_floor_parts_add_up_to_the_step(context, batch, pages, model):
    cell, spec = grid.GridCell(model, context, batch, pages), grid.GridSpec()
    parts = cell.spec(spec).step_bytes("blocktopk")
    assert parts.selection + parts.attention == pytest.approx(cell.step_bytes(spec)[1],
                                                              rel=1e-12)


# The _record cell: Qwen3-8B tp 8 (4 q heads, 1 KV head, head_dim 128), 1,024 pages of
# 16, 64 kept; bytes worked out by hand
SELECTION = 64 * 1 * (1024 - 1) * (128 * 2 + 4)  # page means + page table
ATTENTION = 2 * 64 * 1 * 64 * 16 * 128 * 2 + 2 * 64 * 4 * 128 * 2  # K/V + q, out


def _record(dense_ms=0.1354, blocktopk_ms=0.0285):
    cell = grid.GridCell("qwen3-8b", 16384, 64, 64)
    dense_b, sparse_b = cell.step_bytes(grid.GridSpec())
    return {"cells": [{"model": cell.model, "context": 16384, "batch_size": 64,
                       "topk_pages": 64, "dense_ms": dense_ms, "blocktopk_ms": blocktopk_ms,
                       "dense_bytes": dense_b, "blocktopk_bytes": sparse_b}]}


def test_cell_floor_is_its_two_reads_and_two_launches():
    curve = _curve([(1e6, 0.002), (1e9, 0.25)], launch=0.001)
    (limit,) = floors.cell_limits(_record(), curve)
    parts = grid.GridCell("qwen3-8b", 16384, 64, 64).spec(grid.GridSpec()).step_bytes(
        "blocktopk")
    assert (parts.selection, parts.attention) == (SELECTION, ATTENTION)
    expected = curve.floor_ms(SELECTION) + curve.floor_ms(ATTENTION) + 2 * 0.001
    assert limit.floor_ms == pytest.approx(expected, rel=1e-12)
    spec = grid.GridCell("qwen3-8b", 16384, 64, 64).spec(grid.GridSpec())
    assert floors.spec_floor_ms(spec, curve) == pytest.approx(expected, rel=1e-12)
    assert floors.spec_floor_ms(spec, curve, launches=0) == pytest.approx(expected - 0.002)
    assert limit.budget_tokens == 1024
    assert limit.speedup == pytest.approx(0.1354 / 0.0285)
    assert limit.floor_share == pytest.approx(0.1354 / expected / limit.byte_roofline)
    assert limit.of_floor == pytest.approx(expected / 0.0285)


def test_one_launch_floor_is_one_read_of_both_parts_and_one_launch():
    curve = _curve([(1e6, 0.002), (1e9, 0.25)], launch=0.001)
    (limit,) = floors.cell_limits(_record(), curve)
    # log-log line through (1e6, 0.002) and (1e9, 0.25), at the sum of the two parts
    slope = math.log(0.25 / 0.002) / math.log(1e9 / 1e6)
    read = 0.002 * ((SELECTION + ATTENTION) / 1e6) ** slope
    assert limit.one_launch_floor_ms == pytest.approx(read + 0.001, rel=1e-9)
    assert limit.one_launch_floor_ms < limit.floor_ms  # one read of the sum, one launch
    assert limit.of_one_launch_floor == pytest.approx(limit.one_launch_floor_ms / 0.0285)
    assert limit.one_launch_floor_share == pytest.approx(
        0.1354 / limit.one_launch_floor_ms / limit.byte_roofline)


@given(curve=curves(), a=st.floats(1e4, 1e10), b=st.floats(1e4, 1e10))
def test_one_launch_floor_is_at_least_the_larger_read_and_a_launch(curve, a, b):
    one = floors.one_launch_floor_ms(a, b, curve)
    assert one >= curve.floor_ms(max(a, b)) + curve.launch_ms - 1e-12


def test_dependent_floor_is_the_two_reads_in_turn_and_one_launch():
    curve = _curve([(1e6, 0.002), (1e9, 0.25)], launch=0.001)
    (limit,) = floors.cell_limits(_record(), curve)
    slope = math.log(0.25 / 0.002) / math.log(1e9 / 1e6)
    reads = 0.002 * ((SELECTION / 1e6) ** slope + (ATTENTION / 1e6) ** slope)
    assert limit.dependent_floor_ms == pytest.approx(reads + 0.001, rel=1e-9)
    assert limit.dependent_floor_ms == pytest.approx(limit.floor_ms - 0.001, rel=1e-9)
    assert limit.of_dependent_floor == pytest.approx(limit.dependent_floor_ms / 0.0285)
    assert limit.dependent_floor_share == pytest.approx(
        0.1354 / limit.dependent_floor_ms / limit.byte_roofline)


@given(curve=curves(), a=st.floats(1e4, 1e10), b=st.floats(1e4, 1e10))
def test_dependent_floor_is_the_four_kernel_floor_less_a_launch(curve, a, b):
    """Reading in turn costs at least reading the larger part (the curve is
    non-decreasing) and exactly one launch less than the four-kernel floor."""
    dep = floors.dependent_floor_ms(a, b, curve)
    assert dep >= curve.floor_ms(max(a, b)) + curve.launch_ms - 1e-12
    assert dep == pytest.approx(floors.blocktopk_floor_ms(a, b, curve) - curve.launch_ms)


def test_limits_table_counts_met_and_reachable_cells():
    curve = _curve([(1e6, 0.002), (1e9, 0.25)], launch=0.001)
    (limit,) = floors.cell_limits(_record(blocktopk_ms=0.06), curve)
    fast = floors.CellLimit(**{**limit.__dict__, "blocktopk_ms": limit.floor_ms})
    small = floors.CellLimit(**{**limit.__dict__, "dense_ms": 0.05})
    assert limit.share < limit.floor_share
    target = (limit.share + limit.floor_share) / 2  # met by `fast` only, allowed for both
    text = floors.format_limits([limit, fast, small], target_share=target)
    assert text.count("| qwen3-8b |") == 2  # the 0.05 ms dense cell is left out
    one = sum(x.one_launch_floor_share >= target for x in (limit, fast))
    dep = sum(x.dependent_floor_share >= target for x in (limit, fast))
    assert dep == 2  # one launch less than the four-kernel floor, which allows both
    assert text.splitlines()[-1] == (
        f"2 cells with dense >= 0.1 ms: 1 at >= {target:.0%} of the byte roofline measured; "
        f"the four-kernel floor allows it in 2, the one-launch floor in {one}, the "
        f"dependent one-launch floor in {dep}.")
    assert math.isclose(fast.of_floor, 1.0)
