"""``kinetics bench --generate``: the workload, the ratios, and the command end to end on
the CPU with a tiny Qwen3 (the GPU numbers are benchmarks, not tests)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinetics.bench import generate as gen
from kinetics.bench.generate import GenerateBenchSpec, GenerateRecord, GenerateTiming, workload
from kinetics.cli import main
from kinetics.errors import InputError
from kinetics.models import ModelSpec
from tests.schemas import validate

TINY = ModelSpec("tiny-qwen3", num_layers=2, hidden_size=32, num_q_heads=4, num_kv_heads=2,
                 head_dim=8, intermediate_size=64, vocab_size=96)


@settings(max_examples=50, deadline=None)
@given(cap=st.integers(1, 5000), samples=st.integers(1, 300), seed=st.integers(0, 10))
def test_skewed_lengths_are_capped_deterministic_and_mostly_short(cap, samples, seed):
    spec = GenerateBenchSpec(model="qwen3-0.6b", new_tokens=cap, samples=samples, skewed=True,
                             prompt_tokens=3, seed=seed)
    prompts, lengths = workload(spec)
    assert (prompts, lengths) == workload(spec)
    assert len(prompts) == len(lengths) == samples and all(len(p) == 3 for p in prompts)
    assert all(1 <= n <= cap for n in lengths)
    if samples >= 100 and cap >= 100:
        assert sorted(lengths)[samples // 2] < cap / 4  # most short


def test_uniform_lengths_without_skew():
    assert workload(GenerateBenchSpec(model="qwen3-0.6b", new_tokens=7, samples=5))[1] == [7] * 5


def test_ratios_are_taken_between_rows_of_one_run():
    record = GenerateRecord(GenerateBenchSpec(skewed=True), "cpu", [
        GenerateTiming("paged", "dense", "continuous", 100, 1.0),
        GenerateTiming("paged", "dense", "static", 100, 2.0),
        GenerateTiming("paged", "blocktopk", "continuous", 100, 0.25),
        GenerateTiming("hf", "dense", "static", 100, 10.0)])
    assert record.ratios() == {"paged_over_hf": 10.0, "blocktopk_over_dense": 4.0,
                               "continuous_over_static_dense": 2.0}


@pytest.mark.parametrize("kwargs, needle", [
    (dict(batch_size=0), "--batch-size must be in 1..4096"), (dict(layers=0), "--layers"),
    (dict(batch_size=10**8), "--batch-size must be in"), (dict(page_size=2**20), "--page-size"),
    (dict(layers=29, model="qwen3-0.6b"), "qwen3-0.6b has 28"),
    (dict(prompt_tokens=100_000, new_tokens=40_000), "--prompt-tokens \\+ --new-tokens"),
    (dict(samples=0), "--samples"), (dict(local_pages=3, topk_pages=2), "--local-pages"),
    (dict(page_size=12), "power of two"),
    (dict(methods=("topk",)), "unknown method")])
def test_bad_specs_are_refused(kwargs, needle):
    with pytest.raises(InputError, match=needle):
        GenerateBenchSpec(**kwargs)


@pytest.mark.parametrize("argv, needle", [
    (["--context", "64"], "--context does not apply to --generate"),
    (["--layers", "0"], "--layers must be in 1..1024"),
    (["--device", "meta"], "only cpu and cuda"),
    (["--whole-model"], "--whole-model does not apply to --generate"),
    (["--device", "cuda:7", "--layers", "1"], "no such CUDA device"),
    (["--page-size", "12"], "power of two")])
def test_bad_flags_are_one_line_exit_2(capsys, argv, needle):
    assert main(["bench", "--generate", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_the_command_times_both_engines_on_a_tiny_model(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    monkeypatch.setattr(gen, "get_model", lambda name: TINY)
    out = tmp_path / "gen.json"
    assert main(["bench", "--generate", "--device", "cpu", "--batch-size", "2", "--samples",
                 "5", "--prompt-tokens", "6", "--new-tokens", "9", "--skewed", "--hf",
                 "--page-size", "4", "--topk-pages", "2", "--json-out", str(out)]) == 0
    record = validate(json.loads(out.read_text()), "bench-record")
    rows = {(r["engine"], r["method"], r["batching"]): r for r in record["rows"]}
    assert set(rows) == {("paged", m, b) for m in ("dense", "blocktopk")
                         for b in ("continuous", "static")} | {("hf", "dense", "static")}
    lengths = workload(GenerateBenchSpec(batch_size=2, samples=5, prompt_tokens=6,
                                         new_tokens=9, skewed=True))[1]
    for row in rows.values():  # every engine generated each sample's own length
        assert row["tokens"] == sum(lengths) and row["tokens_per_s"] > 0
    assert rows[("paged", "dense", "static")]["refills"] == 0
    assert rows[("paged", "dense", "continuous")]["refills"] > 0
    assert set(record["ratios"]) == {"paged_over_hf", "blocktopk_over_dense",
                                     "continuous_over_static_dense",
                                     "continuous_over_static_blocktopk"}
    assert "tokens/s" in capsys.readouterr().out
