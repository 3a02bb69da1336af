"""Hardware presets and the arithmetic intensity I (FLOPs per byte).

I = peak dense tensor-core FLOP/s at the preset's precision / memory bandwidth
(bytes/s). The Kinetics cost model prices one byte of memory traffic as I FLOPs:
eFLOPs = compute FLOPs + I * bytes, and eFLOPs / peak FLOP/s = compute time + memory
time (the paper's "B200 seconds"). Each GPU has one preset per tensor-core precision
(``h100`` is bf16, ``h100-fp8`` fp8, ...); ``b200``, the default, is the paper's.
The numbers and their sources: docs/cost-model.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kinetics.errors import InputError


@dataclass(frozen=True)
class Hardware:
    """An accelerator's two ceilings.

    Attributes:
        name: preset key.
        peak_flops_per_s: dense (no 2:4 sparsity) tensor-core peak at ``precision``, FLOP/s.
        memory_bytes_per_s: HBM bandwidth, bytes/s.
        source: where the two numbers come from.
        precision: the tensor-core input type of the peak ('bf16', 'fp8').
    """

    name: str
    peak_flops_per_s: float
    memory_bytes_per_s: float
    source: str
    precision: str = "bf16"

    @property
    def intensity(self) -> float:
        """FLOPs per byte at which compute time equals memory time."""
        return self.peak_flops_per_s / self.memory_bytes_per_s


# The Kinetics paper and code price a B200 at 4.5 PFLOP/s over 8 TB/s (I = 562.5);
# its plots read costs as "B200 seconds" = eFLOPs / B200_FLOPS_PER_S. 4.5 PFLOP/s is
# NVIDIA's dense FP8 figure (dense BF16 is half of it): preset "b200" keeps the
# paper's numbers so that reports reproduce it; "b200-bf16" and "b200-fp8" name the
# precision.
B200_FLOPS_PER_S = 4.5e15
B200_BYTES_PER_S = 8.0e12
B200_INTENSITY = B200_FLOPS_PER_S / B200_BYTES_PER_S  # 562.5 FLOPs per byte

# Datasheets list tensor-core peaks with 2:4 sparsity; the dense peaks are half.
HARDWARE: dict[str, Hardware] = {
    hw.name: hw
    for hw in (
        Hardware("b200", B200_FLOPS_PER_S, B200_BYTES_PER_S,
                 "Kinetics paper (arXiv 2506.05333) and its code: NVIDIA's dense FP8 peak "
                 "(= b200-fp8), the paper's default", "fp8"),
        # NVIDIA HGX B200 datasheet, per GPU: 4.5 PFLOP/s BF16 and 9 PFLOP/s FP8 with
        # sparsity (dense: 2.25 and 4.5), 8 TB/s HBM3e.
        Hardware("b200-bf16", 2.25e15, B200_BYTES_PER_S, "NVIDIA HGX B200 datasheet", "bf16"),
        Hardware("b200-fp8", 4.5e15, B200_BYTES_PER_S, "NVIDIA HGX B200 datasheet", "fp8"),
        # NVIDIA H100 SXM datasheet: 989.5 TFLOP/s dense bf16 (1,979 with sparsity),
        # 1,979 dense fp8 (3,958 with sparsity), 3.35 TB/s HBM3.
        Hardware("h100", 989.5e12, 3.35e12, "NVIDIA H100 SXM datasheet"),
        Hardware("h100-fp8", 1979e12, 3.35e12, "NVIDIA H100 SXM datasheet", "fp8"),
        # NVIDIA H200 datasheet: the H100's tensor cores, 4.8 TB/s HBM3e.
        Hardware("h200", 989.5e12, 4.8e12, "NVIDIA H200 datasheet"),
        Hardware("h200-fp8", 1979e12, 4.8e12, "NVIDIA H200 datasheet", "fp8"),
        # NVIDIA A100 80GB SXM datasheet: 312 TFLOP/s dense bf16, 2.039 TB/s HBM2e
        # (no FP8 tensor cores).
        Hardware("a100", 312e12, 2.039e12, "NVIDIA A100 80GB SXM datasheet"),
    )
}

DEFAULT_HARDWARE = "b200"


def get_hardware(name: str) -> Hardware:
    """Return a preset by (case-insensitive) name; InputError names the choices."""
    key = name.lower()
    if key not in HARDWARE:
        raise InputError(f"unknown hardware '{name}' (choose from {', '.join(HARDWARE)})")
    return HARDWARE[key]


def resolve_intensity(hardware: str | None = None, intensity: float | None = None) -> float:
    """The intensity I in FLOPs per byte: a custom value wins over a preset name."""
    if intensity is not None:
        if not (intensity >= 0 and math.isfinite(intensity)):
            raise InputError(f"--intensity must be a finite number >= 0, got {intensity}")
        return float(intensity)
    return get_hardware(hardware or DEFAULT_HARDWARE).intensity
