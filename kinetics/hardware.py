"""Hardware presets and the arithmetic intensity I (FLOPs per byte).

I = peak dense bf16 FLOP/s / memory bandwidth (bytes/s). The Kinetics cost model
prices one byte of memory traffic as I FLOPs: eFLOPs = compute FLOPs + I * bytes.
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
        peak_flops_per_s: dense bf16 peak, FLOP/s.
        memory_bytes_per_s: HBM bandwidth, bytes/s.
        source: where the two numbers come from.
    """

    name: str
    peak_flops_per_s: float
    memory_bytes_per_s: float
    source: str

    @property
    def intensity(self) -> float:
        """FLOPs per byte at which compute time equals memory time."""
        return self.peak_flops_per_s / self.memory_bytes_per_s


# The Kinetics paper and code price a B200 at 4.5 PFLOP/s over 8 TB/s (I = 562.5);
# its plots read costs as "B200 seconds" = eFLOPs / B200_FLOPS_PER_S.
B200_FLOPS_PER_S = 4.5e15
B200_BYTES_PER_S = 8.0e12
B200_INTENSITY = B200_FLOPS_PER_S / B200_BYTES_PER_S  # 562.5 FLOPs per byte

HARDWARE: dict[str, Hardware] = {
    hw.name: hw
    for hw in (
        Hardware("b200", B200_FLOPS_PER_S, B200_BYTES_PER_S,
                 "Kinetics paper (arXiv 2506.05333) and its code"),
        # NVIDIA H100 SXM datasheet: 989.5 TFLOP/s dense bf16, 3.35 TB/s HBM3.
        Hardware("h100", 989.5e12, 3.35e12, "NVIDIA H100 SXM datasheet"),
        # NVIDIA H200 datasheet: 989.5 TFLOP/s dense bf16, 4.8 TB/s HBM3e.
        Hardware("h200", 989.5e12, 4.8e12, "NVIDIA H200 datasheet"),
        # NVIDIA A100 80GB SXM datasheet: 312 TFLOP/s dense bf16, 2.039 TB/s HBM2e.
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
