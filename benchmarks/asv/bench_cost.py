"""asv: the vectorized cost model (CPU)."""

import numpy as np

from kinetics.cost import AttentionConfig, query_cost
from kinetics.hardware import B200_INTENSITY
from kinetics.models import MODELS

CONFIGS = {
    "dense": AttentionConfig.dense(),
    "topk": AttentionConfig.topk(1024),
    "blocktopk": AttentionConfig.blocktopk(16, topk_blocks=64),
}


class QueryCost:
    """Exact cost of n (prompt_len, gen_len) pairs, 8 samples each, Qwen3-8B."""

    params = [list(CONFIGS), [10_000, 1_000_000]]
    param_names = ["method", "pairs"]

    def setup(self, method, pairs):
        rng = np.random.default_rng(0)
        self.prompt_len = rng.integers(0, 4096, pairs)
        self.gen_len = rng.integers(0, 32768, pairs)
        self.model = MODELS["qwen3-8b"]
        self.attention = CONFIGS[method]

    def time_query_cost(self, method, pairs):
        query_cost(self.model, self.attention, self.prompt_len, self.gen_len, 8).eflops(B200_INTENSITY)
