"""The fused block top-k kernel on CPU under ``TRITON_INTERPRET=1`` (no GPU; needs triton).

Hypothesis draws the shapes (GQA groups 1/4/5/8, page sizes 16/32, ragged contexts not a
multiple of the page size, budgets up to beyond the context, tied page scores, batch 1
and odd batches, one or several splits and chunks, float32 or fp8 page
means); each example runs in one long-lived worker process, because the interpreter is
chosen when the kernels are decorated, at import. Against
:mod:`kinetics.attention.reference`: the selection (:func:`check_selection`, ties may
swap), the output given the kernel's own selection, and the output of the reference's
own selection where the two selections are equal. Several splits run as two launches
here (the interpreter runs programs one after another, so the one-launch barrier
would wait forever); the GPU tests run the one-launch form.
"""

from __future__ import annotations

import importlib.util
import json
import select
import subprocess
import sys

import pytest

from tests.interpreted import interpreter_env

pytest.importorskip("torch")
if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

WORKER = """
import json, sys
import torch
from kinetics.attention import PagedKVCache, reference
from kinetics.attention.checks import check_selection
from kinetics.attention.decode import FusedBlockTopkDecode

def run(c):
    gen = torch.Generator().manual_seed(c["seed"])
    lens, hkv, group, ps, d = c["lens"], c["hkv"], c["group"], c["page_size"], 16
    b, t = len(lens), max(c["lens"])
    keys = torch.randn((b, t, hkv, d), generator=gen)
    values = torch.randn((b, t, hkv, d), generator=gen)
    for j in c["tied_pages"]:  # copies of page 0: equal page means, tied scores
        if (j + 1) * ps <= t:
            keys[:, j * ps:(j + 1) * ps] = keys[:, :ps]
    dtype = torch.float8_e4m3fn if c["means"] == "fp8" else None
    cache = PagedKVCache.from_dense(keys, values, page_size=ps, seq_lens=lens,
                                    page_order="random", seed=c["seed"], page_means_dtype=dtype)
    q = torch.randn((b, hkv * group, d), generator=gen)
    k, local = c["topk_pages"], c["local_pages"]
    dec = FusedBlockTopkDecode(cache, hkv * group, k, local, splits=c["splits"],
                               chunk_pages=c["chunk_pages"], tile_pages=c["tile_pages"])
    outs = []
    for _ in range(2):  # twice: a step must not depend on the last one's scratch
        out = torch.full_like(q, float("nan"))
        dec(q, out)
        outs.append(out)
    got = dec.selected_page_mask()
    check = check_selection(got, q, cache, k, local, rel_tol=1e-4)
    ref = reference.blocktopk_decode(q, cache, k, local, page_mask=got)
    want = reference.select_pages(q, cache, k, local)
    same = bool((got == want).all())
    own = reference.blocktopk_decode(q, cache, k, local) if same else ref
    rel = lambda x, r: float((x - r).norm() / r.norm())
    return dict(passed=check.passed, counts=check.counts_ok, locals=check.locals_ok,
                scores=check.scores_ok, finite=bool(torch.isfinite(outs[0]).all()),
                repeat_equal=bool(torch.equal(outs[0], outs[1])),
                rel_err=rel(outs[0], ref), rel_err_own=rel(outs[0], own),
                one_launch=dec.launch.one_launch, splits=dec.launch.splits,
                chunks=dec.launch.chunks)

for line in sys.stdin:
    try:
        print(json.dumps(run(json.loads(line))), flush=True)
    except Exception as exc:  # reported to the test, which fails on it
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def worker():
    proc = subprocess.Popen([sys.executable, "-c", WORKER], env=interpreter_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def call(case: dict) -> dict:
        proc.stdin.write(json.dumps(case) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT_S)
        assert ready, f"interpreted kernel did not answer within {TIMEOUT_S} s: {case}"
        line = proc.stdout.readline()
        assert line, f"worker died: {proc.stderr.read()[-2000:]}"
        return json.loads(line)

    yield call
    proc.stdin.close()
    proc.wait(timeout=60)


@st.composite
def cases(draw) -> dict:
    page_size = draw(st.sampled_from([16, 32]))
    batch = draw(st.sampled_from([1, 2, 3, 5]))
    lens = draw(st.lists(st.integers(1, 12 * page_size), min_size=batch, max_size=batch))
    pages = -(-max(lens) // page_size)
    local = draw(st.integers(1, 2))
    return dict(seed=draw(st.integers(0, 2**31 - 1)), lens=lens,
                hkv=draw(st.sampled_from([1, 2])), group=draw(st.sampled_from([1, 4, 5, 8])),
                page_size=page_size, local_pages=local,
                topk_pages=draw(st.integers(local, pages + 2)),  # up to beyond the context
                splits=draw(st.sampled_from([1, 2, 4])),
                chunk_pages=draw(st.sampled_from([None, 16])),
                tile_pages=draw(st.sampled_from([None, 1, 2])),
                tied_pages=draw(st.lists(st.integers(1, 11), max_size=4, unique=True)),
                means=draw(st.sampled_from(["fp32", "fp8"])))


def _assert_matches_reference(r: dict, case: dict) -> None:
    assert "error" not in r, (case, r)
    assert r["passed"] and r["finite"] and r["repeat_equal"], (case, r)
    assert r["rel_err"] < 1e-4 and r["rel_err_own"] < 1e-4, (case, r)


BASE = dict(seed=0, lens=[300, 517, 129], hkv=2, group=4, page_size=16, local_pages=2,
            topk_pages=8, splits=1, chunk_pages=None, tile_pages=None, tied_pages=[],
            means="fp32")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(BASE)
@example({**BASE, "splits": 2, "group": 5, "hkv": 1})  # two launches, group not a power of 2
@example({**BASE, "chunk_pages": 16, "group": 8})  # one split, several chunks (one launch)
@example({**BASE, "lens": [33], "topk_pages": 5, "page_size": 32})  # budget > context
@example({**BASE, "tied_pages": [1, 2, 3, 5, 8], "splits": 4, "group": 1})  # ties
@given(cases())
def test_fused_kernel_matches_reference_interpreted(worker, case):
    r = worker(case)
    _assert_matches_reference(r, case)
    assert r["one_launch"] == (r["splits"] == 1)


def test_phase_stamps_need_a_gpu_and_match_the_kernels_points():
    """record_phases reads SM clocks: refused on a CPU cache (the interpreter has none);
    the launcher's stamp count is the kernel's."""
    import torch

    from kinetics.attention import PagedKVCache
    from kinetics.attention.decode import PHASE_STAMP_POINTS, FusedBlockTopkDecode
    from kinetics.attention.kernels.fused_decode import STAMP_POINTS

    assert PHASE_STAMP_POINTS == STAMP_POINTS.value
    keys = torch.randn(2, 40, 1, 16)
    cache = PagedKVCache.from_dense(keys, keys.clone(), page_size=16)
    with pytest.raises(ValueError, match="record_phases needs a CUDA cache"):
        FusedBlockTopkDecode(cache, 4, 2, 1, record_phases=True)
    assert FusedBlockTopkDecode(cache, 4, 2, 1).phase_stamps is None
