"""Real weights into kinetics.model: the architectures read from HF configs, lazy
safetensors reads (one file or sharded), and tensor-parallel shards that sum to the
whole layer (row-parallel biases added once)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from kinetics.errors import InputError  # noqa: E402
from kinetics.model.checkpoint import (  # noqa: E402
    architecture,
    checkpoint_of_model,
    open_checkpoint,
)
from kinetics.model.decoder import ShardedDecoderModel  # noqa: E402

BASE = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2)


def config(model_type: str, **extra) -> dict:
    return {"model_type": model_type, **BASE, **extra}


@pytest.mark.parametrize("cfg, expected", [
    (config("qwen3", head_dim=8), dict(qk_norm=True, qkv_bias=False, o_bias=False)),
    (config("llama"), dict(qk_norm=False, qkv_bias=False, o_bias=False)),
    (config("llama", attention_bias=True, mlp_bias=True),
     dict(qk_norm=False, qkv_bias=True, o_bias=True, mlp_bias=True)),
    (config("qwen2"), dict(qk_norm=False, qkv_bias=True, o_bias=False)),
    (config("mistral", tie_word_embeddings=True, rope_theta=5e5, rms_norm_eps=1e-5),
     dict(tie_word_embeddings=True, rope_theta=5e5, rms_norm_eps=1e-5)),
    (config("llama", rope_parameters={"rope_theta": 1e5, "rope_type": "default"}),
     dict(rope_theta=1e5)),  # transformers >= 5
])
def test_architecture_of_a_config(cfg, expected):
    arch = architecture(cfg, "config.json")
    for key, value in expected.items():
        assert getattr(arch, key) == value, key


@pytest.mark.parametrize("head_dim", [None, "missing"])
def test_a_missing_or_null_head_dim_is_hidden_over_heads(head_dim):
    cfg = config("llama") | ({} if head_dim == "missing" else {"head_dim": None})
    assert architecture(cfg, "c").spec.head_dim == 8


@pytest.mark.parametrize("cfg, needle", [
    (config("gpt2"), "model_type 'gpt2'"),
    (config("llama", rope_scaling={"rope_type": "llama3", "factor": 8.0}), "llama3"),
    (config("llama", rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}), "yarn"),
    (config("qwen2", use_sliding_window=True, sliding_window=64), "sliding-window"),
    (config("mistral", sliding_window=4096), "sliding-window"),  # Mistral: every layer
    (config("llama", layer_types=["full_attention", "sliding_attention"]), "sliding-window"),
    (config("llama", partial_rotary_factor=0.5), "partial rotary"),
    (config("llama", hidden_act="gelu"), "hidden_act 'gelu'"),
])
def test_unsupported_layouts_are_refused_naming_the_file(cfg, needle):
    with pytest.raises(InputError, match=needle) as err:
        architecture(cfg, "m/config.json")
    assert "m/config.json" in str(err.value)


def random_llama(**extra):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(**BASE, **extra)
    model = transformers.LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.normal_(0.5, 0.2)
    return model


def test_safetensors_shards_read_lazily_equal_the_state_dict(tmp_path):
    model = random_llama(attention_bias=True)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    from_disk = ShardedDecoderModel(None, dtype=torch.float32,
                                    checkpoint=open_checkpoint(tmp_path))
    in_memory = ShardedDecoderModel(None, dtype=torch.float32,
                                    checkpoint=checkpoint_of_model(model, "m"))
    for (name, a), (_, b) in zip(from_disk.state_dict().items(),
                                 in_memory.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    w = model.model.layers[1].self_attn.q_proj.weight
    assert torch.equal(from_disk.layers[1].qkv_proj[:w.shape[0]], w)


def test_a_folder_without_weights_or_config_is_refused(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        open_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(InputError):
        open_checkpoint(tmp_path)


@pytest.mark.parametrize("tp", [2, 4])
def test_tensor_parallel_shards_sum_to_the_whole_layer(tp):
    """Simulated TP (no group): each rank's partial attention and MLP outputs sum to the
    unsharded layer's; the row-parallel biases count once."""
    model = random_llama(attention_bias=True, mlp_bias=True)
    ckpt = checkpoint_of_model(model, "m")
    whole = ShardedDecoderModel(None, dtype=torch.float64, checkpoint=ckpt)
    ranks = [ShardedDecoderModel(None, tp_size=tp, tp_rank=r, dtype=torch.float64,
                                 checkpoint=ckpt) for r in range(tp)]
    hidden = torch.randn(3, BASE["hidden_size"], dtype=torch.float64)
    assert torch.allclose(sum(m.layers[0].mlp_partial(hidden) for m in ranks),
                          whole.layers[0].mlp_partial(hidden))

    def attend(q, k, v):  # one token, attending to itself only: the output is v per group
        return v.repeat_interleave(q.shape[1] // k.shape[1], dim=1)

    pos = torch.tensor([0, 5, 9])
    parts = sum(m.layers[0].attention_partial(hidden, attend, pos) for m in ranks)
    assert torch.allclose(parts, whole.layers[0].attention_partial(hidden, attend, pos))
    vocab = torch.cat([m.lm_head for m in ranks])
    assert torch.equal(vocab, whole.lm_head)


def test_the_rope_base_of_a_transformers_config_is_the_one_used():
    """transformers >= 5 keeps the base in rope_parameters: read from a real config."""
    cfg = transformers.LlamaConfig(**BASE, rope_theta=123456.0).to_dict()
    assert architecture(cfg, "c").rope_theta == 123456.0


def test_qwen_configs_with_the_window_switched_off_load():
    cfg = config("qwen2", use_sliding_window=False, sliding_window=4096)
    assert architecture(cfg, "c").qkv_bias


def test_a_tensor_of_the_wrong_shape_is_refused_naming_it(tmp_path):
    model = random_llama()
    state = dict(model.state_dict())
    state["model.layers.1.mlp.up_proj.weight"] = state["model.layers.1.mlp.up_proj.weight"][:-1]
    from kinetics.model.checkpoint import Checkpoint, state_dict_reader

    arch = architecture(model.config.to_dict(), "m")
    with pytest.raises(InputError, match=r"model.layers.1.mlp.up_proj.weight has shape \[63, 32\]"):
        ShardedDecoderModel(None, dtype=torch.float32,
                            checkpoint=Checkpoint(arch, state_dict_reader(state), "m"))


def test_an_untied_config_without_an_lm_head_uses_the_embedding():
    model = random_llama()
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    from kinetics.model.checkpoint import Checkpoint, state_dict_reader

    arch = architecture(model.config.to_dict(), "m")
    assert not arch.tie_word_embeddings
    shard = ShardedDecoderModel(None, dtype=torch.float32,
                                checkpoint=Checkpoint(arch, state_dict_reader(state), "m"))
    assert torch.equal(shard.lm_head, model.model.embed_tokens.weight)


def test_a_config_head_dim_smaller_than_the_weights_is_refused(tmp_path):
    """The whole tensor's shape is checked before a rank's slice is cut from it."""
    import json

    model = random_llama()
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["head_dim"] = 4  # the weights hold 4 heads of 8
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"q_proj.weight has shape \[32, 32\], the config "
                                         r"needs \[16, 32\]"):
        ShardedDecoderModel(None, dtype=torch.float32, checkpoint=open_checkpoint(tmp_path))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_safetensors_file_is_one_line(tmp_path, damage):
    model = random_llama()
    model.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"\x07" * 4096)
    with pytest.raises(InputError, match="model.safetensors: cannot read it") as err:
        ShardedDecoderModel(None, dtype=torch.float32, checkpoint=open_checkpoint(tmp_path))
    assert "\n" not in str(err.value)


def test_a_stored_lm_head_is_used_even_when_the_config_ties_it():
    """transformers keeps a stored lm_head.weight; so does the engine."""
    model = random_llama()
    state = dict(model.state_dict())
    state["lm_head.weight"] = state["lm_head.weight"] + 1.0
    from kinetics.model.checkpoint import Checkpoint, state_dict_reader

    arch = architecture(model.config.to_dict() | {"tie_word_embeddings": True}, "m")
    shard = ShardedDecoderModel(None, dtype=torch.float32,
                                checkpoint=Checkpoint(arch, state_dict_reader(state), "m"))
    assert torch.equal(shard.lm_head, state["lm_head.weight"])
