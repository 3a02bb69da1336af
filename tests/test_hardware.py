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
