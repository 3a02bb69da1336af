"""A seeded SYNTHETIC trial table for the Qwen3 presets (the embedded default).

It is not the paper's traces and reproduces none of its findings: it exists so the
analysis runs offline and its plots show the pipeline. The generative model (query
difficulty, calibrated dense accuracy, sparse penalties, lengths, answers) and what
the default seed drew are written down in one place, docs/synthetic-data.md.

All knobs live in :class:`SyntheticSpec`; ``scripts/make_synthetic_trials.py``
writes the packaged file with the defaults and seed 20250605.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kinetics.cost import AttentionConfig
from kinetics.models import MODELS

# Qwen3 Technical Report (2025), thinking mode, AIME24 pass@1.
AIME24_ACCURACY: dict[str, float] = {
    "qwen3-0.6b": 0.107, "qwen3-1.7b": 0.483, "qwen3-4b": 0.738,
    "qwen3-8b": 0.760, "qwen3-14b": 0.793, "qwen3-32b": 0.814,
}
DEFAULT_SEED = 20250605
SPARSE_BUDGETS: tuple[int, ...] = (128, 256, 512, 1024, 2048)


def default_configs() -> tuple[AttentionConfig, ...]:
    """Dense, top-k at B in 128..2048, block top-k with block 16384/B and k = B/block."""
    topk = tuple(AttentionConfig.topk(b) for b in SPARSE_BUDGETS)
    block = tuple(AttentionConfig.blocktopk(16384 // b, budget=b, local=0) for b in SPARSE_BUDGETS)
    return (AttentionConfig.dense(), *topk, *block)


@dataclass(frozen=True)
class SyntheticSpec:
    """Knobs of the synthetic generator (the model: docs/synthetic-data.md)."""

    accuracy: dict[str, float] = field(default_factory=lambda: dict(AIME24_ACCURACY))
    trials: dict[str, int] = field(default_factory=lambda: {"qwen3-32b": 8})
    default_trials: int = 32
    num_queries: int = 30
    spread: float = 2.0  # logit spread of query difficulty
    penalty: dict[str, float] = field(default_factory=lambda: {"topk": 0.12, "blocktopk": 0.2})
    reference_budget: int = 4096  # tokens; the sparse penalty and stretch scale as sqrt(ref/B)
    size_exponent: float = 0.25
    base_len: float = 12000.0  # median tokens of a correct 0.6B answer on an average query
    len_exponent: float = 0.15
    len_difficulty: float = 0.3
    wrong_stretch: float = 1.6
    len_sigma: float = 0.35
    sparse_stretch: float = 0.05
    max_len: int = 32768
    prompt_range: tuple[int, int] = (70, 260)
    tail_range: tuple[int, int] = (30, 600)
    distractors: int = 5
    configs: tuple[AttentionConfig, ...] = field(default_factory=default_configs)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def calibrate_ability(target: np.ndarray, difficulty: np.ndarray, spread: float) -> np.ndarray:
    """a_m with mean_q sigmoid(a_m - spread * d_q) = target_m (bisection, vectorized)."""
    lo = np.full(target.shape, -30.0)
    hi = np.full(target.shape, 30.0)
    for _ in range(80):
        mid = (lo + hi) / 2
        mean = _sigmoid(mid[:, None] - spread * difficulty[None, :]).mean(axis=1)
        lo = np.where(mean < target, mid, lo)
        hi = np.where(mean < target, hi, mid)
    return (lo + hi) / 2


def generate_trials(seed: int = DEFAULT_SEED, spec: SyntheticSpec | None = None) -> pd.DataFrame:
    """Draw a synthetic trial table (canonical columns plus ``answer``).

    Deterministic for a given seed and spec. Lengths in tokens.
    """
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(seed)
    models = list(spec.accuracy)
    nq = spec.num_queries
    difficulty = rng.standard_normal(nq)
    prompt = rng.integers(spec.prompt_range[0], spec.prompt_range[1] + 1, nq)
    gold = rng.choice(1000, size=nq, replace=False)
    pool = np.stack([rng.choice(np.setdiff1d(np.arange(1000), [g]), spec.distractors,
                                replace=False) for g in gold])
    weights = rng.dirichlet(np.ones(spec.distractors), size=nq)
    ability = calibrate_ability(np.array([spec.accuracy[m] for m in models]), difficulty,
                                spec.spread)

    # One row per (model, config, query, trial), built as flat index arrays.
    parts = []
    for mi, model in enumerate(models):
        n = spec.trials.get(model, spec.default_trials)
        for ci in range(len(spec.configs)):
            q, t = np.meshgrid(np.arange(nq), np.arange(n), indexing="ij")
            parts.append(np.stack([np.full(q.size, mi), np.full(q.size, ci), q.ravel(),
                                   t.ravel()], axis=1))
    idx = np.concatenate(parts)
    mi, ci, q, trial = idx.T
    params = np.array([MODELS[m].active_params for m in models], dtype=np.float64)[mi]
    cfg = [spec.configs[i] for i in range(len(spec.configs))]
    budget = np.array([c.budget or 0 for c in cfg], dtype=np.float64)[ci]
    sparse = budget > 0
    pen = np.array([spec.penalty.get(c.method, 0.0) for c in cfg])[ci]
    scale = np.sqrt(spec.reference_budget / np.where(sparse, budget, 1.0))
    drop = np.where(sparse, pen * scale * (8.19e9 / params) ** spec.size_exponent, 0.0)
    p = _sigmoid(ability[mi] - spec.spread * difficulty[q] - drop)
    correct = rng.random(len(p)) < p

    log_len = (np.log(spec.base_len * (params / 0.752e9) ** -spec.len_exponent)
               + spec.len_difficulty * difficulty[q]
               + np.where(correct, 0.0, np.log(spec.wrong_stretch))
               + np.log(np.where(sparse, 1.0 + spec.sparse_stretch * scale, 1.0))
               + spec.len_sigma * rng.standard_normal(len(p)))
    gen_len = np.minimum(np.round(np.exp(log_len)), spec.max_len).astype(np.int64)
    gen_len = np.maximum(gen_len, spec.tail_range[1] + 1)
    truncated = gen_len >= spec.max_len
    correct &= ~truncated
    tail = rng.integers(spec.tail_range[0], spec.tail_range[1] + 1, len(p))
    answer_pos = pd.array(np.where(truncated, 0, gen_len - tail), dtype="Int64")
    answer_pos[truncated] = pd.NA

    pick = (rng.random(len(p))[:, None] > np.cumsum(weights[q], axis=1)).sum(axis=1)
    pick = np.minimum(pick, spec.distractors - 1)
    value = np.where(correct, gold[q], pool[q, pick])
    answer = pd.array(value.astype(str), dtype="string")
    answer[truncated] = pd.NA

    def opt(values: list[int | None]) -> pd.arrays.IntegerArray:
        return pd.array(values, dtype="Int64")[ci]

    return pd.DataFrame({
        "model": np.array(models, dtype=object)[mi],
        "method": np.array([c.method for c in cfg], dtype=object)[ci],
        "budget": opt([c.budget for c in cfg]),
        "block_size": opt([c.block_size for c in cfg]),
        "local": opt([c.local if c.method == "blocktopk" else None for c in cfg]),
        "query_id": np.array([f"synth-{i + 1:02d}" for i in range(nq)], dtype=object)[q],
        "trial": trial.astype(np.int64),
        "prompt_len": prompt[q].astype(np.int64),
        "gen_len": gen_len,
        "correct": correct.astype(np.int64),
        "answer_pos": answer_pos,
        "answer": answer,
    })


def replicate_queries(trials: pd.DataFrame, copies: int) -> pd.DataFrame:
    """``copies`` copies of a trial table, the query ids of copy i suffixed ``-c{i}``
    (a larger table with the same per-query statistics, for scale benchmarks)."""
    return pd.concat([trials.assign(query_id=trials["query_id"].astype(str) + f"-c{i}")
                      for i in range(copies)], ignore_index=True)
