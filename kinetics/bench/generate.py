"""End-to-end generation speed: the paged engine against transformers' ``generate``.

``kinetics bench --generate`` builds a random-initialised Qwen3 of a preset's shapes
(``layers`` of them; bfloat16 on a GPU, float32 on the CPU), hands its weights to the
paged engine (:mod:`kinetics.generation.paged`) and times, on one workload of random
prompts with EOS suppressed (every sample runs to its length):

* the engine with continuous batching, per attention method (dense, block top-k);
* with ``skewed``, the same engine with static batching too: sample lengths are drawn
  like reasoning traces (most short, a long tail: log-normal, capped at ``new_tokens``),
  where refilling finished slots pays;
* with ``hf``, transformers' ``generate`` on the same weights, batch and lengths (its
  default cache, greedy), the reference the engine's speedup is taken against.

* with ``step``, the engine's bare decode step (its recorded CUDA graph replayed, no
  prefill, sampling or host work) at the batch and the workload's mean context: what
  the engine would reach if nothing but the step cost time.

The engine's attention (:func:`attention_impl`, in the record) is the Triton kernels in
CUDA graphs on a GPU and the torch reference on the CPU. Tokens/s counts generated
tokens over wall time (prefill included), after one warm-up generation of each engine
on a short workload; ``decode_tokens_per_s`` counts the tokens of decode steps over
their time alone (prefill excluded: what a long-prompt workload compares). With
``shared_prompt`` every sample has the same prompt (Best-of-N), prefilled once. Ratios
taken in the same run are what a gate compares (:class:`GenerateRecord`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from kinetics.cost import AttentionConfig
from kinetics.errors import InputError
from kinetics.models import ModelSpec, get_model

MAX_POSITIONS = 131072  # prompt + new tokens, at most (the configs' max_position_embeddings)
#: upper bounds of the size flags (a typo must not ask the allocator for terabytes)
LIMITS = {"batch_size": 4096, "prompt_tokens": MAX_POSITIONS, "new_tokens": MAX_POSITIONS,
          "page_size": 1024, "topk_pages": 65536, "local_pages": 65536, "layers": 1024,
          "samples": 1_000_000}
STEP_REPEATS, STEP_STEPS = 20, 10  # the bare step: timed replays of this many steps
WARM_TOKENS = 4  # tokens per sample of an engine's warm-up run
SKEW_SIGMA = 1.0  # log-normal shape of the skewed lengths (median = cap * e^-2.5)


@dataclass(frozen=True)
class GenerateBenchSpec:
    """One generation benchmark.

    Attributes:
        model: preset name (the shapes; weights are random).
        layers: decoder layers built (None: all of the preset's).
        batch_size: slots (and hf's batch).
        prompt_tokens: tokens per prompt.
        new_tokens: generated tokens per sample (the cap of the skewed lengths).
        methods: attention methods timed (``dense``, ``blocktopk``).
        page_size, topk_pages, local_pages: block top-k (pages of ``page_size`` tokens).
        samples: samples in the workload (default ``batch_size``; more make refills).
        skewed: draw sample lengths like reasoning traces and time static batching too.
        hf: also time transformers' ``generate``.
        shared_prompt: every sample has the first sample's prompt (prefilled once).
        step: also time the engine's bare decode step at the mean context.
        seed: weights, prompts and lengths.
    """

    model: str = "qwen3-1.7b"
    layers: int | None = None
    batch_size: int = 32
    prompt_tokens: int = 512
    new_tokens: int = 512
    methods: tuple[str, ...] = ("dense", "blocktopk")
    page_size: int = 16
    topk_pages: int = 64
    local_pages: int = 1
    samples: int | None = None
    skewed: bool = False
    hf: bool = False
    shared_prompt: bool = False
    step: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name, high in LIMITS.items():
            value = getattr(self, name)
            flag = f"--{name.replace('_', '-')}"
            if value is not None and not 1 <= value <= high:
                raise InputError(f"{flag} must be in 1..{high}, got {value}")
        if self.prompt_tokens + self.new_tokens > MAX_POSITIONS:
            raise InputError(f"--prompt-tokens + --new-tokens must be <= {MAX_POSITIONS} "
                             f"(the model's positions), got {self.prompt_tokens + self.new_tokens}")
        preset = get_model(self.model)
        if self.layers is not None and self.layers > preset.num_layers:
            raise InputError(f"--layers {self.layers}: {self.model} has {preset.num_layers}")
        if self.page_size & (self.page_size - 1):
            raise InputError(f"--page-size must be a power of two (tokens), got {self.page_size}")
        if self.local_pages > self.topk_pages:
            raise InputError("--local-pages must not exceed --topk-pages")
        for method in self.methods:
            if method not in ("dense", "blocktopk"):
                raise InputError(f"unknown method {method!r} (dense or blocktopk)")

    @property
    def num_samples(self) -> int:
        return self.batch_size if self.samples is None else self.samples

    def attention(self, method: str) -> AttentionConfig:
        if method == "dense":
            return AttentionConfig.dense()
        b = self.page_size
        return AttentionConfig.blocktopk(b, topk_blocks=self.topk_pages, local=self.local_pages * b)

    @property
    def mean_context(self) -> int:
        """Tokens cached per sample, averaged over a uniform-length generation."""
        return self.prompt_tokens + self.new_tokens // 2

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "methods": list(self.methods)}


def attention_impl(device: str) -> str:
    """What computes the engine's attention on ``device`` (recorded with the timings)."""
    import torch

    from kinetics.model.fused import triton_available

    if torch.device(device).type == "cuda" and triton_available():
        return "triton kernels, one CUDA graph per batch bucket"
    return "torch reference"


@dataclass(frozen=True)
class GenerateTiming:
    """One timed generation: ``engine`` (``paged``, ``hf``, or ``step``: the bare decode
    step), ``method``, ``batching`` (``continuous`` or ``static``; ``none`` for a step),
    generated ``tokens`` in ``seconds`` of wall time, engine ``steps`` and slot
    ``refills`` (paged only), and the ``decode_tokens`` of decode steps in their
    ``decode_seconds`` (paged only; prefill excluded)."""

    engine: str
    method: str
    batching: str
    tokens: int
    seconds: float
    steps: int = 0
    refills: int = 0
    decode_tokens: int = 0
    decode_seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.inf

    @property
    def decode_tokens_per_s(self) -> float | None:
        return self.decode_tokens / self.decode_seconds if self.decode_seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s,
                "decode_tokens_per_s": self.decode_tokens_per_s}


@dataclass
class GenerateRecord:
    """The benchmark's result: its spec, device and timings, and the ratios in it."""

    spec: GenerateBenchSpec
    device: str
    rows: list[GenerateTiming] = field(default_factory=list)
    attention_impl: str = "torch reference"

    def row(self, engine: str, method: str, batching: str = "continuous") -> GenerateTiming | None:
        for r in self.rows:
            if (r.engine, r.method, r.batching) == (engine, method, batching):
                return r
        return None

    def ratios(self) -> dict[str, float]:
        """paged / hf (dense), block top-k / dense (paged; also over decode steps alone),
        continuous / static and paged / its bare step, each as a tokens/s ratio, where
        both rows were timed."""
        out = {}
        pairs = {"paged_over_hf": (("paged", "dense"), ("hf", "dense", "static")),
                 "blocktopk_over_dense": (("paged", "blocktopk"), ("paged", "dense"))}
        for name, (a, b) in pairs.items():
            ra, rb = self.row(*a), self.row(*b)
            if ra and rb:
                out[name] = ra.tokens_per_s / rb.tokens_per_s
        sparse, dense = self.row("paged", "blocktopk"), self.row("paged", "dense")
        if sparse and dense and sparse.decode_tokens_per_s and dense.decode_tokens_per_s:
            out["blocktopk_over_dense_decode"] = (sparse.decode_tokens_per_s
                                                  / dense.decode_tokens_per_s)
        for method in self.spec.methods:
            c, s = self.row("paged", method), self.row("paged", method, "static")
            if c and s:
                out[f"continuous_over_static_{method}"] = c.tokens_per_s / s.tokens_per_s
            step = self.row("step", method, "none")
            if c and step:
                out[f"paged_over_step_{method}"] = c.tokens_per_s / step.tokens_per_s
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "generate", "spec": self.spec.to_dict(), "device": self.device,
                "attention_impl": self.attention_impl, "rows": [r.to_dict() for r in self.rows],
                "ratios": self.ratios()}


def qwen3_config(model: ModelSpec, layers: int | None) -> dict[str, Any]:
    """The HF config of a Qwen3 of ``model``'s shapes (``layers`` of them)."""
    if model.is_moe:
        raise InputError(f"{model.name}: the generation benchmark builds dense models only")
    return {"model_type": "qwen3", "hidden_size": model.hidden_size,
            "intermediate_size": model.intermediate_size,
            "num_hidden_layers": layers or model.num_layers,
            "num_attention_heads": model.num_q_heads,
            "num_key_value_heads": model.num_kv_heads, "head_dim": model.head_dim,
            "vocab_size": model.vocab_size, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False, "max_position_embeddings": 131072}


def workload(spec: GenerateBenchSpec) -> tuple[list[tuple[int, ...]], list[int]]:
    """Random prompts and per-sample lengths (all ``new_tokens``, or skewed)."""
    import numpy as np

    rng = np.random.default_rng(spec.seed)
    vocab = get_model(spec.model).vocab_size
    distinct = 1 if spec.shared_prompt else spec.num_samples
    prompts = [tuple(int(t) for t in rng.integers(0, vocab, spec.prompt_tokens))
               for _ in range(distinct)]
    if spec.shared_prompt:
        prompts = prompts * spec.num_samples
    if not spec.skewed:
        return prompts, [spec.new_tokens] * spec.num_samples
    draws = rng.lognormal(mean=-2.5, sigma=SKEW_SIGMA, size=spec.num_samples)
    lengths = np.clip(np.ceil(draws * spec.new_tokens), 1, spec.new_tokens).astype(int)
    return prompts, [int(n) for n in lengths]


def random_models(spec: GenerateBenchSpec, device: str):
    """transformers' random Qwen3 and the engine's model with the same weights."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from kinetics.model.checkpoint import checkpoint_of_model
    from kinetics.model.decoder import ShardedDecoderModel

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    config = Qwen3Config(**qwen3_config(get_model(spec.model), spec.layers))
    torch.manual_seed(spec.seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with dev:
            hf_model = Qwen3ForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    checkpoint = checkpoint_of_model(hf_model, spec.model)
    engine_model = ShardedDecoderModel(None, dtype=dtype, device=dev, checkpoint=checkpoint)
    return hf_model, engine_model


def _synchronize(device) -> None:
    from kinetics.bench.timing import Clock

    Clock(device).sync()


def paged_backend(model, spec: GenerateBenchSpec, static: bool):
    """The paged engine over ``model`` with ``spec``'s batch (``static`` batching or not)."""
    from kinetics.generation.paged import EngineOptions, PagedBackend

    options = EngineOptions(max_batch=spec.batch_size, static=static)
    return PagedBackend(model, None, spec.model, frozenset(), {}, options)


def time_paged(backend, spec: GenerateBenchSpec, method: str, prompts, lengths
               ) -> GenerateTiming:
    """One generation of the workload by ``backend`` (EOS suppressed, greedy; at most
    ``spec.new_tokens`` per sample, so every workload of ``spec`` runs on one engine
    shape, its kernels and graphs kept between runs)."""
    from kinetics.generation.backend import GenerationStats, Request, SamplingParams

    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=spec.new_tokens)
    requests = [Request(i, p, i, n) for i, (p, n) in enumerate(zip(prompts, lengths,
                                                                    strict=True))]
    backend.stats = stats = GenerationStats()
    _synchronize(backend.model.device)
    start = time.perf_counter()
    for _ in backend.generate(requests, params, spec.attention(method)):
        pass
    _synchronize(backend.model.device)
    seconds = time.perf_counter() - start
    batching = "static" if backend.options.static else "continuous"
    return GenerateTiming("paged", method, batching, stats.generated_tokens, seconds,
                          stats.steps, int(stats.extra.get("refills", 0)),
                          stats.generated_tokens - len(requests),
                          float(stats.extra.get("decode_s", 0.0)))


def time_step(model, spec: GenerateBenchSpec, method: str) -> GenerateTiming:
    """The engine's bare decode step: ``batch_size`` slots at ``spec.mean_context`` cached
    tokens (zeros: the step's cost does not depend on them), its recorded graph
    replayed (eager reference steps on the CPU), median of STEP_REPEATS timings of
    STEP_STEPS steps each."""
    from kinetics.bench.timing import time_replays
    from kinetics.generation.attention import decode_attention
    from kinetics.generation.runner import ModelRunner, step_impl

    decode = decode_attention(spec.attention(method))
    b, warmup = spec.batch_size, 3
    max_tokens = spec.mean_context + (warmup + STEP_REPEATS) * STEP_STEPS + 1
    pages = -(-max_tokens // decode.page_size)
    runner = ModelRunner(model, decode, b, max_tokens, b * pages, impl=step_impl(model))
    for slot in range(b):
        runner.map_pages(slot, [(i, slot * pages + i) for i in range(pages)])
    runner.seq_lens.fill_(spec.mean_context)
    slots = list(range(b))
    runner.decode(slots, [0] * b)  # records the bucket's graph, sets its inputs
    if runner.graphed is not None:
        one = runner.graphed.recorded(runner.graphed.bucket(slots)).replay
    else:
        def one() -> None:
            runner.decode(slots, [0] * b)

    def replay() -> None:
        for _ in range(STEP_STEPS):
            one()

    timing = time_replays(replay, STEP_STEPS, STEP_REPEATS, warmup, device=model.device)
    runner.close()
    return GenerateTiming("step", method, "none", b, timing.ms * 1e-3, steps=1)


def time_hf(hf_model, spec: GenerateBenchSpec, prompts, lengths) -> GenerateTiming:
    """transformers' ``generate`` in batches of ``batch_size`` (each to its longest
    length; only each sample's own length counts as generated)."""
    import torch

    device = hf_model.device
    _synchronize(device)
    start = time.perf_counter()
    tokens = 0
    for first in range(0, len(prompts), spec.batch_size):
        batch = prompts[first:first + spec.batch_size]
        n = max(lengths[first:first + spec.batch_size])
        ids = torch.tensor(batch, device=device)
        with torch.no_grad():
            hf_model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              max_new_tokens=n, min_new_tokens=n, eos_token_id=None,
                              pad_token_id=0)
        tokens += sum(lengths[first:first + spec.batch_size])
    _synchronize(device)
    return GenerateTiming("hf", "dense", "static", tokens, time.perf_counter() - start)


def bench_generate(spec: GenerateBenchSpec, device: str = "cuda") -> GenerateRecord:
    """Time the engines on ``spec``'s workload (see the module docstring). Each paged
    engine first runs a warm-up of ``batch_size`` of the prompts, WARM_TOKENS tokens
    each, on the same engine shape (kernels compiled, graphs recorded, first prefills
    done before the clock starts)."""
    hf_model, model = random_models(spec, device)
    prompts, lengths = workload(spec)
    warm = prompts[:spec.batch_size], [min(WARM_TOKENS, n) for n in lengths[:spec.batch_size]]
    record = GenerateRecord(spec, str(model.device), attention_impl=attention_impl(device))
    for method in spec.methods:
        for static in (False, True) if spec.skewed else (False,):
            backend = paged_backend(model, spec, static)
            time_paged(backend, spec, method, *warm)
            record.rows.append(time_paged(backend, spec, method, prompts, lengths))
            backend.close()  # its KV pool, before the next one is allocated
        if spec.step:
            record.rows.append(time_step(model, spec, method))
    if spec.hf:
        time_hf(hf_model, spec, prompts[:2], [WARM_TOKENS] * min(2, len(prompts)))
        record.rows.append(time_hf(hf_model, spec, prompts, lengths))
    return record


def format_record(record: GenerateRecord) -> str:
    """The timings as a table, then the ratios."""
    s = record.spec
    lines = [f"{s.model} ({s.layers or 'all'} layers), batch {s.batch_size}, "
             f"{s.num_samples} samples, {s.prompt_tokens} prompt"
             f"{' (shared)' if s.shared_prompt else ''} + up to {s.new_tokens} new "
             f"tokens{' (skewed lengths)' if s.skewed else ''}, {record.device}, attention: "
             f"{record.attention_impl}",
             f"  {'engine':<6} {'method':<10} {'batching':<11} {'tokens':>8} {'s':>9} "
             f"{'tokens/s':>10} {'decode/s':>10} {'steps':>7} {'refills':>7}"]
    for r in record.rows:
        decode = f"{r.decode_tokens_per_s:>10.1f}" if r.decode_tokens_per_s else f"{'-':>10}"
        lines.append(f"  {r.engine:<6} {r.method:<10} {r.batching:<11} {r.tokens:>8} "
                     f"{r.seconds:>9.3f} {r.tokens_per_s:>10.1f} {decode} {r.steps:>7} "
                     f"{r.refills:>7}")
    lines += [f"  {name}: {value:.2f}x" for name, value in record.ratios().items()]
    return "\n".join(lines)
