"""The quality sweep: one dense teacher-forced pass, then recall and a sparse pass per config.

Scored positions are the decode positions that have a next token in the sequence,
``decode_start .. T - 2``: each contributes its attention recall (every layer and query
head), its next-token agreement and KL against dense, and the NLL of the token that
follows it. Positions whose context fits the budget attend densely, as in a real decode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kinetics.errors import InputError
from kinetics.quality.sparse import SparseConfig

if TYPE_CHECKING:
    import torch

    from kinetics.quality.capture import LayerQKV
    from kinetics.quality.sequence import TokenSequence

RECALL_QUANTILE = 0.10


@dataclass(frozen=True)
class ConfigQuality:
    """Quality of one sparse configuration against dense on the scored positions.

    Attributes:
        recall_mean, recall_p10: attention-mass recall (share of the dense softmax mass on
            the selected keys) over layers x query heads x positions: mean, 10th percentile.
        recall_per_layer: mean recall of each layer (layer 0 first).
        top1_agreement: share of positions whose arg-max next token equals dense's.
        kl_nats: mean KL(dense || sparse) of the next-token distribution, nats per token.
        nll_delta_nats: mean NLL of the sequence's next token, sparse minus dense, nats/token.
        seconds: wall time of this configuration's sparse forward pass.
    """

    config: SparseConfig
    recall_mean: float
    recall_p10: float
    recall_per_layer: tuple[float, ...]
    top1_agreement: float
    kl_nats: float
    nll_delta_nats: float
    seconds: float


@dataclass(frozen=True)
class QualityRun:
    """A whole sweep: the sequence, the dense baseline and one result per configuration."""

    model: str
    source: str
    tokens: int
    decode_start: int
    scored_positions: int
    dense_nll_nats: float
    results: tuple[ConfigQuality, ...]
    seconds: float


def _layer_recalls(layers: list[LayerQKV], configs: list[SparseConfig], decode_start: int,
                   scored: slice, tick: Callable[[str], None]) -> dict[SparseConfig, Any]:
    """Per config: recall ``[layers, Hq, scored positions]`` from the captured dense q, k."""
    import torch

    from kinetics.attention.reference import causal_attention_probs
    from kinetics.quality.metrics import attention_recall
    from kinetics.quality.sparse import selection_mask

    out: dict[SparseConfig, list[torch.Tensor]] = {c: [] for c in configs}
    for i, layer in enumerate(layers):
        probs = causal_attention_probs(layer.q, layer.k, None, layer.scale)
        for config in configs:
            mask = selection_mask(config, layer.q, layer.k, decode_start)
            out[config].append(attention_recall(probs, mask)[0, :, scored])
        tick(f"recall layer {i + 1}/{len(layers)}")
    return {c: torch.stack(v) for c, v in out.items()}


def sweep(model: Any, sequence: TokenSequence, configs: list[SparseConfig], name: str = "",
          tick: Callable[[str], None] | None = None) -> QualityRun:
    """Run the dense pass and every configuration; ``tick(label)`` reports each step
    (one per layer for recall, one per configuration, one for the dense pass)."""
    from kinetics.quality import metrics
    from kinetics.quality.capture import teacher_forced

    tick = tick or (lambda label: None)
    start = time.perf_counter()
    ids, first = sequence.ids, sequence.decode_start
    if sequence.length - 1 <= first:
        raise InputError(f"no decode position with a next token: {sequence.length} tokens, "
                         f"decode starts at {first}")
    scored = slice(first, sequence.length - 1)
    targets = ids[0, first + 1:]
    dense = teacher_forced(model, ids, None, first, capture=True)
    tick("dense pass")
    dense_logits = dense.logits[scored]
    dense_nll = metrics.token_nll(dense_logits, targets)
    recalls = _layer_recalls(dense.layers, configs, first, scored, tick)
    dense.layers = None  # free the captured q, k, v
    results = []
    for config in configs:
        t0 = time.perf_counter()
        sparse_logits = teacher_forced(model, ids, config, first).logits[scored]
        recall = recalls[config]
        results.append(ConfigQuality(
            config=config,
            recall_mean=float(recall.mean()),
            recall_p10=metrics.quantile(recall, RECALL_QUANTILE),
            recall_per_layer=tuple(float(x) for x in recall.mean(dim=(1, 2))),
            top1_agreement=metrics.top1_agreement(dense_logits, sparse_logits),
            kl_nats=float(metrics.kl_divergence(dense_logits, sparse_logits).mean()),
            nll_delta_nats=float((metrics.token_nll(sparse_logits, targets) - dense_nll).mean()),
            seconds=time.perf_counter() - t0))
        tick(config.label)
    return QualityRun(model=name, source=sequence.source, tokens=sequence.length,
                      decode_start=first, scored_positions=scored.stop - scored.start,
                      dense_nll_nats=float(dense_nll.mean()), results=tuple(results),
                      seconds=time.perf_counter() - start)
