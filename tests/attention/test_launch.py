"""Launch rules: the sparse attention's (:func:`kinetics.attention.decode.choose_launch`),
the fused kernel's (:func:`~kinetics.attention.decode.choose_fused_launch`) and the choice
between the fused and the separate kernels (:func:`~kinetics.attention.decode.default_impl`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinetics.attention.decode import (
    MAX_CANDIDATES,
    MAX_SPLITS,
    candidate_width,
    choose_fused_launch,
    choose_launch,
    default_impl,
    fused_pipeline,
)
from kinetics.attention.select import prev_pow2


@given(st.integers(1, 1 << 20))
def test_prev_pow2_is_the_largest_power_of_two_not_above(n):
    p = prev_pow2(n)
    assert p & (p - 1) == 0 and p <= n < 2 * p


@given(rows=st.integers(1, 4096), list_len=st.integers(1, 4096),
       page_size=st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]), sms=st.integers(1, 256))
def test_launch_covers_the_list_with_legal_tiles(rows, list_len, page_size, sms):
    tile_pages, splits = choose_launch(rows, list_len, page_size, sms)
    tiles = -(-list_len // tile_pages)
    assert tile_pages * page_size >= 16  # tl.dot's smallest tile
    assert tile_pages * page_size <= max(128, page_size)
    assert splits & (splits - 1) == 0 and 1 <= splits <= tiles  # no split without a tile
    assert rows * splits <= max(2 * rows, sms)  # at most ~one program per SM beyond 2/row


@pytest.mark.parametrize("rows,expected", [(16, (8, 8)), (64, (8, 2)), (256, (4, 2))])
def test_launch_is_the_measured_best_on_an_h200(rows, expected):
    """Batch 16 / 64 / 256 of one KV head, 64 pages of 16, 132 SMs: the fastest of the
    72 options timed per cell (benchmarks/RESULTS.md, 2026-11-30 sweep)."""
    assert choose_launch(rows, 64, 16, 132) == expected


# ------------------------------------------------------------------ fused kernel launch
@given(rows=st.integers(1, 1024), max_pages=st.integers(1, 1 << 14),
       topk_pages=st.integers(1, 300), local=st.integers(1, 4),
       page_size=st.sampled_from([1, 4, 16, 32, 64]), sms=st.integers(1, 256),
       interpreted=st.booleans())
def test_fused_launch_covers_rows_and_lists_legally(rows, max_pages, topk_pages, local,
                                                    page_size, sms, interpreted):
    local = min(local, topk_pages)
    n = choose_fused_launch(rows, max_pages, topk_pages, local, page_size, sms,
                            interpreted=interpreted)
    k_p2 = candidate_width(topk_pages, local)
    assert n.splits & (n.splits - 1) == 0 and 1 <= n.splits <= MAX_SPLITS
    assert n.chunk_pages & (n.chunk_pages - 1) == 0 and n.chunk_pages >= max(k_p2, 16)
    assert n.splits * n.chunks * n.chunk_pages >= max_pages  # every page scored
    assert n.splits * n.tiles * n.tile_pages >= topk_pages  # every listed page attended
    assert n.tile_pages * page_size >= 16  # tl.dot's smallest tile
    if n.splits > 1:  # more than one candidate list only when it stays small
        assert n.splits * k_p2 <= max(MAX_CANDIDATES, k_p2)
    if n.one_launch and n.splits > 1:  # spinning rows only when all fit at once
        assert rows * n.splits <= sms and not interpreted


def test_fused_launch_refuses_a_one_launch_that_could_deadlock():
    with pytest.raises(ValueError, match="resident"):
        choose_fused_launch(64, 1024, 64, 1, 16, 132, splits=4, one_launch=True)
    with pytest.raises(ValueError, match="resident"):
        choose_fused_launch(2, 1024, 64, 1, 16, 132, splits=2, one_launch=True,
                            interpreted=True)


@pytest.mark.parametrize("rows,context,pages,group,expected", [
    (64, 16384, 64, 4, "fused"), (16, 65536, 64, 4, "fused"),  # standard point, long CoT
    (16, 131072, 64, 4, "fused"), (64, 16384, 64, 8, "fused"),  # 128k long CoT, Qwen3-32B
    (256, 16384, 64, 4, "fused"), (4, 8192, 64, 4, "fused"), (1, 65536, 64, 4, "fused"),
    (16, 131072, 128, 8, "fused"), (64, 65536, 64, 4, "separate"),
    (256, 32768, 128, 8, "separate"), (1, 131072, 64, 8, "separate"),
    (4, 8192, 128, 8, "separate"), (16, 131072, 128, 4, "separate")])
def test_default_impl_is_the_faster_one_measured_on_an_h200(rows, context, pages, group,
                                                             expected):
    """The 2026-12-03 H200 grids (benchmarks/RESULTS.md): fused and separate steps per cell."""
    assert default_impl(rows, context // 16, pages, group) == expected


@pytest.mark.parametrize("rows, expected", [(1, (128, 3)), (64, (128, 3)), (255, (128, 3)),
                                            (256, (64, 5)), (2048, (64, 5))])
def test_fused_pipeline_is_the_measured_best_on_an_h200(rows, expected):
    """64-page scoring blocks in 5 stages from 256 rows up: 0.974 / 0.973 of the 3-stage,
    128-page step at 16k / 256 and 64k / 256, 1.005-1.073 at 1-64 rows (RESULTS.md)."""
    assert fused_pipeline(rows) == expected
