"""ShardedDecoderLayer: shapes, sharding rules, and sharded == unsharded (simulated TP)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from kinetics.errors import InputError  # noqa: E402
from kinetics.model.layer import DenseKVAttend, ShardedDecoderLayer  # noqa: E402
from kinetics.model.parallel import mlp_width, shard_plan  # noqa: E402
from kinetics.model.weights import hashed_uniform  # noqa: E402
from kinetics.models import ModelSpec, get_model  # noqa: E402

TINY = ModelSpec(name="tiny", num_layers=1, hidden_size=64, num_q_heads=4, num_kv_heads=2,
                 head_dim=16, intermediate_size=128, vocab_size=100)
TINY_MOE = ModelSpec(name="tiny-moe", num_layers=1, hidden_size=64, num_q_heads=8,
                     num_kv_heads=2, head_dim=16, intermediate_size=0, vocab_size=100,
                     num_experts=16, experts_per_token=2, moe_intermediate_size=32)
F32 = torch.float32


def _attend(layer: ShardedDecoderLayer, batch: int, context: int) -> DenseKVAttend:
    return DenseKVAttend(layer.local_q_heads, layer.local_kv_heads, layer.head_dim, batch,
                         context, "cpu", layer.dtype, kv_head_start=layer.kv_head_start, seed=7)


def _simulated_tp_steps(model: ModelSpec, tp: int, hiddens: list, positions: list,
                        context: int) -> list:
    """Run tp simulated ranks, summing their partials as the all-reduce would."""
    ranks = [ShardedDecoderLayer(model, tp, r, dtype=F32, seed=3) for r in range(tp)]
    attends = [_attend(layer, hiddens[0].shape[0], context) for layer in ranks]
    outs = []
    for hidden, pos in zip(hiddens, positions, strict=True):
        h = hidden + sum(layer.attention_partial(hidden, a, pos)
                         for layer, a in zip(ranks, attends, strict=True))
        outs.append(h + sum(layer.mlp_partial(h) for layer in ranks))
    return outs


def test_unsharded_shape_and_finite():
    layer = ShardedDecoderLayer(TINY, dtype=F32)
    out = layer(torch.randn(3, 64), _attend(layer, 3, 0))
    assert out.shape == (3, 64) and out.dtype == F32 and torch.isfinite(out).all()
    assert (layer.local_q_heads, layer.local_kv_heads, layer.local_mlp) == (4, 2, 128)
    assert layer.position == 1  # default positions advance per call


def test_bfloat16_default_dtype():
    layer = ShardedDecoderLayer(TINY)
    out = layer(torch.randn(2, 64, dtype=torch.bfloat16), _attend(layer, 2, 4))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 64)


@pytest.mark.parametrize("tp,lq,lkv,lmlp", [(2, 2, 1, 64), (4, 1, 1, 32)])
def test_simulated_tp_shard_shapes(tp, lq, lkv, lmlp):
    for rank in range(tp):
        layer = ShardedDecoderLayer(TINY, tp, rank, dtype=F32)
        assert (layer.local_q_heads, layer.local_kv_heads, layer.local_mlp) == (lq, lkv, lmlp)
        assert layer.qkv_proj.shape == ((lq + 2 * lkv) * 16, 64)
        assert layer.o_proj.shape == (64, lq * 16)
        assert layer.gate_up_proj.shape == (2 * lmlp, 64)
        assert layer.down_proj.shape == (64, lmlp)
        out = layer(torch.randn(2, 64), _attend(layer, 2, 3))
        assert out.shape == (2, 64)  # no group: simulated TP, no communication


def test_kv_replication_when_tp_exceeds_kv_heads():
    # tp 4 > 2 KV heads: each KV head lives on 2 ranks; rank r reads KV head r // 2
    starts = [ShardedDecoderLayer(TINY, 4, r, dtype=F32).kv_head_start for r in range(4)]
    assert starts == [0, 0, 1, 1]
    plan = shard_plan(TINY, 4, 3)
    assert plan.kv_replicas == 2 and plan.local_kv_heads == 1


@pytest.mark.parametrize("tp", [3, 8])
def test_bad_tp_raises_input_error(tp):
    with pytest.raises(InputError):
        ShardedDecoderLayer(TINY, tp, 0, dtype=F32)


def test_bad_rank_raises():
    with pytest.raises(InputError):
        ShardedDecoderLayer(TINY, 2, 2, dtype=F32)


def test_weight_shards_are_slices_of_full_weight():
    full = ShardedDecoderLayer(TINY, dtype=F32, seed=5)
    r1 = ShardedDecoderLayer(TINY, 2, 1, dtype=F32, seed=5)
    # o_proj columns of heads 2, 3; down columns 64..127; q rows of heads 2, 3
    assert torch.equal(r1.o_proj, full.o_proj[:, 32:])
    assert torch.equal(r1.down_proj, full.down_proj[:, 64:])
    assert torch.equal(r1.qkv_proj[:32], full.qkv_proj[32:64])
    assert torch.equal(r1.q_norm, full.q_norm)
    other_seed = ShardedDecoderLayer(TINY, dtype=F32, seed=6)
    assert not torch.equal(other_seed.o_proj, full.o_proj)


def test_hashed_uniform_any_slice_matches():
    rows, cols = torch.arange(50), torch.arange(40)
    full = hashed_uniform(1, 9, rows, cols, 0.5, F32, "cpu")
    part = hashed_uniform(1, 9, rows[[3, 17, 44]], cols[10:30], 0.5, F32, "cpu")
    assert torch.equal(part, full[[3, 17, 44]][:, 10:30])
    assert full.abs().max() <= 0.5 and 0.25 < full.std() < 0.33  # 0.5 / sqrt(3)


@pytest.mark.parametrize("model", [TINY, TINY_MOE], ids=["dense", "moe"])
@pytest.mark.parametrize("tp", [2, 4])
def test_sum_of_rank_partials_equals_unsharded(model, tp):
    gen = torch.Generator().manual_seed(0)
    batch, context, steps = 3, 6, 3
    hiddens = [torch.randn(batch, 64, generator=gen) for _ in range(steps)]
    positions = [torch.tensor([context + s, 2 * context + s, s]) for s in range(steps)]
    full = ShardedDecoderLayer(model, dtype=F32, seed=3)
    attend = _attend(full, batch, context)
    want = [full(h, attend, p) for h, p in zip(hiddens, positions, strict=True)]
    got = _simulated_tp_steps(model, tp, hiddens, positions, context)
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_moe_uses_active_expert_width():
    assert mlp_width(TINY_MOE) == 64
    assert mlp_width(get_model("qwen3-30b-a3b")) == 8 * 768
    layer = ShardedDecoderLayer(TINY_MOE, 2, 0, dtype=F32)
    assert layer.local_mlp == 32


def test_rope_positions_matter_and_default_is_shared():
    layer = ShardedDecoderLayer(TINY, dtype=F32)
    hidden = torch.randn(2, 64)
    a1, a2 = _attend(layer, 2, 4), _attend(layer, 2, 4)
    layer.position = 5
    default = layer(hidden, a1)
    explicit = layer(hidden, a2, torch.tensor([5, 5]))
    torch.testing.assert_close(default, explicit, rtol=0, atol=0)
    a3 = _attend(layer, 2, 4)
    moved = layer(hidden, a3, torch.tensor([5, 9]))
    torch.testing.assert_close(moved[0], default[0], rtol=0, atol=0)
    assert not torch.allclose(moved[1], default[1])


def test_preset_shard_plans():
    # Qwen3-32B: 64 q / 8 kv heads, 25600 MLP -> tp 8: 8 q, 1 kv, 3200
    plan = shard_plan(get_model("qwen3-32b"), 8, 7)
    assert (plan.local_q_heads, plan.local_kv_heads, plan.local_mlp) == (8, 1, 3200)
    # Qwen3-30B-A3B: 4 kv heads, tp 8 -> replicated twice
    plan = shard_plan(get_model("qwen3-30b-a3b"), 8, 5)
    assert (plan.kv_start, plan.kv_replicas) == (2, 2)
