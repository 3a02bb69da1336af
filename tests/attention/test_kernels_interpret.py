"""The Triton kernels on CPU under ``TRITON_INTERPRET=1`` (no GPU needed; needs triton).

The separate path: selection (scoring + bitonic top-k) then split-KV attention
(float32: the interpreter does not model bfloat16 loads) against the torch reference,
in a subprocess because the interpreter is chosen when the kernels are decorated, at
import. The attention
runs again over each row's page list shuffled: it finds the partial last page by its
id, so the order must not matter.
"""

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
from kinetics.attention.checks import check_selection
from kinetics.attention.decode import build_blocktopk_decode

results = []
for seed, lens, hkv, group, ps, k, local, splits, tile in json.loads(sys.argv[1]):
    gen = torch.Generator().manual_seed(seed)
    b, d = len(lens), 16
    keys = torch.randn((b, max(lens), hkv, d), generator=gen)
    values = torch.randn((b, max(lens), hkv, d), generator=gen)
    cache = PagedKVCache.from_dense(keys, values, page_size=ps, seq_lens=lens,
                                    page_order="random", seed=seed)
    q = torch.randn((b, hkv * group, d), generator=gen)
    dec = build_blocktopk_decode(cache, hkv * group, k, local, topk="bitonic", impl="separate",
                                 splits=splits, tile_pages=tile)
    out = torch.full_like(q, float("nan"))
    dec(q, out)
    got = dec.selected_page_mask()
    check = check_selection(got, q, cache, k, local, rel_tol=1e-4)
    ref = reference.blocktopk_decode(q, cache, k, local, page_mask=got)
    pages = dec.selection.pages
    pages.copy_(pages.gather(1, torch.rand(pages.shape, generator=gen).argsort(1)))
    shuffled = torch.full_like(q, float("nan"))
    dec.attend(q, shuffled)
    results.append(dict(passed=check.passed, identical=check.identical_fraction,
                        finite=bool(torch.isfinite(out).all()),
                        rel_err=float((out - ref).norm() / ref.norm()),
                        shuffled_rel_err=float((shuffled - ref).norm() / ref.norm())))
print(json.dumps(results))
"""

CASES = [  # seed, lens (tokens), kv heads, group, page size, topk pages, local pages,
    # attention splits, pages per tile
    (0, [300, 517, 129], 2, 2, 16, 8, 2, 2, 2),
    (1, [100, 200], 1, 4, 8, 12, 1, 2, 4),  # 12 pages = 2 splits x 2 tiles of 4, 4 unused
    (2, [160, 177, 250, 199], 1, 8, 16, 5, 1, 1, 4),  # group 8, one split, partial tiles
    (3, [96, 140], 2, 5, 16, 4, 1, 2, 2),  # group 5 (Qwen3-14B at tp 8): not a power of two
]


def test_selection_and_triton_attention_match_reference_interpreted():
    results = run_interpreted(SCRIPT, json.dumps(CASES))
    assert len(results) == len(CASES)
    for case, r in zip(CASES, results, strict=True):
        assert r["passed"] and r["finite"], (case, r)
        assert r["rel_err"] < 1e-4 and r["shuffled_rel_err"] < 1e-4, (case, r)
