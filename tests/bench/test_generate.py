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


def test_a_shared_prompt_is_one_prompt_for_every_sample():
    prompts, _ = workload(GenerateBenchSpec(model="qwen3-0.6b", prompt_tokens=4, samples=6,
                                            shared_prompt=True))
    assert len(prompts) == 6 and len(set(prompts)) == 1
    assert len(set(workload(GenerateBenchSpec(model="qwen3-0.6b", prompt_tokens=4,
                                              samples=6))[0])) == 6


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
    record.rows += [GenerateTiming("step", "dense", "none", 32, 0.016),
                    GenerateTiming("step", "blocktopk", "none", 32, 0.004)]
    record.rows[0] = GenerateTiming("paged", "dense", "continuous", 100, 1.0, decode_tokens=90,
                                    decode_seconds=0.5)
    record.rows[2] = GenerateTiming("paged", "blocktopk", "continuous", 100, 0.25,
                                    decode_tokens=90, decode_seconds=0.1)
    ratios = record.ratios()
    assert ratios["blocktopk_over_dense_decode"] == pytest.approx(5.0)
    assert ratios["paged_over_step_dense"] == pytest.approx(100 / 2000)
    assert ratios["paged_over_step_blocktopk"] == pytest.approx(400 / 8000)


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
                 "--page-size", "4", "--topk-pages", "2", "--step", "--json-out",
                 str(out)]) == 0
    record = validate(json.loads(out.read_text()), "bench-record")
    assert record["attention_impl"] == "torch reference"
    rows = {(r["engine"], r["method"], r["batching"]): r for r in record["rows"]}
    steps = {("step", m, "none") for m in ("dense", "blocktopk")}
    assert set(rows) == {("paged", m, b) for m in ("dense", "blocktopk")
                         for b in ("continuous", "static")} | {("hf", "dense", "static")} | steps
    lengths = workload(GenerateBenchSpec(batch_size=2, samples=5, prompt_tokens=6,
                                         new_tokens=9, skewed=True))[1]
    for key, row in rows.items():  # every engine generated each sample's own length
        if key not in steps:
            assert row["tokens"] == sum(lengths) and row["tokens_per_s"] > 0
    for key in steps:  # a step makes one token per slot
        assert rows[key]["tokens"] == 2 and rows[key]["tokens_per_s"] > 0
    paged = rows[("paged", "dense", "continuous")]
    assert paged["decode_tokens"] == sum(lengths) - 5 and paged["decode_tokens_per_s"] > 0
    assert rows[("paged", "dense", "static")]["refills"] == 0
    assert paged["refills"] > 0
    assert set(record["ratios"]) == {"paged_over_hf", "blocktopk_over_dense",
                                     "blocktopk_over_dense_decode",
                                     "continuous_over_static_dense",
                                     "continuous_over_static_blocktopk",
                                     "paged_over_step_dense", "paged_over_step_blocktopk"}
    assert "tokens/s" in capsys.readouterr().out
