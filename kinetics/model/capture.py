"""Decode steps as CUDA graphs: the layer's step implementations and their capture.

* :func:`layer_step_fn`: ``step(hidden, attend, positions) -> output`` of one
  :class:`~kinetics.model.layer.ShardedDecoderLayer`, as one of :data:`LAYER_IMPLS`.
* :func:`capture_graph`: warm a callable up on a side stream, capture one call.
* :class:`CapturedStep`: a whole step (a layer's, or
  :meth:`kinetics.model.decoder.ShardedDecoderModel.step`, attention and all-reduces
  included) recorded as ONE CUDA graph, replayed on static inputs.

torch imports lazily, so importing this module needs no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kinetics.errors import InputError

# fused: kinetics.model.fused (k/v written into the paged cache by the RoPE kernel);
# reference: the layer's torch forward; fused-kv-separate: fused, the cache writes left
# to the attend; compiled: torch.compile of the reference pieces around attention
LAYER_IMPLS: tuple[str, ...] = ("fused", "reference", "fused-kv-separate", "compiled")


def layer_step_fn(layer, impl: str) -> Callable:
    """``step(hidden, attend, positions) -> output`` of ``layer`` (one of LAYER_IMPLS)."""
    from kinetics.model.fused import fused_layer_step

    if impl == "reference":
        return layer
    if impl in ("fused", "fused-kv-separate"):
        def fused(hidden, attend, positions):
            delta, h = fused_layer_step(layer, None, hidden, attend, positions,
                                        fuse_kv_write=impl == "fused")
            return delta + h
        return fused
    if impl == "compiled":
        import torch

        pre = torch.compile(layer.pre_attention, fullgraph=True, dynamic=False)

        def post(hidden, attn):
            h = hidden + layer.all_reduce(layer.post_attention(attn))
            return h + layer.all_reduce(layer.mlp_partial(h))

        post_c = torch.compile(post, fullgraph=True, dynamic=False)

        def compiled(hidden, attend, positions):
            return post_c(hidden, attend(*pre(hidden, positions)))
        return compiled
    raise InputError(f"unknown layer implementation '{impl}' (choose from "
                     f"{', '.join(LAYER_IMPLS)})")


def capture_graph(fn: Callable[[], Any], warmup: int = 3):
    """Run ``fn`` ``warmup`` times on a side stream (JIT, autotuning, allocations), then
    capture one call in a ``torch.cuda.CUDAGraph`` and return it (``graph.replay()``)."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


class CapturedStep:
    """A decode step recorded as ONE CUDA graph (attention and all-reduces included).

    ``fn(*inputs)`` returns the step's output (tensors, kept static); ``inputs`` are
    static tensors to ``copy_`` new values into before a ``replay()``. Warm-up and
    capture: :func:`capture_graph`. The attends must keep fixed shapes (e.g.
    :class:`kinetics.bench.spec.FixedSlotAttend`).
    """

    def __init__(self, fn: Callable, inputs: Sequence) -> None:
        self.inputs = list(inputs)
        held: list = []
        self.graph = capture_graph(lambda: held.append(fn(*self.inputs)))
        self.output = held[-1]  # the captured call's output: what each replay rewrites
        del held[:-1]

    def replay(self):
        """Run the recorded step; returns its (static, overwritten next time) output."""
        self.graph.replay()
        return self.output
