"""The Triton dense paged decode (:class:`kinetics.attention.decode.TritonPagedDecode`)
on CPU under ``TRITON_INTERPRET=1`` against the torch reference, in a subprocess (the
interpreter is chosen when the kernels are decorated). Requests of uneven lengths, one
of them empty (zeros out), random page order, GQA groups that are not powers of two,
split counts that leave some splits without a tile."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.interpreted import run_interpreted

pytest.importorskip("torch")
if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

SCRIPT = """
import json, sys
import torch
from kinetics.attention import PagedKVCache, reference
from kinetics.attention.decode import TritonPagedDecode

results = []
for seed, lens, hkv, group, ps, splits, tile in json.loads(sys.argv[1]):
    gen = torch.Generator().manual_seed(seed)
    b, d = len(lens), 16
    keys = torch.randn((b, max(lens), hkv, d), generator=gen)
    values = torch.randn((b, max(lens), hkv, d), generator=gen)
    cache = PagedKVCache.from_dense(keys, values, page_size=ps, seq_lens=lens,
                                    page_order="random", seed=seed)
    q = torch.randn((b, hkv * group, d), generator=gen)
    out = torch.full_like(q, float("nan"))
    TritonPagedDecode(cache, hkv * group, splits=splits, tile_pages=tile)(q, out)
    full = [i for i, n in enumerate(lens) if n]
    ref = reference.dense_decode(q[full], cache.rows_view(torch.tensor(full)))
    empty = [i for i, n in enumerate(lens) if not n]
    results.append(dict(finite=bool(torch.isfinite(out).all()),
                        empty_zero=bool((out[empty] == 0).all()) if empty else True,
                        rel_err=float((out[full] - ref).norm() / ref.norm())))
print(json.dumps(results))
"""

CASES = [  # seed, lens (tokens), kv heads, group, page size, splits, pages per tile
    (0, [300, 517, 129], 2, 2, 16, 4, 2),
    (1, [100, 0, 33], 1, 4, 8, 2, 4),  # an empty request
    (2, [1, 16, 17, 250], 1, 5, 16, 8, 1),  # 8 splits: most rows leave some idle
    (3, [96, 140], 2, 3, 32, 1, 1),  # one split, tiles of one 32-token page
]


def test_triton_dense_paged_decode_matches_reference_interpreted():
    results = run_interpreted(SCRIPT, json.dumps(CASES))
    assert len(results) == len(CASES)
    for case, r in zip(CASES, results, strict=True):
        assert r["finite"] and r["empty_zero"], (case, r)
        assert r["rel_err"] < 1e-5, (case, r)
