"""Hardware intensity presets."""

from __future__ import annotations

import pytest

from kinetics.errors import InputError
from kinetics.hardware import HARDWARE, get_hardware, resolve_intensity


def test_b200_is_the_papers_intensity():
    assert get_hardware("B200").intensity == 562.5


@pytest.mark.parametrize("name, intensity", [("h100", 295.4), ("h200", 206.1), ("a100", 153.0)])
def test_datasheet_intensities(name, intensity):
    assert HARDWARE[name].intensity == pytest.approx(intensity, abs=0.05)


def test_custom_intensity_wins_and_is_validated():
    assert resolve_intensity("h100", 300) == 300.0
    assert resolve_intensity(None, None) == 562.5
    with pytest.raises(InputError):
        resolve_intensity(None, -1)
    with pytest.raises(InputError, match="unknown hardware"):
        resolve_intensity("tpu-v9", None)


@pytest.mark.parametrize("name, peak, precision", [
    ("b200", 4.5e15, "fp8"), ("b200-fp8", 4.5e15, "fp8"), ("b200-bf16", 2.25e15, "bf16"),
    ("h100", 989.5e12, "bf16"), ("h100-fp8", 1979e12, "fp8"), ("h200-fp8", 1979e12, "fp8"),
    ("a100", 312e12, "bf16"),
])
def test_presets_per_precision(name, peak, precision):
    hw = HARDWARE[name]
    assert (hw.peak_flops_per_s, hw.precision) == (peak, precision)
    assert hw.source


def test_fp8_presets_double_the_bf16_peak_over_the_same_bandwidth():
    for gpu in ("b200", "h100", "h200"):
        bf16 = HARDWARE["b200-bf16" if gpu == "b200" else gpu]
        fp8 = HARDWARE[f"{gpu}-fp8"]
        assert fp8.peak_flops_per_s == 2 * bf16.peak_flops_per_s
        assert fp8.memory_bytes_per_s == bf16.memory_bytes_per_s
        assert fp8.intensity == 2 * bf16.intensity
    # the paper's default stays: b200 is the fp8 figure and says so
    assert HARDWARE["b200"].intensity == HARDWARE["b200-fp8"].intensity == 562.5
    assert "paper" in HARDWARE["b200"].source and "FP8" in HARDWARE["b200"].source
