"""The ``paged`` backend: kinetics' own engine, continuous batching over a paged KV pool.

The model is a :class:`~kinetics.model.decoder.ShardedDecoderModel` with the checkpoint's
real weights (:mod:`kinetics.model.checkpoint`; bfloat16 on a GPU, float32 on the CPU).
Each engine step the :class:`~kinetics.generation.scheduler.Scheduler` admits queued
samples into free slots (their worst-case pages promised by the
:class:`~kinetics.generation.scheduler.PagePool`), the
:class:`~kinetics.generation.runner.ModelRunner` prefills each new prompt once and
decodes one token for every running sample, and a sample that stops frees its slot and
pages for the next step.

Sampling: every sample draws token ``i``'s uniform from
:func:`~kinetics.generation.sampling.token_uniforms` of ``(Request.seed, i)``, on the
model's device, so its draws depend only on (seed, problem, sample index), not on its
batch, its slot or when it was admitted; its logits, up to the float rounding of
batch-shaped kernels. (The ``hf`` backend draws from a per-sample ``torch.Generator``
instead: the two agree token for token on greedy decoding only.)

Devices: float32 on the CPU (where ``paged`` and ``hf`` are compared token for token),
attention by the torch reference; bfloat16 on a GPU, where a decode step is one CUDA
graph per batch bucket with Triton attention (dense, block top-k:
:mod:`kinetics.generation.graphed`) and, for Qwen3, the fused layer kernels
(:mod:`kinetics.model.fused`). Each step reads its sampled tokens back to the host once
(the stop checks). ``stats.extra`` keeps ``prefill_s`` and ``decode_s``: wall seconds of
the steps' prefills and of their decodes with sampling and host work (a step that only
prefills counts whole as prefill). The engine keeps its model runner (KV pool, recorded
graphs) between generations of one shape; :meth:`PagedBackend.close` frees it.
Tensor parallelism: :func:`load_paged_backend` builds one rank's shard of the model
(:class:`~kinetics.model.decoder.ShardedDecoderModel` over a process group); the
group's ranks run the same schedule in lockstep (their gathered logits, and so their
tokens, are the same).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kinetics.cost import AttentionConfig
from kinetics.errors import InputError
from kinetics.generation.attention import decode_attention
from kinetics.generation.backend import (
    Completion,
    GenerationStats,
    Request,
    SamplingParams,
    stop_reason,
)
from kinetics.generation.hf import eos_ids
from kinetics.generation.scheduler import PagePool, Sample, Scheduler

if TYPE_CHECKING:
    import torch

    from kinetics.model.decoder import ShardedDecoderModel


PREFILL_CHUNK = 512  # prompt tokens per forward pass, by default


@dataclass(frozen=True)
class EngineOptions:
    """How the engine batches.

    Attributes:
        max_batch: slots (samples decoded together, at most).
        kv_pages: pages in the pool; None: enough for ``max_batch`` worst-case samples.
        prefill_chunk: prompt tokens run through the model at once.
        static: admit only into an empty batch (static batching, for comparison).
    """

    max_batch: int = 16
    kv_pages: int | None = None
    prefill_chunk: int = PREFILL_CHUNK
    static: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise InputError(f"batch size must be >= 1, got {self.max_batch}")
        if self.kv_pages is not None and self.kv_pages < 1:
            raise InputError(f"--kv-pages must be >= 1, got {self.kv_pages}")
        if self.prefill_chunk < 1:
            raise InputError(f"prefill chunk must be >= 1 token, got {self.prefill_chunk}")


class PagedBackend:
    """The paged engine behind the :class:`~kinetics.generation.backend.Backend` interface.

    Args:
        model: the model shard (real weights).
        tokenizer: its transformers tokenizer.
        name: where the model came from.
        eos_token_ids: ids that end a sample.
        hf_config: the checkpoint's HF config (stored in the trial table).
        options: batching (:class:`EngineOptions`).
    """

    def __init__(self, model: ShardedDecoderModel, tokenizer: Any, name: str,
                 eos_token_ids: frozenset[int], hf_config: dict,
                 options: EngineOptions = EngineOptions()) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.eos_token_ids, self.hf_config, self.options = eos_token_ids, hf_config, options
        self.stats = GenerationStats()
        self.pool: PagePool | None = None  # the last generation's (tests check it is whole)
        self._runner: tuple[tuple, Any] | None = None  # (shape, ModelRunner) of the last run
        self._busy = False

    def pool_pages(self, longest_prompt: int, params: SamplingParams, page_size: int) -> int:
        """Pages of the pool for prompts of at most ``longest_prompt`` tokens."""
        return self.options.kv_pages or self.options.max_batch * -(
            -(longest_prompt + params.max_new_tokens) // page_size)

    def check_capacity(self, prompts: dict[str, Sequence[int]], params: SamplingParams,
                       attention: AttentionConfig) -> None:
        """InputError, before any work, when a sample of one of ``prompts`` (problem id ->
        prompt ids) could never be admitted."""
        requests = [Request(key, tuple(p), 0) for key, p in prompts.items()]
        if requests:
            self._scheduler(requests, params, decode_attention(attention).page_size)

    def _scheduler(self, requests: Sequence[Request], params: SamplingParams,
                   page_size: int) -> Scheduler:
        """The scheduler of ``requests`` over a pool of :meth:`pool_pages` pages (InputError
        when the pool cannot fit the device or a sample could never be admitted)."""
        longest = max(len(r.prompt_ids) for r in requests)
        pages = self.pool_pages(longest, params, page_size)
        self.check_memory(pages, page_size)
        return Scheduler(requests, params.max_new_tokens, self.options.max_batch,
                         PagePool(pages, page_size), static=self.options.static)

    def check_memory(self, num_pages: int, page_size: int) -> None:
        """InputError when a pool of ``num_pages`` pages cannot fit the device."""
        from kinetics.generation.runner import free_bytes, pool_bytes

        _free_device_memory(self.model.device)  # dropped runners' pools are free
        need = pool_bytes(self.model, num_pages + 1, page_size)  # + the runner's spare page
        have = free_bytes(self.model.device)
        if self._runner is not None:  # closed before a new pool is allocated
            have += self._runner[1].pool_bytes
        if need > have:
            raise InputError(f"a KV pool of {num_pages} pages needs {need / 2**30:.1f} GiB, "
                             f"more than the {have / 2**30:.1f} GiB free on "
                             f"{self.model.device}: lower --kv-pages or --batch-size")

    def generate(self, requests: Sequence[Request], params: SamplingParams,
                 attention: AttentionConfig) -> Iterator[Completion]:
        """Every request's completion, as each finishes (continuous batching)."""
        requests = list(requests)
        if not requests:
            return
        if self._busy:
            raise RuntimeError("the paged engine runs one generation at a time (its runner "
                               "and slots are shared); finish or close the other first")
        self._busy = True
        try:
            yield from self._generate(requests, params, attention)
        finally:
            self._busy = False

    def _generate(self, requests: list[Request], params: SamplingParams,
                  attention: AttentionConfig) -> Iterator[Completion]:
        decode = decode_attention(attention)
        scheduler = self._scheduler(requests, params, decode.page_size)
        self.pool = pool = scheduler.pool
        longest = max(len(r.prompt_ids) for r in requests) + params.max_new_tokens
        runner = self._runner_for(decode, longest, pool.num_pages)
        stop_ids = self.eos_token_ids | set(params.stop_token_ids)
        try:
            while not scheduler.done:
                samples, chosen = self._step(scheduler.schedule(), runner, pool, params)
                self.stats.steps += 1
                self.stats.generated_tokens += len(samples)
                for sample, token in zip(samples, chosen, strict=True):
                    sample.tokens.append(token)
                    sample.reason = stop_reason(
                        sample.tokens, params, stop_ids, self.tokenizer,
                        sample.request.token_limit(params.max_new_tokens))
                    if sample.reason is not None:
                        runner.release(sample.slot)
                        scheduler.finish(sample)
                        yield Completion(sample.request.key, tuple(sample.tokens),
                                         sample.reason)
        finally:  # also when the caller stops early or a step fails: the pool ends whole
            for sample in list(scheduler.running):
                runner.release(sample.slot)
                scheduler.finish(sample)
            self.stats.extra["refills"] = self.stats.extra.get("refills", 0) + scheduler.refills

    def _runner_for(self, decode, max_tokens: int, num_pages: int):
        """The model runner of this shape: the last generation's when its shape is the
        same (its recorded CUDA graphs and compiled kernels kept), else a new one (the old
        one's pool freed first)."""
        from kinetics.generation.runner import ModelRunner

        shape = dict(attention=decode, slots=self.options.max_batch, max_tokens=max_tokens,
                     num_pages=num_pages, prefill_chunk=self.options.prefill_chunk,
                     impl=self._impl())
        key = tuple(shape.values())
        if self._runner is not None and self._runner[0] == key:
            return self._runner[1]
        self.close()
        runner = ModelRunner(self.model, **shape)
        self._runner = (key, runner)
        return runner

    def close(self) -> None:
        """Free the kept runner's KV pool and recorded steps now."""
        if self._runner is not None:
            self._runner[1].close()
            self._runner = None
            _free_device_memory(self.model.device)

    def _impl(self) -> str:
        from kinetics.generation.runner import step_impl

        return step_impl(self.model)

    def _step(self, plan, runner, pool: PagePool, params: SamplingParams
              ) -> tuple[list[Sample], list[int]]:
        """One engine step: prefills, then decodes; the samples and their next tokens."""
        import torch

        extra = self.stats.extra
        start = time.perf_counter()
        prefilled, first = self._prefill(plan, runner, pool)
        prefill_end = time.perf_counter()
        decoded, logits = self._decode(plan, runner, pool)
        samples = prefilled + decoded
        chosen = self._choose(samples, torch.cat(first + logits), params)
        end = time.perf_counter()
        if decoded:  # the step's sampling and host work count with its decode
            extra["prefill_s"] = extra.get("prefill_s", 0.0) + prefill_end - start
            extra["decode_s"] = extra.get("decode_s", 0.0) + end - prefill_end
        else:
            extra["prefill_s"] = extra.get("prefill_s", 0.0) + end - start
        return samples, chosen

    def _prefill(self, plan, runner, pool: PagePool) -> tuple[list[Sample], list[torch.Tensor]]:
        """Prefill the admitted groups (synchronised: its time is its own): the samples
        and their first-token logits ``[n, vocab]`` (one block per group)."""
        samples, logits = [], []
        for group in plan.prefills:
            prompt = group[0].request.prompt_ids
            for s in group:
                runner.map_pages(s.slot, pool.grow(s.slot, len(prompt)))
            last = runner.prefill([s.slot for s in group], prompt)
            samples.extend(group)
            logits.append(last.expand(len(group), -1))
            self.stats.prompt_tokens += len(prompt)
        if samples:
            runner.synchronize()
        return samples, logits

    def _decode(self, plan, runner, pool: PagePool) -> tuple[list[Sample], list[torch.Tensor]]:
        """Decode the running samples: the samples and their next-token logits."""
        if not plan.decodes:
            return [], []
        for s in plan.decodes:
            runner.map_pages(s.slot, pool.grow(s.slot, s.cached_tokens))
        logits = runner.decode([s.slot for s in plan.decodes],
                               [s.tokens[-1] for s in plan.decodes])
        return list(plan.decodes), [logits]

    def _choose(self, samples: Sequence[Sample], logits: torch.Tensor,
                params: SamplingParams) -> list[int]:
        """Each sample's next token (one host transfer for the step)."""
        import torch

        from kinetics.generation.sampling import next_tokens, token_uniforms

        uniforms = None
        if not params.greedy:
            device = logits.device
            seeds = torch.tensor([s.request.seed for s in samples], dtype=torch.int64,
                                 device=device)
            index = torch.tensor([len(s.tokens) for s in samples], dtype=torch.int64,
                                 device=device)
            uniforms = token_uniforms(seeds, index)
        return next_tokens(logits, uniforms, params.temperature, params.top_p).tolist()


def _free_device_memory(device) -> None:
    """Return freed tensors' memory to the device (a dropped runner's pool, before the
    next one is allocated)."""
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def load_paged_backend(model: str, gguf_file: str | None, device: str, options: EngineOptions,
                       progress: bool = True, verbose: bool = False, tp_size: int = 1,
                       tp_rank: int = 0, group: Any = None) -> PagedBackend:
    """The paged engine for ``model``: an HF folder with safetensors is read lazily into
    the model shard; anything else (hub id, GGUF) is loaded by transformers first and
    handed over (:func:`~kinetics.model.checkpoint.checkpoint_of_model`). bfloat16 on a
    GPU, float32 on the CPU. ``tp_size > 1``: this rank's shard of the model over
    ``group`` (its ``tp_rank``)."""
    from pathlib import Path

    import torch

    from kinetics.model.checkpoint import checkpoint_of_model, open_checkpoint
    from kinetics.model.decoder import ShardedDecoderModel
    from kinetics.quality.load import load_model

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"--device {device}: {exc}") from None
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    folder = Path(model)
    if gguf_file is None and folder.is_dir() and any(folder.glob("*.safetensors")):
        checkpoint = open_checkpoint(folder)
        tokenizer, hf_config, stop = _folder_tokenizer(folder)
        name = str(folder)
    else:
        loaded = load_model(model, gguf_file, progress=progress, verbose=verbose,
                            extra="generate")
        checkpoint = checkpoint_of_model(loaded.model, loaded.name)
        tokenizer, hf_config, name = loaded.tokenizer, loaded.model.config, loaded.name
        stop = eos_ids(loaded.model, tokenizer)
    try:
        shard = ShardedDecoderModel(checkpoint.arch.spec, tp_size, tp_rank, group,
                                    dtype=dtype, device=dev, checkpoint=checkpoint)
    except (RuntimeError, AssertionError) as exc:
        raise InputError(f"--device {device}: {str(exc).splitlines()[0][:200]}") from None
    return PagedBackend(shard, tokenizer, name, stop, hf_config.to_dict(), options)


def _folder_tokenizer(folder) -> tuple[Any, Any, frozenset[int]]:
    """The tokenizer, HF config and EOS ids of a model folder (InputError when transformers
    cannot read them)."""
    from types import SimpleNamespace

    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        config = AutoConfig.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - any loader failure is bad input here
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InputError(f"cannot load the tokenizer ({type(exc).__name__}: {first})",
                         path=str(folder)) from None
    try:
        generation = GenerationConfig.from_pretrained(str(folder))
    except (OSError, ValueError):  # none (or unreadable): from config.json, as transformers
        generation = GenerationConfig.from_model_config(config)
    return tokenizer, config, eos_ids(SimpleNamespace(generation_config=generation), tokenizer)
