"""kinetics: test-time scaling cost analysis with sparse attention.

Built from "Kinetics: Rethinking Test-Time Scaling Laws" (Sadhukhan et al., 2025;
arXiv 2506.05333). The core is pure numpy/pandas; GPU code (torch, triton,
flashinfer) is imported lazily by ``kinetics.attention`` and ``kinetics.bench``.
"""

from kinetics.cost import AttentionConfig, Cost, query_cost, sample_cost, shared_cost
from kinetics.hardware import HARDWARE, Hardware, get_hardware, resolve_intensity
from kinetics.models import MODELS, ModelSpec, get_model, load_model_config

__version__ = "0.1.0"

__all__ = [
    "AttentionConfig", "Cost", "query_cost", "sample_cost", "shared_cost",
    "HARDWARE", "Hardware", "get_hardware", "resolve_intensity",
    "MODELS", "ModelSpec", "get_model", "load_model_config", "__version__",
]
