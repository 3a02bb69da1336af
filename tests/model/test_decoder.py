"""Whole-model decode step: fused == reference == layer by layer == HF transformers Qwen3."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kinetics.errors import InputError  # noqa: E402
from kinetics.model.decoder import ShardedDecoderModel, layer_seed  # noqa: E402
from kinetics.model.fused import PagedSlot, add_rms_norm, qk_norm_rope, silu_mul  # noqa: E402
from kinetics.model.layer import DenseKVAttend, apply_rope, rms_norm  # noqa: E402
from kinetics.models import ModelSpec  # noqa: E402

TINY = ModelSpec(name="tiny", num_layers=3, hidden_size=64, num_q_heads=4, num_kv_heads=2,
                 head_dim=16, intermediate_size=96, vocab_size=128)
F32 = torch.float32


def _attends(model: ShardedDecoderModel, batch: int, context: int) -> list[DenseKVAttend]:
    return [DenseKVAttend(layer.local_q_heads, layer.local_kv_heads, layer.head_dim, batch,
                          context, "cpu", model.dtype, kv_head_start=layer.kv_head_start,
                          seed=i) for i, layer in enumerate(model.layers)]


def _layer_by_layer(model: ShardedDecoderModel, tokens, attends, positions):
    """The step written out with the layer's public pieces only."""
    h = model.embed_tokens[tokens]
    for layer, attend in zip(model.layers, attends, strict=True):
        q, k, v = layer.pre_attention(h, positions)
        h = h + layer.post_attention(attend(q, k, v))
        h = h + layer.mlp_partial(h)
    logits = rms_norm(h, model.norm) @ model.lm_head.t()
    return logits, logits.argmax(-1)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("dtype", [F32, torch.bfloat16])
def test_step_equals_layer_by_layer_reference(impl, dtype):
    model = ShardedDecoderModel(TINY, dtype=dtype, seed=5)
    batch, context = 3, 7
    mine, ref = _attends(model, batch, context), _attends(model, batch, context)
    gen = torch.Generator().manual_seed(0)
    for step in range(3):
        tokens = torch.randint(0, TINY.vocab_size, (batch,), generator=gen)
        positions = torch.full((batch,), context + step) + torch.arange(batch)
        out = model.step(tokens, mine, positions, impl=impl)
        logits, greedy = _layer_by_layer(model, tokens, ref, positions)
        torch.testing.assert_close(out.logits, logits, rtol=0, atol=0)  # same ops, same order
        assert torch.equal(out.tokens, greedy)
        assert out.tokens.dtype == torch.int64 and out.logits.shape == (batch, TINY.vocab_size)


def test_layers_have_distinct_weights_and_seeds():
    model = ShardedDecoderModel(TINY, dtype=F32, seed=1)
    assert len(model.layers) == TINY.num_layers
    assert [layer.seed for layer in model.layers] == [layer_seed(1, i) for i in range(3)]
    assert not torch.equal(model.layers[0].qkv_proj, model.layers[1].qkv_proj)
    assert model.weight_bytes() == 4 * sum(p.numel() for p in model.parameters())


@settings(max_examples=5, deadline=None)
@given(tp=st.sampled_from([2, 4]), seed=st.integers(0, 2**20))
def test_lm_head_shards_are_slices_and_greedy_is_global(tp, seed):
    full = ShardedDecoderModel(TINY, dtype=F32, seed=seed, num_layers=1)
    shards = [ShardedDecoderModel(TINY, tp, r, dtype=F32, seed=seed, num_layers=1)
              for r in range(tp)]
    torch.testing.assert_close(torch.cat([s.lm_head for s in shards]), full.lm_head,
                               rtol=0, atol=0)
    for s in shards:
        assert torch.equal(s.embed_tokens, full.embed_tokens)
    x = torch.randn(4, TINY.hidden_size)
    logits = [x @ s.lm_head.t() for s in shards]
    # each simulated rank's local argmax, then the global pick as greedy() does with a group
    local = [s.greedy(lg) for s, lg in zip(shards, logits, strict=True)]
    full_argmax = torch.cat(logits, -1).argmax(-1)
    values = torch.stack([torch.cat(logits, -1).gather(-1, i[:, None])[:, 0] for i in local])
    assert torch.equal(torch.stack(local).gather(0, values.argmax(0)[None])[0], full_argmax)


def test_bad_inputs():
    with pytest.raises(InputError, match="vocabulary"):
        ShardedDecoderModel(ModelSpec("odd", 1, 64, 4, 2, 16, 96, 127), tp_size=2, dtype=F32)
    with pytest.raises(InputError, match="at least one layer"):
        ShardedDecoderModel(TINY, dtype=F32, num_layers=0)
    model = ShardedDecoderModel(TINY, dtype=F32, num_layers=2)
    tokens = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="one attend per layer"):
        model.step(tokens, _attends(model, 2, 0)[:1], torch.zeros(2, dtype=torch.int64))
    with pytest.raises(InputError, match="unknown implementation"):
        model.step(tokens, _attends(model, 2, 0), torch.zeros(2, dtype=torch.int64), impl="x")


def test_fused_ops_torch_path_matches_layer_functions():
    gen = torch.Generator().manual_seed(3)
    x, r, w = (torch.randn(5, 32, generator=gen) for _ in range(3))
    normed, h = add_rms_norm(x, r, w)
    torch.testing.assert_close(h, x + r, rtol=0, atol=0)
    torch.testing.assert_close(normed, rms_norm(x + r, w), rtol=0, atol=0)
    normed0, h0 = add_rms_norm(None, r, w)
    assert h0 is r and torch.equal(normed0, rms_norm(r, w))
    gu = torch.randn(5, 2 * 24, generator=gen)
    torch.testing.assert_close(silu_mul(gu), torch.nn.functional.silu(gu[:, :24]) * gu[:, 24:])
    qkv = torch.randn(5, (4 + 2 * 2) * 16, generator=gen)
    qn, kn = torch.rand(16, generator=gen) + 0.5, torch.rand(16, generator=gen) + 0.5
    pos = torch.arange(5) * 7
    inv = 1.0 / (1e6 ** (torch.arange(0, 16, 2, dtype=F32) / 16))
    q, k, v = qk_norm_rope(qkv, qn, kn, pos, inv, 4, 2)
    assert q.shape == (5, 4, 16) and k.shape == v.shape == (5, 2, 16)
    torch.testing.assert_close(q, apply_rope(rms_norm(qkv[:, :64].view(5, 4, 16), qn), pos, inv))
    torch.testing.assert_close(v, qkv[:, 96:].reshape(5, 2, 16))


def _hf_qwen3(model: ShardedDecoderModel):
    """A transformers Qwen3ForCausalLM holding ``model``'s weights (float32, eager attention)."""
    transformers = pytest.importorskip("transformers")
    spec = model.model
    config = transformers.Qwen3Config(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=len(model.layers),
        num_attention_heads=spec.num_q_heads, num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim, rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        max_position_embeddings=256, attn_implementation="eager")
    hf = transformers.Qwen3ForCausalLM(config).eval()
    d, hq, hkv = spec.head_dim, spec.num_q_heads, spec.num_kv_heads
    state = {"model.embed_tokens.weight": model.embed_tokens, "model.norm.weight": model.norm,
             "lm_head.weight": model.lm_head}
    for i, layer in enumerate(model.layers):
        q, k, v = layer.qkv_proj.split([hq * d, hkv * d, hkv * d])
        gate, up = layer.gate_up_proj.chunk(2)
        p = f"model.layers.{i}."
        state.update({
            p + "input_layernorm.weight": layer.input_layernorm,
            p + "post_attention_layernorm.weight": layer.post_attention_layernorm,
            p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k,
            p + "self_attn.v_proj.weight": v, p + "self_attn.o_proj.weight": layer.o_proj,
            p + "self_attn.q_norm.weight": layer.q_norm,
            p + "self_attn.k_norm.weight": layer.k_norm,
            p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up,
            p + "mlp.down_proj.weight": layer.down_proj,
        })
    missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in state.items()},
                                             strict=False)
    assert not unexpected and not [m for m in missing if "rotary" not in m]
    return hf


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_decode_matches_transformers_qwen3_forward(impl):
    """Decoding a sequence token by token from an empty cache reproduces HF's logits."""
    model = ShardedDecoderModel(TINY, dtype=F32, seed=11)
    hf = _hf_qwen3(model)
    batch, length = 2, 6
    tokens = torch.randint(0, TINY.vocab_size, (batch, length),
                           generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = hf(input_ids=tokens).logits  # [batch, length, vocab], causal
    attends = _attends(model, batch, 0)
    for t in range(length):
        out = model.step(tokens[:, t], attends, torch.full((batch,), t), impl=impl)
        torch.testing.assert_close(out.logits, want[:, t], rtol=1e-4, atol=1e-4)
        assert torch.equal(out.tokens, want[:, t].argmax(-1))


def test_qk_norm_rope_with_paged_slot_writes_k_v_into_pages():
    gen = torch.Generator().manual_seed(8)
    hq, hkv, d, batch, page_size = 4, 2, 16, 3, 4
    qkv = torch.randn(batch, (hq + 2 * hkv) * d, generator=gen)
    qn, kn = torch.rand(d, generator=gen) + 0.5, torch.rand(d, generator=gen) + 0.5
    pos, inv = torch.tensor([5, 9, 40]), 1.0 / (1e6 ** (torch.arange(0, d, 2, dtype=F32) / d))
    k_pages, v_pages = torch.zeros(6, hkv, page_size, d), torch.zeros(6, hkv, page_size, d)
    page = torch.tensor([4, 0, 2])
    q, k, v = qk_norm_rope(qkv, qn, kn, pos, inv, hq, hkv,
                           slot=PagedSlot(k_pages, v_pages, page, 3))
    want_q, want_k, want_v = qk_norm_rope(qkv, qn, kn, pos, inv, hq, hkv)
    assert k is None and v is None and torch.equal(q, want_q)
    assert torch.equal(k_pages[page, :, 3], want_k) and torch.equal(v_pages[page, :, 3], want_v)
    k_pages[page, :, 3] = 0
    assert not k_pages.any()  # nothing else written
