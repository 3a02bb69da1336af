"""Fused Triton kernels and the one-graph model step on a GPU (skipped without one)."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")

from kinetics.model import fused  # noqa: E402
from kinetics.model.capture import CapturedStep  # noqa: E402
from kinetics.model.decoder import ShardedDecoderModel  # noqa: E402
from kinetics.model.layer import DenseKVAttend, ShardedDecoderLayer  # noqa: E402
from kinetics.models import ModelSpec  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
    reason="needs a CUDA GPU and triton")]
SPEC = ModelSpec(name="small", num_layers=2, hidden_size=1024, num_q_heads=8, num_kv_heads=2,
                 head_dim=128, intermediate_size=2816, vocab_size=4096)
BF16 = torch.bfloat16


def _err(out, ref) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm())


@pytest.mark.parametrize("batch,hidden", [(1, 1024), (37, 5120), (64, 4096)])
def test_add_rms_norm_kernel_matches_torch(batch, hidden):
    gen = torch.Generator(device="cuda").manual_seed(batch)
    x, r = (torch.randn(batch, hidden, dtype=BF16, device="cuda", generator=gen) for _ in "xr")
    w = torch.rand(hidden, dtype=BF16, device="cuda", generator=gen) + 0.5
    out, h = fused.add_rms_norm(x, r, w)
    ref_out, ref_h = fused.add_rms_norm(x.cpu(), r.cpu(), w.cpu())
    assert torch.equal(h.cpu(), ref_h)  # the residual add rounds exactly like torch
    assert _err(out.cpu(), ref_out) < 1e-2
    out0, h0 = fused.add_rms_norm(None, r, w)
    assert h0 is r and _err(out0.cpu(), fused.add_rms_norm(None, r.cpu(), w.cpu())[0]) < 1e-2


@pytest.mark.parametrize("hq,hkv", [(4, 1), (32, 8)])
def test_qk_norm_rope_and_silu_mul_kernels_match_torch(hq, hkv):
    gen = torch.Generator(device="cuda").manual_seed(hq)
    qkv = torch.randn(9, (hq + 2 * hkv) * 128, dtype=BF16, device="cuda", generator=gen)
    qn, kn = (torch.rand(128, dtype=BF16, device="cuda", generator=gen) + 0.5 for _ in "qk")
    pos = torch.randint(0, 40000, (9,), device="cuda", generator=gen)
    inv = 1.0 / (1e6 ** (torch.arange(0, 128, 2, dtype=torch.float32, device="cuda") / 128))
    got = fused.qk_norm_rope(qkv, qn, kn, pos, inv, hq, hkv)
    want = fused.qk_norm_rope(qkv.cpu(), qn.cpu(), kn.cpu(), pos.cpu(), inv.cpu(), hq, hkv)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.is_contiguous() and _err(g.cpu(), w) < 1e-2
    assert torch.equal(got[2].cpu(), want[2])
    pages = [torch.zeros(40, hkv, 16, 128, dtype=BF16, device="cuda") for _ in "kv"]
    page = torch.randperm(40, device="cuda")[:9]
    q, _, _ = fused.qk_norm_rope(qkv, qn, kn, pos, inv, hq, hkv,
                                 slot=fused.PagedSlot(pages[0], pages[1], page, 5))
    assert torch.equal(q, got[0])
    assert torch.equal(pages[0][page, :, 5], got[1]) and torch.equal(pages[1][page, :, 5], got[2])
    gu = torch.randn(9, 2 * 3000, dtype=BF16, device="cuda", generator=gen)
    assert _err(fused.silu_mul(gu).cpu(), fused.silu_mul(gu.cpu())) < 1e-2


def test_fused_layer_step_matches_reference_layer():
    layer = ShardedDecoderLayer(SPEC, dtype=BF16, device="cuda", seed=2)
    hidden = torch.randn(16, 1024, dtype=BF16, device="cuda")
    pos = torch.full((16,), 300, device="cuda")

    def attend():
        return DenseKVAttend(8, 2, 128, 16, 300, "cuda", BF16, seed=1)
    ref = layer(hidden, attend(), pos)
    delta, h = fused.fused_layer_step(layer, None, hidden, attend(), pos)
    assert _err(delta + h, ref) < 1e-2


def test_captured_model_step_equals_eager_step():
    model = ShardedDecoderModel(SPEC, dtype=BF16, device="cuda", seed=3)
    batch, context = 8, 64
    caches = [DenseKVAttend(8, 2, 128, batch, context, "cuda", BF16, seed=i) for i in range(2)]

    def attends():  # fixed-length attends: each step sees the same cache
        return [lambda q, k, v, c=c: _fixed(c, q, k, v) for c in caches]
    tokens = torch.randint(0, 4096, (batch,), device="cuda")
    pos = torch.full((batch,), context, device="cuda")
    eager = model.step(tokens, attends(), pos, impl="reference")
    graph = CapturedStep(lambda t, p: model.step(t, attends(), p, impl="fused"),
                         [tokens.clone(), pos.clone()])
    out = graph.replay()
    assert _err(out.logits, eager.logits) < 2e-2
    assert float((out.tokens == eager.tokens).float().mean()) >= 0.75


def _fixed(cache: DenseKVAttend, q, k, v):
    """Attend over the cache plus the new token without growing it (graph-safe)."""
    keys = torch.cat([cache.k[:, :, :cache.length], k[:, :, None]], 2)
    values = torch.cat([cache.v[:, :, :cache.length], v[:, :, None]], 2)
    b, h, d = q.shape
    qg = q.reshape(b, keys.shape[1], h // keys.shape[1], d)
    out = torch.nn.functional.scaled_dot_product_attention(qg, keys, values)
    return out.reshape(b, h, d)
