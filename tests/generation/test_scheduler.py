"""The paged engine's scheduler and page pool, by simulation (no model): any arrival of
prompt lengths and stop points completes every sample once, in bounded slots, with the
pool whole at the end and consistent after every step."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinetics.errors import InputError
from kinetics.generation.backend import Request
from kinetics.generation.scheduler import PagePool, Scheduler


def simulate(prompts, stops, slots, page_size, extra_pages, max_new, static=False):
    """Run the scheduler as the engine does; sample i stops after stops[i] tokens. Checks
    each step: admissions take the lowest free slots, no slot twice, the pool whole."""
    reqs = [Request(i, tuple(range(1, n + 1)), i) for i, n in enumerate(prompts)]
    worst = max(prompts) + max_new - 1
    pool = PagePool(-(-worst // page_size) + extra_pages, page_size)
    scheduler = Scheduler(reqs, max_new, slots, pool, static=static)
    done, admitted, steps = [], [], 0
    while not scheduler.done:
        free = sorted(set(range(slots)) - {s.slot for s in scheduler.running})
        plan = scheduler.schedule()
        new = sorted((s for g in plan.prefills for s in g), key=lambda s: s.request.key)
        # the lowest free slots, in request order (running samples gather at the front)
        assert [s.slot for s in new] == free[:len(new)]
        now = []
        for group in plan.prefills:
            assert len({s.request.prompt_ids for s in group}) == 1
            for s in group:
                assert s.slot >= 0 and not pool.held(s.slot)
                pool.grow(s.slot, len(s.request.prompt_ids))
                now.append(s.request.key)
        admitted += sorted(now)  # a step's admissions, grouped by prompt for the prefill
        for s in plan.decodes:
            pool.grow(s.slot, s.cached_tokens)
        assert len(scheduler.running) <= slots
        assert len({s.slot for s in scheduler.running}) == len(scheduler.running)
        pool.check()
        for s in [*[s for g in plan.prefills for s in g], *plan.decodes]:
            s.tokens.append(0)
            if len(s.tokens) >= min(stops[s.request.key], max_new):
                scheduler.finish(s)
                done.append(s.request.key)
        pool.check()
        steps += 1
        assert steps < 10_000
    return done, admitted, pool, scheduler


@settings(max_examples=200, deadline=None)
@given(data=st.data(), slots=st.integers(1, 6), page_size=st.sampled_from([1, 4, 16]),
       extra_pages=st.integers(0, 40), max_new=st.integers(1, 30), static=st.booleans())
def test_every_sample_completes_once_and_the_pool_ends_whole(data, slots, page_size,
                                                              extra_pages, max_new, static):
    n = data.draw(st.integers(1, 25))
    prompts = data.draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    stops = data.draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    done, admitted, pool, _ = simulate(prompts, stops, slots, page_size, extra_pages, max_new,
                                       static)
    assert sorted(done) == list(range(n))
    assert admitted == list(range(n)), "admission is in request order"
    assert pool.whole


def test_static_batching_admits_only_into_an_empty_batch():
    prompts, stops = [3] * 6, [1, 5, 1, 1, 1, 1]
    *_, continuous = simulate(prompts, stops, 2, 4, 20, 8)
    *_, static = simulate(prompts, stops, 2, 4, 20, 8, static=True)
    assert continuous.refills > 0 and static.refills == 0


def test_admission_waits_for_pages_not_slots():
    """A pool for one worst case: one sample at a time, whatever the slots."""
    reqs = [Request(i, (1, 2, 3), i) for i in range(3)]
    pool = PagePool(pages := 3, 4)  # 3 + 10 - 1 = 12 tokens = 3 pages of 4
    scheduler = Scheduler(reqs, 10, 8, pool)
    plan = scheduler.schedule()
    assert [s.request.key for g in plan.prefills for s in g] == [0]
    assert pool.unpromised == 0 and pages == 3


def test_a_sample_larger_than_the_pool_is_refused_up_front():
    with pytest.raises(InputError, match="may need 4 KV pages .*pool holds 3"):
        Scheduler([Request("a", (1,) * 6, 0)], 10, 2, PagePool(3, 4))


def test_empty_prompts_and_bad_sizes_are_refused():
    with pytest.raises(InputError, match="empty prompt"):
        Scheduler([Request("a", (), 0)], 4, 1, PagePool(4, 4))
    with pytest.raises(InputError, match="batch size"):
        Scheduler([Request("a", (1,), 0)], 4, 0, PagePool(4, 4))
    with pytest.raises(InputError, match="page pool"):
        PagePool(0, 16)


def test_pool_accounting_catches_a_double_hold():
    pool = PagePool(4, 2)
    assert pool.promise(0, 4)
    assert pool.grow(0, 3) == [(0, 0), (1, 1)]
    pool.check()
    pool._held[0].append(1)  # a page held twice
    with pytest.raises(AssertionError):
        pool.check()
