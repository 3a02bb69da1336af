"""The paged engine's decode step on a GPU: Triton attention, one CUDA graph per batch
bucket.

:class:`GraphedDecode` decodes one token for some of a
:class:`~kinetics.generation.runner.ModelRunner`'s slots (the runner owns it: this module
does not import the runner). The step runs over the first ``bucket`` slots, ``bucket``
the smallest of
:func:`bucket_sizes` that holds every slot asked for (the scheduler hands out the lowest
free slot, so running samples gather at the front); the other slots of the bucket ride
along inactive: their new token goes to a spare page no sample owns, their lengths and
page means stay as they are, and their logits are dropped. Inside the graph, per step:

    positions = seq_lens * active;  seq_lens += active      # device-side bookkeeping
    logits = model(tokens, positions)                       # every layer:
        cache.write_step(positions, active, spare, k, v)    #   K/V + page mean, no sync
        decode(q)                                           #   Triton, reads the table

with ``decode`` the configuration's GPU kernel: :class:`~kinetics.attention.decode.
TritonPagedDecode` (dense) or :class:`~kinetics.attention.decode.FusedBlockTopkDecode`
(block top-k; any number of pages per request). Both read the page table and lengths
on the device when they run, so a graph recorded once serves every later step: the host
copies the step's tokens and active mask in (one transfer), replays, and samples from
the bucket's logits. Every bucket's graph is recorded when the runner is built
(:meth:`GraphedDecode.record_all`), with every row inactive: recording touches nothing
the engine holds, so a bucket could as well be recorded mid-run.

Token top-k (an oracle with no GPU kernel) is not graphed: the runner keeps the torch
reference for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kinetics.generation.attention import DecodeAttention

if TYPE_CHECKING:
    import torch


GRAPHED_METHODS = ("dense", "blocktopk")


def bucket_sizes(slots: int) -> tuple[int, ...]:
    """Batch buckets of an engine of ``slots`` slots: the powers of two below it, and it."""
    sizes, b = [], 1
    while b < slots:
        sizes.append(b)
        b *= 2
    return (*sizes, slots)


def graphable(attention: DecodeAttention, device: torch.device, head_dim: int) -> bool:
    """Whether :class:`GraphedDecode` runs ``attention`` on ``device`` for heads of
    ``head_dim``: CUDA with triton, dense or block top-k, and a head_dim the Triton
    kernels take (a power of two >= 16; others keep the torch reference)."""
    from kinetics.attention.decode import triton_head_dim
    from kinetics.model.fused import triton_available

    return (device.type == "cuda" and triton_available() and triton_head_dim(head_dim)
            and attention.method in GRAPHED_METHODS)


def build_decoder(attention: DecodeAttention, cache, num_q_heads: int):
    """The GPU decode kernel of ``attention`` over ``cache`` (``decoder(q, out)``)."""
    from kinetics.attention.decode import FusedBlockTopkDecode, TritonPagedDecode

    if attention.method == "dense":
        return TritonPagedDecode(cache, num_q_heads)
    return FusedBlockTopkDecode(cache, num_q_heads, attention.topk_pages, attention.local_pages)


class _Bucket:
    """The recorded step of the first ``size`` slots: its graph and static output."""

    def __init__(self, owner: GraphedDecode, size: int) -> None:
        import torch

        from kinetics.model.capture import capture_graph

        runner = owner.runner
        self.size, model = size, runner.model
        layer = model.layers[0]
        device = runner.device
        self.lengths = torch.ones(size, dtype=torch.int64, device=device)
        self.table = runner.page_table[:size].clone()
        self.views = [cache.prefix_view(size, self.lengths, self.table)
                      for cache in runner.caches]
        self.decoders = [build_decoder(runner.attention, view, layer.local_q_heads)
                         for view in self.views]
        self.out = torch.empty(size, layer.local_q_heads, layer.head_dim, dtype=model.dtype,
                               device=device)
        self.logits: torch.Tensor | None = None
        self.keeps_means = runner.keeps_means
        inputs = owner.inputs

        def step() -> None:
            tokens, active = inputs[0, :size], inputs[1, :size] != 0
            lens = runner.seq_lens[:size]
            positions = lens * inputs[1, :size]
            lens.add_(inputs[1, :size])
            # an inactive row reads one token of the spare page
            self.lengths.copy_(torch.where(active, lens, 1))
            self.table.copy_(torch.where(active[:, None], runner.page_table[:size],
                                         owner.spare_page))
            attends = [self._attend(view, decoder, positions, active, owner.spare_page)
                       for view, decoder in zip(self.views, self.decoders, strict=True)]
            self.logits = model.local_logits(tokens, attends, positions, runner.impl)

        self.step = step
        self.graph = None
        if device.type == "cuda":
            inputs.zero_()  # recorded (and warmed up) with every row inactive
            self.graph = capture_graph(step, warmup=2)

    def replay(self) -> None:
        """Run the step on the current inputs (its graph; eagerly where none was recorded:
        on the CPU under Triton's interpreter, for tests)."""
        if self.graph is None:
            self.step()
        else:
            self.graph.replay()

    def close(self) -> None:
        """Drop the graph, the step (a closure over this object) and the kernels."""
        self.graph = self.step = None
        self.views, self.decoders = [], []

    def _attend(self, view, decoder, positions, active, spare_page: int):
        def attend(q, k, v):
            view.write_step(positions, active, spare_page, k, v, means=self.keeps_means)
            return decoder(q.contiguous(), self.out)
        return attend


class GraphedDecode:
    """Decode steps of ``runner`` (a :class:`~kinetics.generation.runner.ModelRunner`) as CUDA graphs
    per batch bucket (see the module docstring). The runner's pool must hold
    ``spare_page``, a page the scheduler never hands out. On the CPU (Triton's
    interpreter) the same step runs eagerly, unrecorded."""

    def __init__(self, runner, spare_page: int) -> None:
        import torch

        self.runner, self.spare_page = runner, spare_page
        self.buckets = bucket_sizes(runner.slots)
        self.inputs = torch.zeros(2, runner.slots, dtype=torch.int64, device=runner.device)
        self._staging = torch.zeros(2, runner.slots, dtype=torch.int64,
                                    pin_memory=runner.device.type == "cuda")
        self._graphs: dict[int, _Bucket] = {}

    def recorded(self, size: int) -> _Bucket:
        """The step of bucket ``size`` (recorded on first use); ``replay()`` runs it on the
        inputs of the last call."""
        if size not in self.buckets:
            raise ValueError(f"no bucket of {size} slots (buckets: {self.buckets})")
        if size not in self._graphs:
            self._graphs[size] = _Bucket(self, size)
        return self._graphs[size]

    def close(self) -> None:
        """Drop every recorded step (each refers back to itself, this object and the
        runner: without this only a garbage collection frees their memory)."""
        for recorded in self._graphs.values():
            recorded.close()
        self._graphs.clear()

    def record_all(self) -> None:
        """Record every bucket's step now (each compiles its kernels and is captured)."""
        for size in self.buckets:
            self.recorded(size)

    def bucket(self, slots: Sequence[int]) -> int:
        """The smallest bucket holding every one of ``slots``."""
        need = max(slots) + 1
        return next(b for b in self.buckets if b >= need)

    def __call__(self, slots: Sequence[int], tokens: Sequence[int]) -> torch.Tensor:
        """Feed ``tokens[i]`` to slot ``slots[i]``; this rank's logits ``[len(slots),
        vocab / tp]`` (the model's dtype)."""
        import torch

        recorded = self.recorded(self.bucket(slots))
        staging = self._staging
        staging.zero_()
        index = torch.tensor(list(slots), dtype=torch.int64)
        staging[0, index] = torch.tensor(list(tokens), dtype=torch.int64)
        staging[1, index] = 1
        self.inputs.copy_(staging)  # blocking: the staging buffer is reused next step
        recorded.replay()
        return recorded.logits[index.to(self.runner.device)]
