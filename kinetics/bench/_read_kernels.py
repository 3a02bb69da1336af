"""Triton kernels of the read floors (:mod:`kinetics.bench.floors`; needs triton).

``read_kernel``: every program sums every ``num_programs``-th block of ``BLOCK``
elements of a flat buffer (consecutive programs read consecutive blocks, so the reads
spread over the memory channels) and stores its partial sum: a pure streaming read.
``empty_kernel``: one store per program, the cost of a launch.
"""

import triton
import triton.language as tl


@triton.jit
def read_kernel(x_ptr, out_ptr, n, steps, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(0, steps):
        idx = (i * tl.num_programs(0) + pid).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + idx, mask=idx < n, other=0.0).to(tl.float32)
    tl.store(out_ptr + pid, tl.sum(acc, axis=0))


@triton.jit
def empty_kernel(out_ptr):
    tl.store(out_ptr + tl.program_id(0), 0.0)
