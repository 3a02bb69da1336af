"""A whole decoder model's step: embedding, L layers, final norm, LM head, greedy.

Qwen3 presets with synthetic weights for the benchmarks, or a checkpoint's real weights
(Qwen3 or Llama family, :mod:`kinetics.model.checkpoint`) for the paged generation
engine, which also runs a prompt's tokens through :meth:`ShardedDecoderModel.local_logits`.

:class:`ShardedDecoderModel` is one tensor-parallel rank's shard of a model preset
(all ``num_layers`` :class:`~kinetics.model.layer.ShardedDecoderLayer` shards, hashed
weights as the layer's), decoding one new token for each of ``batch`` requests:

    h = embed(tokens)                                  # replicated embedding
    h = layer_i(h) for each layer                      # two all-reduces per layer
    logits = rms_norm(h) @ lm_head_shard^T             # vocab-parallel LM head
    next = argmax over the whole vocabulary            # all-gather of (max, index)

Two implementations of one step, equal up to float rounding:

* ``impl="reference"``: each layer's reference ``forward`` (torch ops, the CPU tests'
  ground truth);
* ``impl="fused"``: the residual-stream formulation with the fused kernels of
  :mod:`kinetics.model.fused` (Triton on CUDA, the torch reference elsewhere).

:class:`kinetics.model.capture.CapturedStep` records a whole step (every layer,
attention and the all-reduces included) as one CUDA graph. ``attends[i]`` is layer
``i``'s attention (``attend(q, k, v)``, see ``ShardedDecoderLayer.forward``); it owns
that layer's KV cache. For a CUDA graph the attends must keep fixed shapes (the paged
benchmark attends overwrite the last cached slot; see kinetics.bench.spec.layer_attend).

Weights: layer ``i`` uses seed ``layer_seed(seed, i)``; the embedding, final norm and
LM head use tensor ids of their own under ``seed``, so every rank generates exactly
its own shard and any ``tp`` shards the same full model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from kinetics.errors import InputError
from kinetics.model.checkpoint import RMS_EPS, Checkpoint, head_tensors, layer_tensors
from kinetics.model.fused import add_rms_norm, fused_layer_step
from kinetics.model.layer import Attend, ShardedDecoderLayer, param, rms_norm
from kinetics.model.parallel import shard_plan
from kinetics.model.weights import hashed_uniform
from kinetics.models import ModelSpec

IMPLS: tuple[str, ...] = ("fused", "reference")
LAYER_SEED_STRIDE = 7919  # seeds of consecutive layers (prime: no tensor-id collisions)
_EMBED_ID, _LM_HEAD_ID, _FINAL_NORM_ID = 12, 13, 14  # after the layer's ids 1-11


def layer_seed(seed: int, index: int) -> int:
    """Weight seed of layer ``index`` of a model with weight seed ``seed``."""
    return seed + LAYER_SEED_STRIDE * (index + 1)


@dataclass(frozen=True)
class StepOutput:
    """One decode step's result.

    Attributes:
        tokens: [batch] int64 greedy next tokens (global vocabulary ids, same on every rank).
        logits: [batch, vocab / tp] this rank's slice of the logits (vocab ids
            ``vocab_start .. vocab_start + vocab / tp``).
    """

    tokens: torch.Tensor
    logits: torch.Tensor


class ShardedDecoderModel(torch.nn.Module):
    """One rank's shard of a whole decoder-only model for decode steps.

    Args:
        model: the architecture; ``num_layers`` layers are built unless ``num_layers``
            is given (fewer layers: a truncated model, for tests and quick runs).
        tp_size, tp_rank, group: as for ShardedDecoderLayer; the LM head is split by
            vocabulary rows (``vocab_size % tp_size == 0``), the embedding replicated.
        dtype, device, seed: as for ShardedDecoderLayer.
        checkpoint: real weights (:mod:`kinetics.model.checkpoint`; ``model`` is then
            ignored: the checkpoint's architecture is used); None: synthetic weights.
    """

    def __init__(self, model: ModelSpec, tp_size: int = 1, tp_rank: int = 0, group=None,
                 dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu",
                 seed: int = 0, num_layers: int | None = None, *,
                 checkpoint: Checkpoint | None = None) -> None:
        super().__init__()
        if checkpoint is not None:
            model = checkpoint.arch.spec
        num_layers = model.num_layers if num_layers is None else num_layers
        if num_layers < 1:
            raise InputError(f"a model needs at least one layer, got {num_layers}")
        if model.vocab_size % tp_size:
            raise InputError(f"{model.name}: vocabulary {model.vocab_size} does not divide "
                             f"by tp {tp_size}")
        device = torch.device(device)
        self.model, self.tp_size, self.tp_rank, self.group = model, tp_size, tp_rank, group
        self.dtype, self.seed = dtype, seed
        h, vocab = model.hidden_size, model.vocab_size
        self.local_vocab = vocab // tp_size
        self.vocab_start = tp_rank * self.local_vocab
        if checkpoint is not None:
            self._load(checkpoint, num_layers, device)
            return
        self.rms_eps = RMS_EPS
        self.layers = torch.nn.ModuleList(
            ShardedDecoderLayer(model, tp_size, tp_rank, group, dtype, device, layer_seed(seed, i))
            for i in range(num_layers))
        all_h = torch.arange(h)
        self.embed_tokens = param(hashed_uniform(
            seed, _EMBED_ID, torch.arange(vocab), all_h, math.sqrt(3.0), dtype, device))
        rows = torch.arange(self.vocab_start, self.vocab_start + self.local_vocab)
        self.lm_head = param(hashed_uniform(seed, _LM_HEAD_ID, rows, all_h,
                                                  math.sqrt(3.0 / h), dtype, device))
        norm = 1.0 + hashed_uniform(seed, _FINAL_NORM_ID, torch.zeros(1), all_h, 0.1,
                                    torch.float32, device)[0]
        self.norm = param(norm.to(dtype))

    def _load(self, checkpoint: Checkpoint, num_layers: int, device: torch.device) -> None:
        """Real weights: every layer's shard, the embedding, final norm and LM-head rows."""
        arch, read = checkpoint.arch, checkpoint.read
        plan = shard_plan(arch.spec, self.tp_size, self.tp_rank)
        self.rms_eps = arch.rms_norm_eps
        self.layers = torch.nn.ModuleList(
            ShardedDecoderLayer(arch.spec, self.tp_size, self.tp_rank, self.group, self.dtype,
                                device, weights=layer_tensors(read, arch, i, plan), arch=arch)
            for i in range(num_layers))
        rows = (self.vocab_start, self.vocab_start + self.local_vocab)
        head = head_tensors(read, arch, rows)
        for name, tensor in head.items():
            setattr(self, name, param(tensor.to(device=device, dtype=self.dtype)))

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.device

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states [batch, hidden] of tokens [batch] (int64 vocabulary ids)."""
        return F.embedding(tokens, self.embed_tokens)

    def greedy(self, local_logits: torch.Tensor) -> torch.Tensor:
        """Argmax over the whole vocabulary from each rank's slice: [batch] int64.

        Ties go to the lowest vocabulary id (as ``torch.argmax`` over full logits).
        """
        index = local_logits.argmax(-1)
        if self.group is None:
            return index + self.vocab_start
        value = local_logits.gather(-1, index[:, None])[:, 0].float()
        batch = index.shape[0]
        values = torch.empty(self.tp_size * batch, dtype=value.dtype, device=value.device)
        indices = torch.empty(self.tp_size * batch, dtype=index.dtype, device=index.device)
        dist.all_gather_into_tensor(values, value, group=self.group)
        dist.all_gather_into_tensor(indices, index + self.vocab_start, group=self.group)
        best = values.view(self.tp_size, batch).argmax(0)  # first max: the lowest rank
        return indices.view(self.tp_size, batch).gather(0, best[None])[0]

    def _check(self, tokens: torch.Tensor, attends: Sequence[Attend],
               positions: torch.Tensor) -> None:
        if tokens.dim() != 1 or positions.shape != tokens.shape:
            raise ValueError(f"tokens and positions must both be [batch], got "
                             f"{tuple(tokens.shape)} and {tuple(positions.shape)}")
        if len(attends) != len(self.layers):
            raise ValueError(f"need one attend per layer ({len(self.layers)}), got {len(attends)}")

    @property
    def fused_supported(self) -> bool:
        """Whether ``impl="fused"`` computes this model (every layer Qwen3-style)."""
        return all(layer.fused_supported for layer in self.layers)

    def local_logits(self, tokens: torch.Tensor, attends: Sequence[Attend],
                     positions: torch.Tensor, impl: str = "fused",
                     keep: torch.Tensor | None = None) -> torch.Tensor:
        """This rank's vocabulary slice of the logits ``[n, vocab / tp]`` of ``tokens``
        ``[n]`` at ``positions`` ``[n]`` (one token per request, or a prompt's tokens: the
        attends decide). ``keep``: indices of the rows whose logits are wanted (default
        all; the final norm and LM head run on those only)."""
        self._check(tokens, attends, positions)
        hidden = self.embed(tokens)
        if impl == "reference":
            for layer, attend in zip(self.layers, attends, strict=True):
                hidden = layer(hidden, attend, positions)
            x = hidden if keep is None else hidden[keep]
            x = rms_norm(x, self.norm, self.rms_eps)
        elif impl == "fused":
            delta = None
            for layer, attend in zip(self.layers, attends, strict=True):
                delta, hidden = fused_layer_step(layer, delta, hidden, attend, positions)
            if keep is not None:
                delta, hidden = delta[keep], hidden[keep]
            x, _ = add_rms_norm(delta, hidden, self.norm, self.rms_eps)
        else:
            raise InputError(f"unknown implementation '{impl}' (choose from {', '.join(IMPLS)})")
        return F.linear(x, self.lm_head)

    def gather_logits(self, local: torch.Tensor) -> torch.Tensor:
        """The whole vocabulary's logits ``[n, vocab]`` from every rank's slice (an
        all-gather over the group; the slice itself without one)."""
        if self.group is None or self.tp_size == 1:
            return local
        parts = [torch.empty_like(local) for _ in range(self.tp_size)]
        dist.all_gather(parts, local.contiguous(), group=self.group)  # gloo and NCCL
        return torch.cat(parts, dim=-1)

    def step(self, tokens: torch.Tensor, attends: Sequence[Attend], positions: torch.Tensor,
             impl: str = "fused") -> StepOutput:
        """Decode one token for each request: tokens [batch] at positions [batch]."""
        logits = self.local_logits(tokens, attends, positions, impl)
        return StepOutput(self.greedy(logits), logits)

    def weight_bytes(self) -> int:
        """Bytes of this rank's parameters (all read once per decode step)."""
        return sum(p.numel() * p.element_size() for p in self.parameters())
