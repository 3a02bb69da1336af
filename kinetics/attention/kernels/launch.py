"""Programmatic dependent launch (PDL) for the Triton kernels (imported lazily: needs triton).

With PDL (Hopper and later) a kernel may be launched while the one before it in the
stream is still running; it must wait (``griddepcontrol.wait``) before it touches
anything that kernel writes or reads. Every kernel here that supports it takes a
``PDL`` constexpr and starts with :func:`pdl_enter`; the host passes
:func:`pdl_launch_options` to the launch. Both are no-ops when PDL is off, and the
kernel before may be any kernel (one that never signals simply finishes first).
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait


@triton.jit
def pdl_enter(PDL: tl.constexpr):
    """Kernel prologue: with ``PDL``, wait until the previous kernel in the stream has
    finished and its writes are visible, then let the next kernel launch (its programs
    wait in their own prologue), so its launch latency overlaps this kernel's work."""
    if PDL:
        gdc_wait()
        gdc_launch_dependents()


def pdl_supported(device=None) -> bool:
    """True on a CUDA device of compute capability 9.0 or newer (PDL needs Hopper)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 9


def pdl_launch_options(enabled: bool) -> dict:
    """Extra keyword arguments of a Triton launch: ``{"launch_pdl": True}`` when enabled."""
    return {"launch_pdl": True} if enabled else {}
