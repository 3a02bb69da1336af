"""Real weights for :mod:`kinetics.model`: Qwen3 and Llama-family checkpoints.

A checkpoint is an HF ``config.json`` plus its tensors under HF names
(``model.layers.{i}.self_attn.q_proj.weight``, ...), from a safetensors folder
(one file or an index of shards) or from a loaded transformers model's
``state_dict`` (the route of a GGUF file, which transformers dequantises).
Each rank reads only its own shard (:func:`kinetics.model.parallel.shard_plan`):
safetensors slices are read lazily, row and column ranges at a time.

Supported layouts (:class:`Architecture`):

* Qwen3 (``model_type`` ``qwen3``): q/k RMSNorm per head, no biases;
* Llama family (``llama``, ``mistral``, ``qwen2``, SmolLM2): no q/k norm, optional
  q/k/v biases (``attention_bias``, Qwen2's are always on) and MLP biases
  (``mlp_bias``), tied or untied embeddings.

Refused with an InputError (one line naming the file): MoE layers, rotary scaling
other than none/default, sliding-window attention, partial rotary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinetics.errors import InputError, install_hint
from kinetics.model.parallel import ShardPlan
from kinetics.model.weights import LayerWeights
from kinetics.models import ModelSpec, model_from_config

if TYPE_CHECKING:
    import torch

ROPE_THETA = 1_000_000.0  # Qwen3's rotary base (the presets' architecture)
RMS_EPS = 1e-6  # Qwen3's RMSNorm epsilon
QK_NORM_TYPES = frozenset({"qwen3"})
LLAMA_TYPES = frozenset({"llama", "mistral", "qwen2"})
#: model types whose q/k/v projections always carry biases (no config flag)
ALWAYS_QKV_BIAS = frozenset({"qwen2"})


@dataclass(frozen=True)
class Architecture:
    """What a decoder layer needs beyond the shapes of :class:`ModelSpec`.

    Attributes:
        spec: the shapes (layers, hidden size, heads, head_dim, MLP width, vocabulary).
        rope_theta: rotary base.
        rms_norm_eps: epsilon of every RMSNorm.
        qk_norm: whether q and k pass a per-head RMSNorm before RoPE (Qwen3).
        qkv_bias, o_bias, mlp_bias: whether those projections carry biases.
        tie_word_embeddings: the config's flag (the loaded LM head is the checkpoint's
            ``lm_head.weight`` when it has one, as transformers keeps it, else the embedding).
    """

    spec: ModelSpec
    rope_theta: float = ROPE_THETA
    rms_norm_eps: float = RMS_EPS
    qk_norm: bool = True
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False

    @classmethod
    def qwen3(cls, spec: ModelSpec) -> Architecture:
        """A preset's architecture (Qwen3: q/k norm, no biases, untied head)."""
        return cls(spec)


def architecture(config: dict[str, Any], name: str) -> Architecture:
    """The :class:`Architecture` of an HF ``config.json`` (InputError naming ``name`` when
    the layout is not one of those this module loads)."""
    model_type = str(config.get("model_type", ""))
    if model_type not in QK_NORM_TYPES | LLAMA_TYPES:
        raise InputError(f"model_type {model_type!r} is not supported by the paged engine "
                         f"(supported: {', '.join(sorted(QK_NORM_TYPES | LLAMA_TYPES))})",
                         path=name)
    spec = model_from_config(config, name)
    if spec.is_moe:
        raise InputError("MoE layers are not supported by the paged engine", path=name)
    # transformers >= 5 writes {"rope_parameters": {"rope_theta", "rope_type", ...}}; older
    # configs (and the hub's Qwen3 files) a top-level rope_theta and rope_scaling
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default")) if rope else "default"
    theta = rope.get("rope_theta", config.get("rope_theta", 10_000.0))
    if kind != "default":
        raise InputError(f"rope_scaling {kind!r} is not supported (only none/default)",
                         path=name)
    # Mistral-style configs window every layer unless use_sliding_window says no (Qwen2/3
    # set it False); newer ones list per-layer types
    windowed = config.get("sliding_window") and config.get("use_sliding_window", True)
    if windowed or "sliding_attention" in (config.get("layer_types") or ()):
        raise InputError("sliding-window attention is not supported", path=name)
    if str(config.get("hidden_act", "silu")) != "silu":
        raise InputError(f"hidden_act {config.get('hidden_act')!r} is not supported (only "
                         "silu)", path=name)
    if float(config.get("partial_rotary_factor", 1.0)) != 1.0:
        raise InputError("partial rotary embeddings are not supported", path=name)
    attention_bias = bool(config.get("attention_bias", False))
    return Architecture(
        spec=spec,
        rope_theta=float(theta),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        qk_norm=model_type in QK_NORM_TYPES,
        qkv_bias=attention_bias or model_type in ALWAYS_QKV_BIAS,
        o_bias=attention_bias and model_type != "qwen2",
        mlp_bias=bool(config.get("mlp_bias", False)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


# ------------------------------------------------------------------ tensor sources
#: ``read(name, rows, cols, full=None)``: the tensor ``name`` restricted to a row range
#: and (for matrices) a column range, each ``(start, stop)`` or None for all; KeyError
#: when the checkpoint has no such tensor, InputError when ``full`` is given and the
#: whole tensor's shape is not ``full`` (checked before any slicing).
TensorReader = Callable[..., "torch.Tensor"]


def _check_full(name: str, shape: Sequence[int], full: tuple[int, ...] | None) -> None:
    """InputError naming tensor ``name`` when its whole ``shape`` is not ``full``."""
    if full is not None and tuple(shape) != tuple(full):
        raise InputError(f"tensor {name} has shape {list(shape)}, the config needs "
                         f"{list(full)}")


def _index(ndim: int, rows: tuple[int, int] | None, cols: tuple[int, int] | None
           ) -> tuple[slice, ...]:
    """The index of a row range and (for matrices) a column range, None for all."""
    index = [slice(None)] * ndim
    if rows is not None:
        index[0] = slice(*rows)
    if cols is not None:
        index[1] = slice(*cols)
    return tuple(index)


def state_dict_reader(state: dict[str, torch.Tensor]) -> TensorReader:
    """A reader over an in-memory ``state_dict`` (e.g. a transformers model's)."""
    def read(name, rows, cols, full=None):
        t = state[name]
        _check_full(name, t.shape, full)
        return t[_index(t.dim(), rows, cols)]
    return read


def safetensors_reader(folder: Path) -> TensorReader:
    """A reader over a safetensors folder (``model.safetensors`` or an index of shards);
    slices are read lazily, so a rank reads only its shard."""
    try:
        from safetensors import safe_open
    except ImportError:
        raise InputError(f"reading safetensors needs the safetensors package "
                         f"({install_hint('generate', torch=True)})") from None

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"not a safetensors index ({exc})", path=str(index)) from None
    else:
        single = folder / "model.safetensors"
        if not single.is_file():
            raise InputError("holds no model.safetensors or model.safetensors.index.json",
                             path=str(folder))
        try:
            with safe_open(str(single), framework="pt") as f:
                files = {k: single.name for k in f.keys()}
        except Exception as exc:  # noqa: BLE001 - a damaged or truncated file
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise InputError(f"cannot read it ({type(exc).__name__}: {first})",
                             path=str(single)) from None
    handles: dict[str, Any] = {}

    def read(name, rows, cols, full=None):
        file = files[name]  # KeyError: no such tensor
        path = folder / file
        try:
            if file not in handles:
                handles[file] = safe_open(str(path), framework="pt")
            part = handles[file].get_slice(name)
        except Exception as exc:  # noqa: BLE001 - a damaged or truncated file
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise InputError(f"cannot read it ({type(exc).__name__}: {first})",
                             path=str(path)) from None
        shape = part.get_shape()
        _check_full(name, shape, full)
        return part[_index(len(shape), rows, cols)]
    return read


# ------------------------------------------------------------------ sharded weights
def _q_rows(plan: ShardPlan, d: int) -> tuple[int, int]:
    return plan.q_start * d, (plan.q_start + plan.local_q_heads) * d


def _kv_rows(plan: ShardPlan, d: int) -> tuple[int, int]:
    return plan.kv_start * d, (plan.kv_start + plan.local_kv_heads) * d


def layer_tensors(read: TensorReader, arch: Architecture, index: int, plan: ShardPlan
                  ) -> LayerWeights:
    """Layer ``index``'s shard under ``plan`` in the fused layouts of
    :class:`~kinetics.model.weights.LayerWeights` (dtype as stored; q/k norms and biases
    None where the architecture has none)."""
    import torch

    d, p = arch.spec.head_dim, f"model.layers.{index}."
    q, kv = _q_rows(plan, d), _kv_rows(plan, d)
    mlp = (plan.mlp_start, plan.mlp_start + plan.local_mlp)

    h = arch.spec.hidden_size

    def get(name, full, rows=None, cols=None):
        try:
            return torch.as_tensor(read(p + name, rows, cols, full))
        except KeyError:
            raise InputError(f"the checkpoint has no tensor {p + name}") from None

    spec, a, m = arch.spec, "self_attn.", "mlp."
    fq, fkv, fm = spec.num_q_heads * d, spec.num_kv_heads * d, spec.intermediate_size
    out = {
        "input_layernorm": get("input_layernorm.weight", (h,)),
        "qkv_proj": torch.cat([get(a + "q_proj.weight", (fq, h), q),
                               get(a + "k_proj.weight", (fkv, h), kv),
                               get(a + "v_proj.weight", (fkv, h), kv)]),
        "q_norm": get(a + "q_norm.weight", (d,)) if arch.qk_norm else None,
        "k_norm": get(a + "k_norm.weight", (d,)) if arch.qk_norm else None,
        "o_proj": get(a + "o_proj.weight", (h, fq), None, q),
        "post_attention_layernorm": get("post_attention_layernorm.weight", (h,)),
        "gate_up_proj": torch.cat([get(m + "gate_proj.weight", (fm, h), mlp),
                                   get(m + "up_proj.weight", (fm, h), mlp)]),
        "down_proj": get(m + "down_proj.weight", (h, fm), None, mlp),
        "qkv_bias": None, "o_bias": None, "gate_up_bias": None, "down_bias": None,
    }
    if arch.qkv_bias:
        out["qkv_bias"] = torch.cat([get(a + "q_proj.bias", (fq,), q),
                                     get(a + "k_proj.bias", (fkv,), kv),
                                     get(a + "v_proj.bias", (fkv,), kv)])
    if arch.o_bias:  # row parallel: the full bias, added once (rank 0)
        out["o_bias"] = get(a + "o_proj.bias", (h,))
    if arch.mlp_bias:
        out["gate_up_bias"] = torch.cat([get(m + "gate_proj.bias", (fm,), mlp),
                                         get(m + "up_proj.bias", (fm,), mlp)])
        out["down_bias"] = get(m + "down_proj.bias", (h,))
    return LayerWeights(**out)


def head_tensors(read: TensorReader, arch: Architecture, vocab_rows: tuple[int, int]
                 ) -> dict[str, torch.Tensor]:
    """The embedding (whole), final norm and this rank's LM-head rows ``vocab_rows``."""
    import torch

    h, vocab = arch.spec.hidden_size, arch.spec.vocab_size

    def get(name, full, rows=None):
        try:
            return torch.as_tensor(read(name, rows, None, full))
        except KeyError:
            raise InputError(f"the checkpoint has no tensor {name}") from None

    # a stored LM head is the LM head (transformers keeps it, tied or not); without one
    # the embedding is (tied, or an untied config whose file has none)
    head = "lm_head.weight"
    try:
        read(head, (0, 1), None)
    except KeyError:
        head = "model.embed_tokens.weight"
    return {"embed_tokens": get("model.embed_tokens.weight", (vocab, h)),
            "norm": get("model.norm.weight", (h,)),
            "lm_head": get(head, (vocab, h), vocab_rows)}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint opened for reading: its architecture, its tensor reader and where it
    came from (a folder, or the name a loaded model was given)."""

    arch: Architecture
    read: TensorReader
    source: str


def open_checkpoint(folder: str | Path) -> Checkpoint:
    """The checkpoint in an HF folder (``config.json`` + safetensors); InputError on a
    missing or unreadable config or weights."""
    folder = Path(folder)
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise InputError("holds no config.json", path=str(folder)) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read it ({exc})", path=str(config_path)) from None
    if not isinstance(config, dict):
        raise InputError("is not a JSON object", path=str(config_path))
    return Checkpoint(architecture(config, str(config_path)), safetensors_reader(folder),
                      str(folder))


def checkpoint_of_model(model: Any, name: str) -> Checkpoint:
    """The checkpoint of a loaded transformers causal LM (its config and ``state_dict``;
    the tensors are not copied)."""
    config = model.config.to_dict()
    state = dict(model.state_dict())
    return Checkpoint(architecture(config, name), state_dict_reader(state), name)
