"""The generation backend interface: prompts and sampling parameters in, token streams out.

The command (:mod:`kinetics.cli.generate_cmd`), the grader and the table writer only see
these types, so a backend (the transformers reference :mod:`kinetics.generation.hf`, a
faster engine) plugs in without touching them.

Determinism contract: a sample's tokens depend only on the model, the attention
configuration, its prompt, the sampling parameters and its :attr:`Request.seed`
(derived by :func:`sample_seed` from the run seed, the problem id and the sample
index), not on which other requests share its batch, up to the float rounding of
kernels whose blocking depends on the batch shape (a near-tie can flip).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from kinetics.cost import AttentionConfig
from kinetics.errors import InputError

StopReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How tokens are drawn and when a sample stops.

    Attributes:
        temperature: softmax temperature; 0 is greedy (arg-max, no random draw).
        top_p: nucleus mass kept before drawing, in (0, 1].
        max_new_tokens: generated tokens at most (the stop token included).
        stop: strings that end a sample when they appear in its generated text (the
            sample keeps the tokens up to and including the one completing the string).
        stop_token_ids: token ids that end a sample besides the tokenizer's EOS ids.
    """

    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not (self.temperature >= 0.0) or self.temperature > 100:
            raise InputError(f"temperature must be in [0, 100], got {self.temperature}")
        if not (0.0 < self.top_p <= 1.0):
            raise InputError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise InputError(f"max new tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Request:
    """One sample to generate: ``key`` identifies it to the caller (any hashable);
    ``max_new_tokens``, when given, caps this sample below the sampling parameters' cap
    (benchmarks draw lengths like real traces; the command leaves it None)."""

    key: object
    prompt_ids: tuple[int, ...]
    seed: int
    max_new_tokens: int | None = None

    def token_limit(self, cap: int) -> int:
        """Tokens this sample may generate under a run-wide cap of ``cap``."""
        return cap if self.max_new_tokens is None else max(1, min(cap, self.max_new_tokens))


@dataclass(frozen=True)
class Completion:
    """A finished sample: its generated token ids (the stop token included) and why it
    stopped (``"eos"``: an EOS or stop token id, ``"stop"``: a stop string,
    ``"length"``: ``max_new_tokens``)."""

    key: object
    token_ids: tuple[int, ...]
    stop_reason: StopReason


@dataclass
class GenerationStats:
    """Counters a backend keeps while it runs (for progress and benchmarks)."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    steps: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class Backend(Protocol):
    """What the command needs of an engine.

    ``tokenizer`` is a transformers tokenizer (``apply_chat_template``, ``decode``);
    ``eos_token_ids`` the ids that end a sample; ``name`` says which model was loaded.
    ``generate`` yields every request's :class:`Completion` (in any order) under one
    attention configuration; it may batch the requests as it likes.
    """

    name: str
    tokenizer: object
    eos_token_ids: frozenset[int]
    stats: GenerationStats

    def generate(self, requests: Sequence[Request], params: SamplingParams,
                 attention: AttentionConfig) -> Iterator[Completion]: ...


def stop_reason(tokens: Sequence[int], params: SamplingParams, stop_ids: frozenset[int],
                tokenizer: object, limit: int | None = None) -> StopReason | None:
    """Why a sample whose generated tokens are ``tokens`` (the newest last) stops now, or
    None: its newest token is in ``stop_ids`` (``"eos"``), its text's tail holds a stop
    string (``"stop"``), or it reached ``limit`` tokens (``"length"``; default
    ``params.max_new_tokens``)."""
    if tokens[-1] in stop_ids:
        return "eos"
    if params.stop:
        window = max(len(s) for s in params.stop) + 4  # tokens: each is >= 1 character
        tail = tokenizer.decode(list(tokens[-window:]), skip_special_tokens=False)
        if any(s in tail for s in params.stop):
            return "stop"
    if len(tokens) >= (params.max_new_tokens if limit is None else limit):
        return "length"
    return None


def sample_seed(seed: int, problem_id: str, sample: int) -> int:
    """The seed of one sample: a 63-bit hash of (run seed, problem id, sample index)."""
    digest = hashlib.sha256(f"{seed}\x00{problem_id}\x00{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def batched(items: Sequence[Request], size: int) -> Iterable[Sequence[Request]]:
    """Consecutive slices of at most ``size`` requests."""
    if size < 1:
        raise InputError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]
