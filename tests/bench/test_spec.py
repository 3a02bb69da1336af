"""The decode spec every benchmark takes: validation, local heads, the byte model."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinetics.bench.spec import METHODS, DecodeSpec, check_methods, gpu_available
from kinetics.errors import InputError
from kinetics.models import ModelSpec, get_model


def test_gpu_available_reports_a_reason():
    ok, why = gpu_available()
    assert isinstance(ok, bool) and why


def test_local_heads():
    assert DecodeSpec(tp=8).local_heads() == (4, 1)
    assert DecodeSpec(tp=16).local_heads() == (2, 1)  # KV heads replicated
    assert DecodeSpec(tp=1).local_heads() == (32, 8)
    assert DecodeSpec(model="qwen3-32b", tp=8).local_heads() == (8, 1)
    with pytest.raises(InputError):
        DecodeSpec(tp=3).local_heads()


def test_standard_step_bytes_by_hand():
    spec = DecodeSpec()  # Qwen3-8B tp 8: 4 q / 1 KV heads, d 128, 16k, batch 64, 64 pages
    dense, sparse = spec.step_bytes("dense"), spec.step_bytes("blocktopk")
    assert dense.kv == 2 * 64 * 16384 * 128 * 2  # K and V, bf16 bytes
    assert dense.io == sparse.io == 2 * 64 * 4 * 128 * 2  # q in, output out
    assert dense.selection == 0
    assert sparse.kv == 2 * 64 * 64 * 16 * 128 * 2
    assert sparse.selection == 64 * 1023 * (128 * 2 + 4)  # page means + page table
    assert sparse.attention == sparse.kv + sparse.io
    assert dense.total / sparse.total == pytest.approx(10.59, abs=0.01)
    assert spec.step_bytes("dense", 1e6).total == dense.total + 1e6


@given(context=st.integers(1, 1 << 18), batch=st.integers(1, 512),
       page=st.sampled_from((8, 16, 32)), tp=st.sampled_from((1, 2, 4, 8)),
       model=st.sampled_from(("qwen3-8b", "qwen3-32b", "qwen3-0.6b")))
def test_step_bytes_scale_with_the_batch_and_split_into_their_parts(context, batch, page,
                                                                    tp, model):
    spec = DecodeSpec(model=model, tp=tp, context=context, batch_size=batch, page_size=page,
                      topk_pages=1)
    one = replace(spec, batch_size=1)
    for method in METHODS:
        b = spec.step_bytes(method, 5.0)
        assert b.total == pytest.approx(b.kv + b.selection + b.io + 5.0, rel=1e-12)
        assert b.total - 5.0 == pytest.approx(batch * (one.step_bytes(method).total),
                                              rel=1e-12)
    dense, sparse = spec.step_bytes("dense"), spec.step_bytes("blocktopk")
    assert sparse.kv <= dense.kv + 2 * batch * spec.local_heads()[1] * page * 128 * 2


@pytest.mark.parametrize("change,match", [
    (dict(context=0), "--context"),
    (dict(batch_size=0), "--batch-size"),
    (dict(page_size=12), "power of two"),
    (dict(topk_pages=0), "--topk-pages"),
    (dict(local_pages=65), "--local-pages"),
    (dict(topk_pages=2000), "pages of the context"),
    (dict(replicas=0), "--replicas"),
    (dict(topk_kernel="heap"), "--topk"),
    (dict(blocktopk_impl="both"), "--impl"),
    (dict(page_means_dtype="int8"), "--page-means-dtype"),
    (dict(dense_kernel="tpu"), "dense kernel"),
    (dict(tp=3), "tp"),
    (dict(model="nope"), "unknown model"),
])
def test_bad_specs_are_input_errors(change, match):
    with pytest.raises(InputError, match=match):
        replace(DecodeSpec(), **change).validate()


@pytest.mark.parametrize("means,element", [("bf16", 2), ("fp8", 1), ("fp32", 4)])
def test_page_means_dtype_sets_the_selection_bytes_only(means, element):
    spec = DecodeSpec(page_means_dtype=means)
    sparse = spec.step_bytes("blocktopk")
    assert sparse.selection == 64 * 1023 * (128 * element + 4)  # means + page table
    assert sparse.kv == DecodeSpec().step_bytes("blocktopk").kv
    assert spec.step_bytes("dense") == DecodeSpec().step_bytes("dense")


def test_block_topk_fields_are_checked_only_for_block_topk():
    spec = DecodeSpec(context=64, topk_pages=64)  # 4 pages of context: fine for dense
    assert spec.validate(("dense",)).name == "qwen3-8b"
    assert replace(spec, blocktopk_impl="x", page_means_dtype="y").validate(("dense",))
    with pytest.raises(InputError, match="pages of the context"):
        spec.validate()
    with pytest.raises(InputError, match="unknown method"):
        check_methods(("sparse",))
    with pytest.raises(InputError, match="unknown method"):
        check_methods(())


def test_a_model_spec_stands_for_its_preset():
    tiny = ModelSpec(name="tiny", num_layers=2, hidden_size=64, num_q_heads=4, num_kv_heads=2,
                     head_dim=16, intermediate_size=128, vocab_size=100)
    spec = DecodeSpec(model=tiny, tp=2, context=64, topk_pages=2)
    assert spec.validate() is tiny and spec.local_heads() == (2, 1)
    assert spec.model_name == "tiny"
    record = json.loads(json.dumps(spec.to_dict()))
    assert record["model"] == "tiny" and record["context"] == 64
    assert DecodeSpec().model_spec() == get_model("qwen3-8b")
    assert DecodeSpec().budget_tokens == 1024 and DecodeSpec(context=1000).pages == 63
    assert DecodeSpec().use_tensor_cores and not DecodeSpec(dense_kernel="cuda-cores").use_tensor_cores
