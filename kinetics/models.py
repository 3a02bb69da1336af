"""Model architectures (from HF ``config.json``) and their parameter counts.

Parameter counts follow the Kinetics code's convention: the input embedding and the
LM head are both counted (``2 * vocab * hidden``), also where they are tied, because
the LM head's matrix product is real compute at every decoded token. For MoE models
``active_params`` counts the experts one token uses (``num_experts_per_tok``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kinetics.errors import InputError
from kinetics.jsonfile import read_json_object


@dataclass(frozen=True)
class ModelSpec:
    """The shape facts the cost model needs.

    Attributes:
        name: preset key, or the config's path (the NAME of ``--model-config NAME=PATH``).
        num_layers, hidden_size, num_q_heads, num_kv_heads, head_dim: from config.json.
        intermediate_size: dense MLP width (0 for MoE layers).
        vocab_size: tokens.
        num_experts, experts_per_token, moe_intermediate_size: MoE facts (0 if dense).
    """

    name: str
    num_layers: int
    hidden_size: int
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    published_params: tuple[int, int] | None = None  # (total, active) if published

    @property
    def total_params(self) -> int:
        """All parameters: the published count for presets, else derived."""
        return self.published_params[0] if self.published_params else self.derived_total_params

    @property
    def active_params(self) -> int:
        """Parameters one decoded token uses (= total for dense models)."""
        return self.published_params[1] if self.published_params else self.derived_active_params

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def attention_params_per_layer(self) -> int:
        """q, k, v, o projections plus the q/k RMSNorm weights (parameters)."""
        d, h = self.head_dim, self.hidden_size
        qkv = h * d * (self.num_q_heads + 2 * self.num_kv_heads)
        out = self.num_q_heads * d * h
        return qkv + out + 2 * d + 2 * h  # q_norm, k_norm, two layer norms

    @property
    def expert_params(self) -> int:
        """Parameters of one expert in one layer (gate, up, down)."""
        return 3 * self.hidden_size * self.moe_intermediate_size

    @property
    def shared_params(self) -> int:
        """Parameters every token uses: attention, dense MLP, router, embeddings."""
        per_layer = self.attention_params_per_layer
        if self.is_moe:
            per_layer += self.hidden_size * self.num_experts  # router
        else:
            per_layer += 3 * self.hidden_size * self.intermediate_size
        return self.num_layers * per_layer + 2 * self.vocab_size * self.hidden_size + self.hidden_size

    @property
    def derived_total_params(self) -> int:
        """All parameters from the shapes (embeddings and LM head both counted)."""
        return self.shared_params + self.num_layers * self.num_experts * self.expert_params

    @property
    def derived_active_params(self) -> int:
        """Parameters one decoded token touches, from the shapes; = total for dense."""
        return self.shared_params + self.num_layers * self.experts_per_token * self.expert_params

    @property
    def matmul_params_per_layer(self) -> int:
        """Weights one layer's matrix products use for one token: q, k, v, o, and the
        dense MLP or the router plus ``experts_per_token`` experts (no norms)."""
        d, h = self.head_dim, self.hidden_size
        attention = h * d * (2 * self.num_q_heads + 2 * self.num_kv_heads)
        if self.is_moe:
            return attention + h * self.num_experts + self.experts_per_token * self.expert_params
        return attention + 3 * h * self.intermediate_size

    @property
    def decode_matmul_params(self) -> tuple[int, int]:
        """(total, active) weights a decode step multiplies, from the shapes: the
        non-embedding matrices plus the LM head once (the embedding is a lookup).
        Total counts every expert of an MoE model."""
        head = self.vocab_size * self.hidden_size
        active = self.num_layers * self.matmul_params_per_layer + head
        unused = self.num_layers * (self.num_experts - self.experts_per_token) * self.expert_params
        return active + unused, active

    def kv_bytes_per_token(self, bytes_per_element: int = 2) -> int:
        """KV-cache bytes one token occupies across all layers (K and V)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * bytes_per_element


_QWEN3_COMMON = {"vocab_size": 151936, "head_dim": 128}

# From each model's public config.json (Qwen/<name> on the HF hub). Parameter counts
# are derived, and a test checks them against the published totals.
_PRESET_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen3-0.6b": dict(num_hidden_layers=28, hidden_size=1024, num_attention_heads=16,
                       num_key_value_heads=8, intermediate_size=3072),
    "qwen3-1.7b": dict(num_hidden_layers=28, hidden_size=2048, num_attention_heads=16,
                       num_key_value_heads=8, intermediate_size=6144),
    "qwen3-4b": dict(num_hidden_layers=36, hidden_size=2560, num_attention_heads=32,
                     num_key_value_heads=8, intermediate_size=9728),
    "qwen3-8b": dict(num_hidden_layers=36, hidden_size=4096, num_attention_heads=32,
                     num_key_value_heads=8, intermediate_size=12288),
    "qwen3-14b": dict(num_hidden_layers=40, hidden_size=5120, num_attention_heads=40,
                      num_key_value_heads=8, intermediate_size=17408),
    "qwen3-32b": dict(num_hidden_layers=64, hidden_size=5120, num_attention_heads=64,
                      num_key_value_heads=8, intermediate_size=25600),
    "qwen3-30b-a3b": dict(num_hidden_layers=48, hidden_size=2048, num_attention_heads=32,
                          num_key_value_heads=4, intermediate_size=6144, num_experts=128,
                          num_experts_per_tok=8, moe_intermediate_size=768),
    "qwen3-235b-a22b": dict(num_hidden_layers=94, hidden_size=4096, num_attention_heads=64,
                            num_key_value_heads=4, intermediate_size=12288, num_experts=128,
                            num_experts_per_tok=8, moe_intermediate_size=1536),
}


def model_from_config(config: dict[str, Any], name: str) -> ModelSpec:
    """Build a ModelSpec from a parsed HF config.json dict.

    Raises InputError naming the missing or malformed field. A field that is null
    counts as absent (its default applies, as in transformers): ``head_dim`` missing or
    null is ``hidden_size / num_attention_heads``.
    """
    def field(key: str, default: int | None = None, *, minimum: int = 0) -> int:
        value = config.get(key)
        if value is None:
            value = default
        if value is None:
            raise InputError("missing required field", path=name, field=key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive" if minimum == 1 else "a non-negative"
            raise InputError(f"expected {kind} integer, got {value!r}", path=name, field=key)
        return value

    if "text_config" in config and "num_hidden_layers" not in config:
        config = config["text_config"]
        if not isinstance(config, dict):
            raise InputError(f"expected an object, got {type(config).__name__}", path=name,
                             field="text_config")
    num_layers = field("num_hidden_layers", minimum=1)
    hidden = field("hidden_size", minimum=1)
    q_heads = field("num_attention_heads", minimum=1)
    kv_heads = field("num_key_value_heads", q_heads, minimum=1)
    if q_heads % kv_heads:
        raise InputError(f"{q_heads} query heads do not divide into {kv_heads} KV-head groups",
                         path=name, field="num_key_value_heads")
    if config.get("head_dim") is None and hidden % q_heads:
        raise InputError(f"null or missing, and hidden_size {hidden} does not divide into "
                         f"{q_heads} attention heads (give head_dim)", path=name, field="head_dim")
    num_experts = field("num_experts", 0) or field("num_local_experts", 0)
    experts_per_token = field("num_experts_per_tok", minimum=1) if num_experts else 0
    if experts_per_token > num_experts:
        raise InputError(f"{experts_per_token} experts per token but only {num_experts} experts",
                         path=name, field="num_experts_per_tok")
    moe_intermediate = field("moe_intermediate_size", 0) if num_experts else 0
    return ModelSpec(
        name=name,
        num_layers=num_layers,
        hidden_size=hidden,
        num_q_heads=q_heads,
        num_kv_heads=kv_heads,
        head_dim=field("head_dim", hidden // q_heads, minimum=1),
        intermediate_size=0 if num_experts else field("intermediate_size"),
        vocab_size=field("vocab_size", minimum=1),
        num_experts=num_experts,
        experts_per_token=experts_per_token,
        moe_intermediate_size=moe_intermediate or (field("intermediate_size") if num_experts else 0),
    )


# Total and active parameters (billions) as used by the Kinetics code. They count
# the LM head beside the embedding, except Qwen3-4B's 4.02, which counts its tied
# embedding once (our shapes give 4.41 with both); we keep the published numbers so
# costs match the paper's.
PUBLISHED_PARAMS_B: dict[str, tuple[float, float]] = {
    "qwen3-0.6b": (0.752, 0.752), "qwen3-1.7b": (2.03, 2.03), "qwen3-4b": (4.02, 4.02),
    "qwen3-8b": (8.19, 8.19), "qwen3-14b": (14.77, 14.77), "qwen3-32b": (32.76, 32.76),
    "qwen3-30b-a3b": (30.5, 3.3), "qwen3-235b-a22b": (235.0, 22.0),
}

MODELS: dict[str, ModelSpec] = {
    key: replace(
        model_from_config({**_QWEN3_COMMON, **cfg}, key),
        published_params=tuple(round(b * 1e9) for b in PUBLISHED_PARAMS_B[key]),
    )
    for key, cfg in _PRESET_CONFIGS.items()
}


PARAM_COUNTS: tuple[str, ...] = ("published", "derived")


def with_param_count(model: ModelSpec, param_count: str) -> ModelSpec:
    """The model priced with ``param_count`` parameters: 'published' (the paper's
    counts for presets; unchanged) or 'derived' (:attr:`ModelSpec.decode_matmul_params`)."""
    if param_count == "published":
        return model
    if param_count == "derived":
        return replace(model, published_params=model.decode_matmul_params)
    raise InputError(f"unknown parameter count '{param_count}' (choose from "
                     f"{', '.join(PARAM_COUNTS)})")


def load_model_config(path: str | Path) -> ModelSpec:
    """Read a local HF config.json (no network) into a ModelSpec named by its folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    config = read_json_object(path)
    return model_from_config(config, str(path))


def get_model(name: str, config_path: str | Path | None = None, *,
              config_flag: bool = False) -> ModelSpec:
    """A preset by name (case-insensitive, 'Qwen/Qwen3-8B' also accepted), or the
    config.json at ``config_path`` named :func:`model_key` of ``name``.

    An unknown name is an InputError listing the presets; ``config_flag`` (for commands
    that have ``--model-config``) adds how to give the model a config.
    """
    if config_path is not None:
        return replace(load_model_config(config_path), name=model_key(name))
    key = preset_key(name)
    if key is None:
        hint = f"; or give it a config: --model-config {name}=PATH/config.json" \
            if config_flag else ""
        raise InputError(f"unknown model '{name}' (presets: {', '.join(MODELS)}{hint})")
    return MODELS[key]


def preset_key(name: str) -> str | None:
    """The preset a model name means ('Qwen/Qwen3-8B', 'QWEN3-8B' -> 'qwen3-8b'), else None."""
    key = str(name).strip().lower().split("/")[-1]
    return key if key in MODELS else None


def model_key(name: str) -> str:
    """The one name of a model everywhere (trial tables, ``--model-config NAME=``,
    ``--model``, presets): a preset's key ('Qwen/Qwen3-4B' -> 'qwen3-4b'), else the
    name with surrounding spaces removed."""
    return preset_key(name) or str(name).strip()
