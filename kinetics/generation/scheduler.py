"""Continuous batching for the paged engine: which samples run, in which slot, on which
pages. Pure Python (no tensors): the model runner (:mod:`kinetics.generation.runner`)
does what the scheduler decides.

* :class:`PagePool` accounts the KV pool's pages: each slot's mapped pages and the
  pages promised to it. A sample is admitted only when the pool can promise its worst
  case (prompt plus ``max_new_tokens`` tokens), so a running sample never waits for a
  page and nothing is ever preempted; a sample whose worst case exceeds the whole pool
  is refused up front (:class:`~kinetics.errors.InputError`).
* :class:`Scheduler` keeps the queue (in request order) and the slots. Each step it
  admits queued samples into free slots (``static``: only when every slot is free, the
  static batching of the ``hf`` backend, for comparison), groups the newly admitted
  samples by prompt for one prefill each, and lists the running samples to decode. A
  finished sample's slot and pages are free for the next step. The lowest free slot is
  handed out first, so running samples gather in the first slots (the GPU step runs
  over the smallest batch bucket that holds them).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from kinetics.errors import InputError
from kinetics.generation.backend import Request, StopReason


class PagePool:
    """The pages of a KV pool of ``num_pages`` pages of ``page_size`` tokens.

    Invariant (:meth:`check`): every page is either free or mapped to exactly one slot,
    and no slot holds more pages than it was promised.
    """

    def __init__(self, num_pages: int, page_size: int) -> None:
        if num_pages < 1 or page_size < 1:
            raise InputError(f"a page pool needs >= 1 page of >= 1 token, got {num_pages} "
                             f"pages of {page_size}")
        self.num_pages, self.page_size = num_pages, page_size
        self._free: list[int] = list(range(num_pages))[::-1]  # pop() gives page 0 first
        self._held: dict[int, list[int]] = {}
        self._promised: dict[int, int] = {}

    def pages_for(self, tokens: int) -> int:
        """Pages that hold ``tokens`` tokens."""
        return -(-tokens // self.page_size)

    @property
    def unpromised(self) -> int:
        """Pages no slot has been promised."""
        return self.num_pages - sum(self._promised.values())

    def promise(self, slot: int, tokens: int) -> bool:
        """Promise ``slot`` the pages of ``tokens`` tokens if the pool can; whether it did."""
        if slot in self._promised:
            raise ValueError(f"slot {slot} already holds a promise")
        need = self.pages_for(tokens)
        if need > self.unpromised:
            return False
        self._promised[slot], self._held[slot] = need, []
        return True

    def grow(self, slot: int, tokens: int) -> list[tuple[int, int]]:
        """Map pages so that ``slot`` holds ``tokens`` tokens; the new ``(logical index,
        page)`` pairs (within its promise: the caller asked for no more)."""
        held = self._held[slot]
        need = self.pages_for(tokens)
        if need > self._promised[slot]:
            raise ValueError(f"slot {slot} needs {need} pages, promised {self._promised[slot]}")
        new = []
        while len(held) < need:
            page = self._free.pop()
            new.append((len(held), page))
            held.append(page)
        return new

    def release(self, slot: int) -> None:
        """Return ``slot``'s pages to the pool and drop its promise."""
        self._free.extend(reversed(self._held.pop(slot)))
        del self._promised[slot]

    def held(self, slot: int) -> tuple[int, ...]:
        return tuple(self._held.get(slot, ()))

    def check(self) -> None:
        """Raise AssertionError unless every page is free or held by one slot exactly."""
        held = [p for pages in self._held.values() for p in pages]
        pages = held + self._free
        assert sorted(pages) == list(range(self.num_pages)), "pages lost or held twice"
        for slot, promised in self._promised.items():
            assert len(self._held[slot]) <= promised, f"slot {slot} holds more than promised"
        assert set(self._held) == set(self._promised), "a slot holds pages without a promise"

    @property
    def whole(self) -> bool:
        """Whether every page is free and nothing is promised."""
        return len(self._free) == self.num_pages and not self._promised


@dataclass
class Sample:
    """One request in flight: its slot, tokens generated so far and stop reason."""

    request: Request
    order: int
    slot: int = -1
    tokens: list[int] = field(default_factory=list)
    reason: StopReason | None = None

    @property
    def cached_tokens(self) -> int:
        """Tokens in its KV cache once the last generated token is fed back."""
        return len(self.request.prompt_ids) + len(self.tokens)


@dataclass(frozen=True)
class StepPlan:
    """What one engine step runs: ``prefills``, groups of newly admitted samples sharing
    a prompt (one prefill each); ``decodes``, running samples fed their last token."""

    prefills: tuple[tuple[Sample, ...], ...]
    decodes: tuple[Sample, ...]


class Scheduler:
    """Queue, slots and pages of one generation (see the module docstring).

    Args:
        requests: the samples, admitted in this order.
        max_new_tokens: tokens a sample may generate (sets its worst case).
        slots: samples decoded together, at most.
        pool: the page accounting.
        static: admit only into an empty batch (static batching).
    """

    def __init__(self, requests: Sequence[Request], max_new_tokens: int, slots: int,
                 pool: PagePool, static: bool = False) -> None:
        if slots < 1:
            raise InputError(f"batch size must be >= 1, got {slots}")
        self.max_new_tokens, self.pool, self.static = max_new_tokens, pool, static
        for r in requests:
            if not r.prompt_ids:
                raise InputError(f"request {r.key!r} has an empty prompt")
            worst = self.worst_case(r)
            if pool.pages_for(worst) > pool.num_pages:
                raise InputError(
                    f"a sample of request {r.key!r} may need {pool.pages_for(worst)} KV pages "
                    f"({len(r.prompt_ids)} prompt + {worst + 1 - len(r.prompt_ids)} new tokens) "
                    "but the pool "
                    f"holds {pool.num_pages}: give more pages (--kv-pages) or fewer new "
                    "tokens (--max-new-tokens)")
        self.queue: deque[Sample] = deque(Sample(r, i) for i, r in enumerate(requests))
        self.free_slots: list[int] = list(range(slots))  # a heap: the lowest slot first
        self.running: list[Sample] = []
        self.slots = slots
        self.refills = 0  # samples admitted while others were decoding

    def worst_case(self, request: Request) -> int:
        """Tokens a sample may hold in its cache: its prompt plus every generated token
        but the last (never fed back)."""
        return len(request.prompt_ids) + request.token_limit(self.max_new_tokens) - 1

    @property
    def done(self) -> bool:
        return not self.queue and not self.running

    def _admit(self) -> list[Sample]:
        if self.static and self.running:
            return []
        admitted = []
        while self.queue and self.free_slots:
            sample = self.queue[0]
            slot = self.free_slots[0]
            if not self.pool.promise(slot, self.worst_case(sample.request)):
                break  # in order: a later, smaller sample does not overtake
            self.queue.popleft()
            heapq.heappop(self.free_slots)
            sample.slot = slot
            admitted.append(sample)
        return admitted

    def schedule(self) -> StepPlan:
        """The next step: admissions (grouped by prompt, in request order) and decodes."""
        decodes = tuple(s for s in self.running if s.tokens)
        admitted = self._admit()
        if decodes:
            self.refills += len(admitted)
        self.running.extend(admitted)
        groups: dict[tuple[int, ...], list[Sample]] = {}
        for s in admitted:
            groups.setdefault(s.request.prompt_ids, []).append(s)
        if not admitted and not decodes and not self.done:
            raise RuntimeError("scheduler stalled: nothing runs and nothing can be admitted")
        return StepPlan(tuple(tuple(g) for g in groups.values()), decodes)

    def finish(self, sample: Sample) -> None:
        """Free a stopped sample's slot and pages."""
        self.running.remove(sample)
        self.pool.release(sample.slot)
        heapq.heappush(self.free_slots, sample.slot)
