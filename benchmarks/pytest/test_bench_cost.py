"""pytest-benchmark: the cost model on a million (S, T) pairs (CPU).

Run with `nox -s bench` (or `pytest benchmarks/pytest --benchmark-enable`).
"""

import numpy as np
import pytest

from kinetics.cost import AttentionConfig, query_cost
from kinetics.hardware import B200_INTENSITY
from kinetics.models import MODELS

PAIRS = 1_000_000


@pytest.fixture(scope="module")
def lengths():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4096, PAIRS), rng.integers(1, 32768, PAIRS)


@pytest.mark.parametrize("attention", [
    AttentionConfig.dense(), AttentionConfig.topk(1024), AttentionConfig.blocktopk(16, topk_blocks=64),
], ids=lambda a: a.label)
def test_query_cost_million_pairs(benchmark, lengths, attention):
    benchmark.extra_info.update(pairs=PAIRS, model="qwen3-8b", samples=8, device="cpu")
    cost = benchmark(lambda: query_cost(MODELS["qwen3-8b"], attention, *lengths, 8).eflops(B200_INTENSITY))
    assert cost.shape == (PAIRS,) and np.all(cost > 0)
