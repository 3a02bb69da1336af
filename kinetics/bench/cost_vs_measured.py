"""The Kinetics cost model's predicted decode-step time beside the measured time.

For one measured cell (a decoder-layer shard or a whole model, dense or block top-k,
``batch_size`` requests each holding ``context`` cached tokens), :func:`step_cost` prices
one decode step with :mod:`kinetics.cost` (the same functions the analysis uses):
compute FLOPs (2 x active parameters per token plus attention and block scoring) and
memory bytes (KV, block representatives, and the weights once per step). The
predicted time is ``FLOPs / peak FLOP/s + bytes / bandwidth`` (the eFLOPs sum, over
the peak), once with the hardware preset's bandwidth and once with the device-to-
device copy bandwidth measured in the same run. :func:`speedups` pairs dense and
block top-k cells to compare predicted and measured speedups: whether eFLOPs rank
configurations the way the hardware does.

Per-rank shapes: a layer cell at ``tp`` is one rank's shard (heads, KV heads and MLP
width divided by ``tp``, KV heads at least 1); a model cell adds all layers, the
embedding and the vocabulary-parallel LM head (both counted as ``vocab / tp`` rows,
the cost model's convention). Block top-k uses ``topk_pages`` pages of ``page_size``
tokens (``budget = topk_pages * page_size``) and scores one representative per page.

Pure functions over numbers (no torch): the GPU measurements come in as floats.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kinetics.cost import AttentionConfig, query_cost
from kinetics.errors import InputError
from kinetics.hardware import Hardware, get_hardware
from kinetics.models import ModelSpec, get_model

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCOPES: tuple[str, ...] = ("layer", "model")
# block top-k methods of the records (kinetics.bench.spec.METHODS; records of earlier
# runs also hold "blocktopk-triton", the same selection with Triton attention)
BLOCKTOPK_METHODS: tuple[str, ...] = ("blocktopk", "blocktopk-triton")


@dataclass(frozen=True)
class StepCell:
    """One measured decode step (per GPU).

    Attributes:
        label: a short name for tables and plots.
        model: preset name.
        method: 'dense', or a block top-k method ('blocktopk', 'blocktopk-triton').
        scope: 'layer' (one layer shard) or 'model' (all layers, embedding, LM head).
        batch_size, context: requests, and tokens cached per request.
        tp: tensor-parallel degree (per-rank shard).
        measured_ms: measured time of one step, ms.
        page_size, topk_pages: block top-k settings (pages of tokens).
    """

    label: str
    model: str
    method: str
    scope: str
    batch_size: int
    context: int
    tp: int
    measured_ms: float
    page_size: int = 16
    topk_pages: int = 64


@dataclass(frozen=True)
class CostPrediction:
    """A cell with its cost-model price and predicted times.

    Attributes:
        cell: the measured cell.
        compute_flops, memory_bytes: the cost model's FLOPs and bytes of one step.
        predicted_ms_preset: FLOPs / preset peak + bytes / preset bandwidth, ms.
        predicted_ms_copy: FLOPs / preset peak + bytes / measured copy bandwidth, ms.
    """

    cell: StepCell
    compute_flops: float
    memory_bytes: float
    predicted_ms_preset: float
    predicted_ms_copy: float

    @property
    def measured_over_predicted(self) -> float:
        """Measured / predicted (copy bandwidth): 1 = at the model's floor."""
        return self.cell.measured_ms / self.predicted_ms_copy


@dataclass(frozen=True)
class SpeedupComparison:
    """Dense vs block top-k of one configuration (cells whose labels differ only in the
    method name): predicted and measured speedups."""

    dense: CostPrediction
    blocktopk: CostPrediction

    @property
    def measured(self) -> float:
        return self.dense.cell.measured_ms / self.blocktopk.cell.measured_ms

    @property
    def predicted(self) -> float:
        """Predicted speedup with the measured copy bandwidth."""
        return self.dense.predicted_ms_copy / self.blocktopk.predicted_ms_copy

    @property
    def predicted_eflops(self) -> float:
        """Speedup the eFLOPs of the hardware preset predict."""
        return self.dense.predicted_ms_preset / self.blocktopk.predicted_ms_preset


def rank_spec(model: ModelSpec, tp: int, scope: str) -> ModelSpec:
    """The per-rank model the cost model prices: heads, widths (and vocab) / tp."""
    if scope not in SCOPES:
        raise InputError(f"unknown scope '{scope}' (choose from {', '.join(SCOPES)})")
    if model.is_moe:
        raise InputError(f"{model.name}: the GPU comparison covers dense models only")
    if tp < 1 or model.num_q_heads % tp or model.intermediate_size % tp:
        raise InputError(f"{model.name}: heads / MLP width do not divide by tp {tp}")
    return replace(model, num_layers=1 if scope == "layer" else model.num_layers,
                   num_q_heads=model.num_q_heads // tp,
                   num_kv_heads=max(1, model.num_kv_heads // tp),
                   intermediate_size=model.intermediate_size // tp,
                   vocab_size=0 if scope == "layer" else model.vocab_size // tp,
                   published_params=None)


def attention_config(cell: StepCell) -> AttentionConfig:
    """The cost model's attention config of a cell's method."""
    if cell.method == "dense":
        return AttentionConfig.dense()
    if cell.method in BLOCKTOPK_METHODS:
        return AttentionConfig.blocktopk(cell.page_size, topk_blocks=cell.topk_pages)
    raise InputError(f"unknown method '{cell.method}' (choose from dense, "
                     f"{', '.join(BLOCKTOPK_METHODS)})")


def step_cost(cell: StepCell) -> tuple[float, float]:
    """(compute FLOPs, memory bytes) of one decode step of ``cell`` on one rank.

    Each request holds its own cache (no prompt sharing): the step is ``batch_size``
    single-sample queries whose token attends ``context`` tokens, plus the weights
    read once for the batch (``query_cost`` with ``batch_size``).
    """
    spec = rank_spec(get_model(cell.model), cell.tp, cell.scope)
    if cell.batch_size < 1 or cell.context < 1:
        raise InputError("batch_size and context must be >= 1")
    cost = query_cost(spec, attention_config(cell), cell.context - 1, 1, 1, cell.batch_size)
    return (float(cost.compute_flops) * cell.batch_size,
            float(cost.memory_bytes) * cell.batch_size)


def predict(cell: StepCell, hardware: Hardware, copy_bytes_per_s: float) -> CostPrediction:
    """Price ``cell`` and predict its time with the preset's and the measured bandwidth."""
    if not copy_bytes_per_s > 0:
        raise InputError(f"copy bandwidth must be positive, got {copy_bytes_per_s}")
    flops, nbytes = step_cost(cell)
    compute_s = flops / hardware.peak_flops_per_s
    return CostPrediction(cell, flops, nbytes,
                          1e3 * (compute_s + nbytes / hardware.memory_bytes_per_s),
                          1e3 * (compute_s + nbytes / copy_bytes_per_s))


def hardware_for_device(device_name: str) -> Hardware:
    """The preset of a CUDA device name ('NVIDIA H200' -> h200); InputError if none fits."""
    for key in ("h200", "h100", "a100", "b200"):
        if key in device_name.lower():
            return get_hardware(key)
    raise InputError(f"no hardware preset for device '{device_name}'")


def speedups(predictions: list[CostPrediction]) -> list[SpeedupComparison]:
    """Pair each block top-k cell with the dense cell of the same configuration."""
    def key(p: CostPrediction):
        c = p.cell
        return (c.model, c.scope, c.batch_size, c.context, c.tp,
                c.label.replace(c.method, ""))

    dense = {key(p): p for p in predictions if p.cell.method == "dense"}
    return [SpeedupComparison(dense[key(p)], p) for p in predictions
            if p.cell.method in BLOCKTOPK_METHODS and key(p) in dense]


def format_predictions(predictions: list[CostPrediction]) -> str:
    """A plain-text table: cell, FLOPs, bytes, predicted and measured ms, speedups."""
    lines = [f"{'cell':<34} {'GFLOP':>8} {'MB':>9} {'pred ms':>9} {'pred(copy)':>10} "
             f"{'measured':>9} {'meas/pred':>9}"]
    for p in predictions:
        lines.append(f"{p.cell.label:<34} {p.compute_flops / 1e9:>8.2f} "
                     f"{p.memory_bytes / 1e6:>9.1f} {p.predicted_ms_preset:>9.4f} "
                     f"{p.predicted_ms_copy:>10.4f} {p.cell.measured_ms:>9.4f} "
                     f"{p.measured_over_predicted:>9.2f}")
    for s in speedups(predictions):
        lines.append(f"speedup {s.blocktopk.cell.label}: measured {s.measured:.2f}x, "
                     f"predicted {s.predicted:.2f}x (eFLOPs preset {s.predicted_eflops:.2f}x)")
    return "\n".join(lines)


def predictions_figure(predictions: list[CostPrediction], title: str = "") -> Figure:
    """Predicted (copy bandwidth) vs measured ms, log-log, with the y = x line (a
    ``matplotlib.figure.Figure``, no pyplot state; the caller saves it)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    for method, marker in (("dense", "o"), ("blocktopk", "s"), ("blocktopk-triton", "^")):
        pts = [p for p in predictions if p.cell.method == method]
        ax.scatter([p.predicted_ms_copy for p in pts], [p.cell.measured_ms for p in pts],
                   marker=marker, label=method)
        for p in pts:
            ax.annotate(p.cell.label, (p.predicted_ms_copy, p.cell.measured_ms), fontsize=6)
    values = [v for p in predictions for v in (p.predicted_ms_copy, p.cell.measured_ms)]
    lo, hi = min(values) / 1.5, max(values) * 1.5
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="measured = predicted")
    ax.set(xscale="log", yscale="log", xlabel="predicted ms (cost model, measured copy BW)",
           ylabel="measured ms", title=title or "Kinetics cost model vs GPU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
