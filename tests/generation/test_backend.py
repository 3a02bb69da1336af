"""The backend interface's pure parts: sampling parameters, per-sample seeds, batching."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinetics.errors import InputError
from kinetics.generation.backend import Request, SamplingParams, batched, sample_seed


@settings(max_examples=40)
@given(st.integers(-2**63, 2**63), st.text(max_size=20), st.integers(0, 10**6))
def test_sample_seed_is_a_63_bit_function_of_seed_problem_and_sample(seed, problem, sample):
    s = sample_seed(seed, problem, sample)
    assert s == sample_seed(seed, problem, sample) and 0 <= s < 2**63
    assert len({s, sample_seed(seed + 1, problem, sample), sample_seed(seed, problem + "x",
               sample), sample_seed(seed, problem, sample + 1)}) == 4


def test_sample_seed_does_not_confuse_its_fields():
    """The fields are separated: moving a character between them changes the seed."""
    assert sample_seed(1, "2", 3) != sample_seed(12, "", 3)
    assert sample_seed(1, "23", 4) != sample_seed(1, "2", 34)


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": -0.1}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"temperature": 101}, "temperature"), ({"top_p": 0.0}, "top-p"),
    ({"top_p": 1.01}, "top-p"), ({"top_p": float("nan")}, "top-p"),
    ({"max_new_tokens": 0}, "max new tokens")])
def test_sampling_params_refuse_bad_values(kwargs, match):
    with pytest.raises(InputError, match=match):
        SamplingParams(**kwargs)


def test_greedy_is_temperature_zero():
    assert SamplingParams(temperature=0.0).greedy and not SamplingParams(temperature=1e-6).greedy


@given(st.integers(0, 40), st.integers(1, 12))
def test_batched_keeps_order_and_sizes(n, size):
    items = [Request(i, (1,), i) for i in range(n)]
    batches = list(batched(items, size))
    assert [r for b in batches for r in b] == items
    assert all(0 < len(b) <= size for b in batches)
    assert len(batches) == -(-n // size)


def test_batched_refuses_an_empty_batch_size():
    with pytest.raises(InputError, match="batch size"):
        list(batched([], 0))
