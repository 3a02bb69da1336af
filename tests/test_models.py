"""Model presets and config.json loading."""

from __future__ import annotations

import json

import pytest

from kinetics.errors import InputError
from kinetics.models import (
    MODELS,
    PUBLISHED_PARAMS_B,
    get_model,
    load_model_config,
    with_param_count,
)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_derived_parameter_count_matches_published(name):
    """Shapes from config.json give the published totals (independent numbers)."""
    model = MODELS[name]
    total_b, active_b = PUBLISHED_PARAMS_B[name]
    # the published Qwen3-4B figure counts its tied embedding once, the others twice
    once = model.vocab_size * model.hidden_size if name == "qwen3-4b" else 0
    assert (model.derived_total_params - once) / 1e9 == pytest.approx(total_b, rel=0.01)
    assert (model.derived_active_params - once) / 1e9 == pytest.approx(active_b, rel=0.02)


def test_lookup_is_case_insensitive_and_accepts_hub_ids():
    assert get_model("Qwen/Qwen3-8B") is MODELS["qwen3-8b"]
    with pytest.raises(InputError, match="unknown model"):
        get_model("llama-9000")


def test_config_json_loads_offline(tmp_path):
    config = {
        "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = load_model_config(tmp_path)
    assert model.head_dim == 16 and not model.is_moe
    attn = 64 * 16 * (4 + 4) + 4 * 16 * 64 + 2 * 16 + 2 * 64
    expected = 2 * (attn + 3 * 64 * 128) + 2 * 100 * 64 + 64
    assert model.total_params == model.active_params == expected


@pytest.mark.parametrize("head_dim", ["missing", None])
def test_null_or_missing_head_dim_is_hidden_over_heads(tmp_path, head_dim):
    """As transformers: no head_dim, or "head_dim": null, means hidden_size / heads."""
    config = {"num_hidden_layers": 2, "hidden_size": 96, "num_attention_heads": 6,
              "num_key_value_heads": 2, "intermediate_size": 128,
              "vocab_size": 100}
    if head_dim != "missing":
        config["head_dim"] = head_dim
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = load_model_config(tmp_path)
    assert model.head_dim == 16 and model.num_kv_heads == 2


def test_null_field_with_a_default_takes_the_default(tmp_path):
    config = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
              "num_key_value_heads": None, "head_dim": None, "num_experts": None,
              "intermediate_size": 128, "vocab_size": 100}
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = load_model_config(tmp_path)
    assert (model.num_kv_heads, model.head_dim, model.is_moe) == (4, 16, False)


def test_moe_config_counts_active_experts(tmp_path):
    config = {
        "num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2, "head_dim": 4,
        "num_key_value_heads": 1, "intermediate_size": 99, "vocab_size": 10,
        "num_experts": 4, "num_experts_per_tok": 1, "moe_intermediate_size": 2,
    }
    path = tmp_path / "moe.json"
    path.write_text(json.dumps(config))
    model = load_model_config(path)
    assert model.is_moe
    assert model.total_params - model.active_params == 3 * (3 * 8 * 2)


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"hidden_size": 8}), "field 'num_hidden_layers'"),
    (json.dumps({"num_hidden_layers": -1, "hidden_size": 8}), "positive integer"),
    (json.dumps({"text_config": [1]}), "field 'text_config': expected an object"),
    (json.dumps({"num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 0}),
     "field 'num_attention_heads': expected a positive integer, got 0"),
    (json.dumps({"num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 4,
                 "num_key_value_heads": 3}), "field 'num_key_value_heads'"),
    (json.dumps({"num_hidden_layers": 2, "hidden_size": 10, "num_attention_heads": 4,
                 "head_dim": None, "intermediate_size": 8, "vocab_size": 10}),
     "field 'head_dim': null or missing, and hidden_size 10 does not divide into 4"),
    (json.dumps({"num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 2,
                 "vocab_size": 10, "num_experts": 4, "num_experts_per_tok": 5,
                 "moe_intermediate_size": 2}),
     "field 'num_experts_per_tok': 5 experts per token but only 4 experts"),
])
def test_bad_config_names_the_file_and_field(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        load_model_config(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_model_config(tmp_path / "nope.json")


# Independent figures (shared facts): with a tied embedding counted once the three
# small models are 0.596B, 1.72B and 4.02B; the untied 8B and up are the published
# count less one vocab x hidden embedding; the MoE shape counts 3.353B and 22.19B
# (both embeddings) less one embedding.
@pytest.mark.parametrize("name, want", [
    ("qwen3-0.6b", 0.596e9), ("qwen3-1.7b", 1.72e9), ("qwen3-4b", 4.02e9),
    ("qwen3-8b", 8.19e9 - 151936 * 4096), ("qwen3-14b", 14.77e9 - 151936 * 5120),
    ("qwen3-32b", 32.76e9 - 151936 * 5120), ("qwen3-30b-a3b", 3.353e9 - 151936 * 2048),
    ("qwen3-235b-a22b", 22.19e9 - 151936 * 4096),
])
def test_derived_count_is_the_decode_matmul_weights(name, want):
    total, active = MODELS[name].decode_matmul_params
    assert active == pytest.approx(want, rel=2e-3)
    derived = with_param_count(MODELS[name], "derived")
    assert derived.active_params == active and derived.total_params == total
    assert (total == active) == (not MODELS[name].is_moe)
    assert with_param_count(MODELS[name], "published") is MODELS[name]


def test_unknown_param_count_is_an_input_error():
    with pytest.raises(InputError, match="published, derived"):
        with_param_count(MODELS["qwen3-8b"], "guessed")
