"""The graphed step's rules that need no GPU: buckets, which configurations it takes,
and that a closed runner frees its pool without a garbage collection."""

from __future__ import annotations

import gc
import weakref

import pytest

torch = pytest.importorskip("torch")

from kinetics.cost import AttentionConfig  # noqa: E402
from kinetics.generation.attention import decode_attention  # noqa: E402
from kinetics.generation.graphed import bucket_sizes, graphable  # noqa: E402
from kinetics.generation.runner import ModelRunner  # noqa: E402
from kinetics.model.decoder import ShardedDecoderModel  # noqa: E402
from kinetics.models import ModelSpec  # noqa: E402

TINY = ModelSpec("tiny", num_layers=2, hidden_size=32, num_q_heads=4, num_kv_heads=2,
                 head_dim=16, intermediate_size=64, vocab_size=64)
DENSE, SPARSE = (decode_attention(c) for c in (AttentionConfig.dense(),
                                               AttentionConfig.blocktopk(16, topk_blocks=4, local=16)))


def test_buckets_are_powers_of_two_then_the_slot_count():
    assert bucket_sizes(1) == (1,)
    assert bucket_sizes(32) == (1, 2, 4, 8, 16, 32)
    assert bucket_sizes(24) == (1, 2, 4, 8, 16, 24)


def test_only_cuda_dense_or_block_topk_with_a_triton_head_dim_is_graphed():
    pytest.importorskip("triton")
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert graphable(DENSE, cuda, 128) and graphable(SPARSE, cuda, 64)
    assert not graphable(DENSE, cpu, 128)
    assert not graphable(decode_attention(AttentionConfig.topk(64)), cuda, 128)
    for head_dim in (8, 24, 80, 96):  # not a power of two >= 16: the torch reference
        assert not graphable(DENSE, cuda, head_dim)


def test_the_triton_dense_decode_refuses_a_head_dim_its_kernel_cannot_take():
    from kinetics.attention import PagedKVCache
    from kinetics.attention.decode import TritonPagedDecode

    cache = PagedKVCache(2, 1, 24, max_tokens=32)
    with pytest.raises(ValueError, match="power of two"):
        TritonPagedDecode(cache, 2)


def test_a_closed_runner_frees_its_pool_without_a_garbage_collection():
    """The recorded steps refer back to the runner (a reference cycle): close() breaks it."""
    model = ShardedDecoderModel(TINY, dtype=torch.float32, device="cpu")
    runner = ModelRunner(model, SPARSE, slots=2, max_tokens=64, num_pages=8, graphed=True)
    runner.graphed.recorded(2)  # a bucket: its step closes over the runner
    pool = weakref.ref(runner.caches[0].k_pages)
    gc.disable()
    try:
        runner.close()
        del runner
        assert pool() is None
    finally:
        gc.enable()
