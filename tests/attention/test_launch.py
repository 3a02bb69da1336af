"""Launch rule of the sparse attention (:func:`kinetics.attention.decode.choose_launch`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinetics.attention.decode import choose_launch
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
