"""Cost-model predictions of GPU decode steps: FLOPs and bytes against hand counts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinetics.bench.cost_vs_measured import (
    StepCell,
    format_predictions,
    hardware_for_device,
    predict,
    predictions_figure,
    rank_spec,
    speedups,
    step_cost,
)
from kinetics.errors import InputError
from kinetics.hardware import get_hardware
from kinetics.models import get_model


def _layer_params(tp: int) -> int:
    """Qwen3-8B layer shard parameters counted by hand (norms included)."""
    h, d, width = 4096, 128, 12288
    hq, hkv = 32 // tp, max(1, 8 // tp)
    return h * d * (hq + 2 * hkv) + hq * d * h + 3 * h * width // tp + 2 * d + 2 * h + h


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 512), context=st.integers(1, 40000), tp=st.sampled_from([1, 2, 8]),
       method=st.sampled_from(["dense", "blocktopk"]))
def test_layer_step_cost_matches_hand_count(batch, context, tp, method):
    cell = StepCell("x", "qwen3-8b", method, "layer", batch, context, tp, 1.0)
    flops, nbytes = step_cost(cell)
    d, hq, hkv = 128, 32 // tp, max(1, 8 // tp)
    params = _layer_params(tp)
    if method == "dense":
        want_flops = batch * (2 * params + 4 * hq * d * context)
        want_bytes = batch * 2 * 2 * hkv * d * context + 2 * params
    else:
        attended, keys = min(1024, context), math.ceil(context / 16)
        want_flops = batch * (2 * params + 4 * hq * d * attended + 2 * hq * d * keys)
        want_bytes = batch * (2 * 2 * hkv * d * attended + 2 * hkv * d * keys) + 2 * params
    assert flops == pytest.approx(want_flops, rel=1e-12)
    assert nbytes == pytest.approx(want_bytes, rel=1e-12)


def test_model_scope_counts_all_layers_and_vocab_shard():
    spec = rank_spec(get_model("qwen3-8b"), 2, "model")
    assert (spec.num_layers, spec.num_q_heads, spec.num_kv_heads) == (36, 16, 4)
    assert spec.vocab_size == 151936 // 2
    one = step_cost(StepCell("l", "qwen3-8b", "dense", "layer", 8, 100, 2, 1.0))
    full = step_cost(StepCell("m", "qwen3-8b", "dense", "model", 8, 100, 2, 1.0))
    lm = 2 * (151936 // 2) * 4096  # embedding + LM head rows of one rank
    # 36 layer shards, each priced with the final norm (hidden) once, which the model has once
    assert full[1] == pytest.approx(36 * one[1] - 35 * 2 * 4096 + 2 * lm, rel=1e-12)


def test_predicted_times_and_speedups():
    hw = get_hardware("h200")
    cells = [StepCell(f"{m} b{b}", "qwen3-8b", m, "layer", b, 16384, 8, ms)
             for m, b, ms in (("dense", 64, 0.3), ("blocktopk", 64, 0.1), ("dense", 256, 1.0))]
    preds = [predict(c, hw, 4.0e12) for c in cells]
    p = preds[0]
    want = 1e3 * (p.compute_flops / hw.peak_flops_per_s + p.memory_bytes / 4.0e12)
    assert p.predicted_ms_copy == pytest.approx(want)
    assert p.predicted_ms_preset < p.predicted_ms_copy  # 4.8 TB/s preset > 4.0 measured
    pairs = speedups(preds)
    assert len(pairs) == 1 and pairs[0].measured == pytest.approx(3.0)
    assert pairs[0].predicted > 1
    assert "speedup blocktopk b64" in format_predictions(preds)


def test_figure_saves_as_png(tmp_path):
    cells = [StepCell("d", "qwen3-8b", "dense", "layer", 64, 4096, 8, 0.2),
             StepCell("b", "qwen3-8b", "blocktopk", "layer", 64, 4096, 8, 0.1)]
    out = tmp_path / "p.png"
    fig = predictions_figure([predict(c, get_hardware("h100"), 3e12) for c in cells])
    fig.savefig(out)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert len(fig.axes[0].collections) == 3  # dense, blocktopk, (empty) blocktopk-triton


def test_bad_inputs():
    with pytest.raises(InputError, match="no hardware preset"):
        hardware_for_device("Some GPU")
    assert hardware_for_device("NVIDIA H200").name == "h200"
    with pytest.raises(InputError, match="dense models only"):
        rank_spec(get_model("qwen3-30b-a3b"), 1, "layer")
    with pytest.raises(InputError, match="unknown scope"):
        rank_spec(get_model("qwen3-8b"), 1, "rack")
    with pytest.raises(InputError, match="unknown method"):
        step_cost(StepCell("x", "qwen3-8b", "topk", "layer", 1, 10, 1, 1.0))
    with pytest.raises(InputError, match="copy bandwidth"):
        predict(StepCell("x", "qwen3-8b", "dense", "layer", 1, 10, 1, 1.0),
                get_hardware("h200"), 0.0)


def test_step_timing_record():
    from kinetics.bench.spec import DecodeSpec
    from kinetics.bench.whole_model import StepTiming, format_step_timings

    spec = DecodeSpec(tp=1, context=16384, batch_size=32)
    t = StepTiming(spec, "blocktopk", "fused", "model", 8.0, 7.9, 8.1, 2.4e10, 4000.0)
    assert t.tokens_per_s == pytest.approx(4000.0)
    assert t.fraction_of_copy == pytest.approx(2.4e10 / 8e-3 / 1e9 / 4000.0)
    assert "blocktopk" in format_step_timings([t]) and "75.0%" in format_step_timings([t])
    row = t.to_dict()
    assert (row["batch_size"], row["tp"], row["method"], row["ms"]) == (32, 1, "blocktopk", 8.0)
