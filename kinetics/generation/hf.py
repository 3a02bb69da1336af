"""The ``hf`` backend: any transformers causal LM, its attention computed by the reference.

A function registered in transformers' ``AttentionInterface`` (as ``kinetics quality``
does) receives every layer's post-RoPE queries, keys and values. The model runs with
``use_cache=False``: the backend keeps its own :class:`~kinetics.attention.cache.PagedKVCache`
per layer (pages of the configuration's block size), so a decode step feeds one token per
sample and attends over the cache with :mod:`kinetics.attention.reference`'s decode form:
dense, oracle token top-k or block top-k. Prompts are prefilled densely, one forward
pass per distinct prompt, and copied into the cache row of every sample that shares it.
Dense and sparse decodes go through the same masked attention, so a block top-k whose
budget covers the whole context gives bit-identical tokens.

Batches are static: a batch ends when its last sample stops (finished samples keep a
row until then; their tokens are discarded). Each sample draws its uniforms from its own
``torch.Generator`` seeded by :attr:`Request.seed`, one per generated token.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kinetics.cost import AttentionConfig
from kinetics.errors import InputError
from kinetics.generation.attention import DecodeAttention, decode_attention, reference_decode
from kinetics.generation.backend import (
    Completion,
    GenerationStats,
    Request,
    SamplingParams,
    StopReason,
    batched,
    stop_reason,
)

if TYPE_CHECKING:
    import torch

    from kinetics.attention.cache import PagedKVCache

ATTENTION_NAME = "kinetics_decode"


@dataclass
class _Plan:
    attention: DecodeAttention
    batch: int
    max_tokens: int
    caches: dict[int, PagedKVCache] = field(default_factory=dict)
    prefill_rows: tuple[int, ...] = ()
    calls: int = 0


_PLAN: contextvars.ContextVar[_Plan | None] = contextvars.ContextVar("kinetics_generation",
                                                                    default=None)


def _cache(plan: _Plan, layer: int, key: torch.Tensor) -> PagedKVCache:
    from kinetics.attention.cache import PagedKVCache

    cache = plan.caches.get(layer)
    if cache is None:
        cache = PagedKVCache(plan.batch, key.shape[1], key.shape[3],
                             page_size=plan.attention.page_size, max_tokens=plan.max_tokens,
                             dtype=key.dtype, device=key.device)
        plan.caches[layer] = cache
    return cache


def _generation_attention(module: Any, query: torch.Tensor, key: torch.Tensor,
                          value: torch.Tensor, attention_mask: Any,
                          scaling: float | None = None, dropout: float = 0.0,
                          **kwargs: Any) -> tuple[torch.Tensor, None]:
    """AttentionInterface entry: ``([B, T, Hq, D], None)`` like transformers' own."""
    from kinetics.attention.reference import causal_masked_attention

    plan = _PLAN.get()
    if plan is None:
        raise RuntimeError("kinetics decode attention called outside a generation step")
    plan.calls += 1
    cache = _cache(plan, int(module.layer_idx), key)
    if plan.prefill_rows:  # one prompt [1, H, T, D], dense causal
        out = causal_masked_attention(query, key, value, None, scaling)
        k, v = key[0].transpose(0, 1), value[0].transpose(0, 1)  # [T, Hkv, D]
        for row in plan.prefill_rows:
            cache.extend(row, k, v)
        return out.to(query.dtype).transpose(1, 2).contiguous(), None
    cache.append(key[:, :, 0], value[:, :, 0])
    out = reference_decode(plan.attention, query[:, :, 0], cache, scaling)  # [B, Hq, D]
    return out.to(query.dtype)[:, None].contiguous(), None


def register() -> None:
    """Register the decode attention under :data:`ATTENTION_NAME` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, _generation_attention)


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The token ids that end a sample: the tokenizer's EOS and the generation config's."""
    ids: set[int] = set()
    for source in (getattr(tokenizer, "eos_token_id", None),
                   getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(i) for i in source)
    return frozenset(ids)


class _Batch:
    """Host-side state of one static batch: tokens so far, stop reasons, generators."""

    def __init__(self, requests: Sequence[Request], params: SamplingParams,
                 stop_ids: frozenset[int], tokenizer: Any) -> None:
        import torch

        self.requests, self.params, self.stop_ids = requests, params, stop_ids
        self.tokenizer = tokenizer
        self.tokens: list[list[int]] = [[] for _ in requests]
        self.reason: list[StopReason | None] = [None] * len(requests)
        self.generators = [torch.Generator().manual_seed(r.seed) for r in requests]

    @property
    def active(self) -> list[int]:
        return [i for i, r in enumerate(self.reason) if r is None]

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """Next token per row ``[B]`` (finished rows draw nothing)."""
        import torch

        from kinetics.generation.sampling import next_tokens

        uniforms = None
        if not self.params.greedy:
            uniforms = torch.zeros(len(self.requests), dtype=torch.float64)
            for i in self.active:
                uniforms[i] = torch.rand((), generator=self.generators[i], dtype=torch.float64)
        return next_tokens(logits.to(torch.float32).cpu(), uniforms, self.params.temperature,
                           self.params.top_p)

    def record(self, chosen: torch.Tensor) -> list[int]:
        """Append each active row's token and decide its stop; returns the rows that
        finished now."""
        done = []
        for i in self.active:
            self.tokens[i].append(int(chosen[i]))
            self.reason[i] = stop_reason(self.tokens[i], self.params, self.stop_ids,
                                         self.tokenizer,
                                         self.requests[i].token_limit(self.params.max_new_tokens))
            if self.reason[i] is not None:
                done.append(i)
        return done

    def completion(self, i: int) -> Completion:
        return Completion(self.requests[i].key, tuple(self.tokens[i]), self.reason[i])


class HFBackend:
    """The transformers reference backend (CPU or GPU; float32 on the CPU).

    Args:
        model: a loaded causal LM that dispatches attention through transformers'
            ``AttentionInterface`` (Llama/Qwen/SmolLM-style).
        tokenizer: its tokenizer.
        name: where the model came from (for the table and messages).
        max_batch: samples decoded together, at most.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str, max_batch: int = 16) -> None:
        if max_batch < 1:
            raise InputError(f"batch size must be >= 1, got {max_batch}")
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_batch = max_batch
        self.eos_token_ids = eos_ids(model, tokenizer)
        self.hf_config: dict = model.config.to_dict()
        self.stats = GenerationStats()
        self.device = next(model.parameters()).device

    def generate(self, requests: Sequence[Request], params: SamplingParams,
                 attention: AttentionConfig) -> Iterator[Completion]:
        """Every request's completion, batch by batch (requests sharing a prompt should
        be adjacent: each batch prefills each distinct prompt once)."""
        decode = decode_attention(attention)
        for batch in batched(list(requests), self.max_batch):
            yield from self._generate_batch(batch, params, decode)

    def _forward(self, plan: _Plan, ids: torch.Tensor, positions: torch.Tensor
                 ) -> torch.Tensor:
        import torch

        token = _PLAN.set(plan)
        try:
            with torch.no_grad():
                out = self.model(input_ids=ids, position_ids=positions, use_cache=False,
                                 logits_to_keep=1)
        finally:
            _PLAN.reset(token)
        return out.logits[:, -1, :]

    def _prefill(self, plan: _Plan, requests: Sequence[Request]) -> torch.Tensor:
        """Prefill each distinct prompt into its rows; last-position logits ``[B, V]``."""
        import torch

        rows: dict[tuple[int, ...], list[int]] = {}
        for i, r in enumerate(requests):
            if not r.prompt_ids:
                raise InputError(f"request {r.key!r} has an empty prompt")
            rows.setdefault(r.prompt_ids, []).append(i)
        logits = [None] * len(requests)
        for prompt, members in rows.items():
            plan.prefill_rows = tuple(members)
            ids = torch.tensor([prompt], dtype=torch.int64, device=self.device)
            pos = torch.arange(len(prompt), device=self.device)[None]
            last = self._forward(plan, ids, pos)[0]
            for i in members:
                logits[i] = last
            self.stats.prompt_tokens += len(prompt)
        plan.prefill_rows = ()
        if plan.calls == 0:
            raise InputError(f"{type(self.model).__name__} does not dispatch its attention "
                             "through transformers' AttentionInterface (need a Llama/Qwen-style "
                             "model)", path=self.name)
        return torch.stack(logits)

    def _generate_batch(self, requests: Sequence[Request], params: SamplingParams,
                        decode: DecodeAttention) -> Iterator[Completion]:
        import torch

        register()
        longest = max(len(r.prompt_ids) for r in requests)
        plan = _Plan(decode, len(requests), longest + params.max_new_tokens)
        state = _Batch(requests, params, self.eos_token_ids | set(params.stop_token_ids),
                       self.tokenizer)
        previous = self.model.config._attn_implementation
        self.model.set_attn_implementation(ATTENTION_NAME)
        try:
            logits = self._prefill(plan, requests)
            lens = torch.tensor([len(r.prompt_ids) for r in requests], device=self.device)
            while True:
                chosen = state.choose(logits)
                self.stats.generated_tokens += len(state.active)
                for i in state.record(chosen):
                    yield state.completion(i)
                self.stats.steps += 1
                if not state.active:
                    return
                ids = chosen.to(self.device)[:, None]
                logits = self._forward(plan, ids, lens[:, None])
                lens = lens + 1
        finally:
            self.model.set_attn_implementation(previous)
