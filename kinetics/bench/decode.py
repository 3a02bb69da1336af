"""GPU decode benchmark: dense vs block top-k attention (optionally inside one decoder layer).

The setup follows the paper's benchmark: one decoder layer of a model sharded n-way
tensor parallel, simulated on one GPU (this rank's heads: ``num_q_heads / tp`` query
heads, ``num_kv_heads / tp`` KV heads, at least 1), a batch of requests each holding
``context`` tokens in a paged bf16 KV cache (random pages, standard-normal K/V), one
new query token per request per step.

Timing: every step is captured in a CUDA graph that cycles through ``replicas``
independent caches and queries (so the block top-k working set, ~48 MB per replica
at the standard size, is not served from the 50 MB L2), after eager warm-up runs
(JIT, autotuning); each graph replay is timed with CUDA events and the result is the
median over ``repeats`` replays divided by the steps in the graph. A device-to-device
copy of 1 GiB is timed in the same run (bytes read + written) and achieved bandwidth
is reported as a fraction of it.

Bytes counted (the fewest a step must move): dense reads all K and V of the context;
block top-k reads the page means of the candidate pages (selection) plus K and V of
the ``topk_pages`` selected pages; both read q and write the output; the layer mode
adds the layer's weights.

Public API (also for asv GPU benchmarks): :func:`gpu_available`,
:func:`measure_decode`, :func:`compare_decode`, :func:`run_gate`.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kinetics.errors import InputError
from kinetics.jsonfile import read_json_object
from kinetics.models import ModelSpec, get_model

BENCH_METHODS: tuple[str, ...] = ("dense", "blocktopk", "blocktopk-triton")
# dense: flashinfer paged decode. blocktopk: Triton selection + flashinfer paged decode
# over the selected pages. blocktopk-triton: the same selection + our Triton split-KV
# decode over the selected pages (kinetics.attention._triton_decode).
TRITON_ATTENTION = {"attention": "triton", "splits": 4, "tile_pages": 4}
SPEEDUP_KEYS = {"blocktopk": "speedup", "blocktopk-triton": "speedup_triton"}
FLOOR_KEYS = {"speedup": "min_speedup", "speedup_triton": "min_speedup_triton"}
REL_TOL = 1e-2  # bf16 GPU output vs float32 reference, ||out - ref|| / ||ref||


def gpu_available() -> tuple[bool, str]:
    """(True, device name) if a CUDA GPU, triton and flashinfer are usable, else (False, why)."""
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU is visible to torch"
    for module in ("triton", "flashinfer"):
        if importlib.util.find_spec(module) is None:
            return False, f"{module} is not installed"
    return True, torch.cuda.get_device_name()


def local_heads(model: ModelSpec, tp: int) -> tuple[int, int]:
    """(query heads, KV heads) one rank of ``tp``-way tensor parallelism holds.

    KV heads are split when ``tp`` divides them and replicated (1 per rank) when they
    divide ``tp``, as in vLLM/SGLang. Raises InputError otherwise.
    """
    if tp < 1:
        raise InputError(f"--tp must be >= 1, got {tp}")
    q, kv = model.num_q_heads, model.num_kv_heads
    if q % tp:
        raise InputError(f"{model.name}: {q} query heads do not divide by tp {tp}")
    if kv % tp == 0:
        return q // tp, kv // tp
    if tp % kv == 0:
        return q // tp, 1
    raise InputError(f"{model.name}: {kv} KV heads neither divide by tp {tp} nor divide it")


@dataclass
class BenchConfig:
    """One benchmark configuration (sizes in tokens, pages and requests)."""

    model: str = "qwen3-8b"
    context: int = 16384
    batch_size: int = 64
    page_size: int = 16
    topk_pages: int = 64
    tp: int = 8
    attention_only: bool = True
    local_pages: int = 1
    replicas: int = 4
    repeats: int = 100
    use_tensor_cores: bool = False
    seed: int = 0

    def validate(self) -> ModelSpec:
        """Check the sizes; returns the model spec (InputError on bad input)."""
        model = get_model(self.model)
        if self.context < 1 or self.batch_size < 1:
            raise InputError("--context and --batch-size must be >= 1")
        if self.page_size < 1 or self.page_size & (self.page_size - 1):
            raise InputError(f"--page-size must be a power of two, got {self.page_size}")
        pages = -(-self.context // self.page_size)
        if not 1 <= self.local_pages <= self.topk_pages <= pages:
            raise InputError(f"need 1 <= local pages ({self.local_pages}) <= --topk-pages "
                             f"({self.topk_pages}) <= pages of the context ({pages})")
        if self.replicas < 1 or self.repeats < 1:
            raise InputError("replicas and repeats must be >= 1")
        local_heads(model, self.tp)
        return model


@dataclass
class _Bytes:
    kv: float = 0.0
    selection: float = 0.0
    io: float = 0.0
    weights: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.kv + self.selection + self.io + self.weights


def _step_bytes(cfg: BenchConfig, hq: int, hkv: int, d: int, method: str, weight_bytes: float,
                elem: int = 2) -> _Bytes:
    """Fewest bytes one decode step moves through device memory."""
    b = cfg.batch_size
    io = 2 * b * hq * d * elem  # q in, out
    if method == "dense":
        kv = 2 * b * hkv * cfg.context * d * elem
        return _Bytes(kv=kv, io=io, weights=weight_bytes)
    pages = -(-cfg.context // cfg.page_size)
    kv = 2 * b * hkv * cfg.topk_pages * cfg.page_size * d * elem
    sel = b * hkv * (pages - cfg.local_pages) * (d * elem + 4)  # page means + table
    return _Bytes(kv=kv, selection=sel, io=io, weights=weight_bytes)


def copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth, GB/s (bytes read + written), median of repeats."""
    import torch

    src = torch.randn(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    del src, dst
    return 2 * nbytes / (statistics.median(times) * 1e-3) / 1e9


def _time_graph(fn, steps: int, repeats: int, warmup: int = 10) -> dict[str, float]:
    """Capture ``fn`` (``steps`` decode steps) in a CUDA graph; ms per step over replays."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    for _ in range(warmup):
        graph.replay()
    events = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    per_step = sorted(s.elapsed_time(e) / steps for s, e in events)
    del graph
    return {"ms": statistics.median(per_step), "ms_min": per_step[0],
            "ms_p90": per_step[int(0.9 * (len(per_step) - 1))]}


def _rel_err(out, ref) -> float:
    import torch

    out, ref = out.to(torch.float32), ref.to(torch.float32)
    return float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref))


def _check_selection(q, cache, decoder, cfg: BenchConfig) -> dict[str, Any]:
    """Kernel selection vs torch.topk on the reference scores, ties within tolerance."""
    import torch

    from kinetics.attention import reference

    got = decoder.selected_page_mask()
    want = reference.select_pages(q, cache, cfg.topk_pages, cfg.local_pages)
    same = (got == want).all(dim=-1)
    scores = reference.page_scores(q, cache)  # [B, H, P]
    n = cache.num_request_pages()
    pos = torch.arange(scores.shape[-1], device=scores.device)
    local = pos[None, :] >= (n[:, None] - cfg.local_pages)
    cand = scores.masked_fill(local[:, None, :], float("-inf"))
    m = cfg.topk_pages - cfg.local_pages
    ok = bool((got.sum(-1) == cfg.topk_pages).all()) and bool((got & local[:, None, :]).sum(-1)
                                                             .eq(cfg.local_pages).all())
    if m > 0:
        kth = cand.topk(m, dim=-1).values[..., -1:]  # m-th best candidate score
        tol = 1e-3 * cand.masked_fill(~torch.isfinite(cand), 0).abs().amax(-1, keepdim=True)
        chosen = cand.masked_fill(~got | local[:, None, :], float("inf"))
        ok = ok and bool((chosen >= kth - tol - 1e-6).all())
    return {"selection_identical_fraction": float(same.float().mean()),
            "selection_ok": ok}


def _triton_attention_options(cfg: BenchConfig) -> dict[str, Any]:
    """Triton-attention options for ``cfg`` (fewer splits/pages per tile if k needs it)."""
    opts = dict(TRITON_ATTENTION)
    k = cfg.topk_pages
    opts["splits"] = next(s for s in (4, 2, 1) if k % s == 0)
    opts["tile_pages"] = next(t for t in (4, 2, 1) if (k // opts["splits"]) % t == 0)
    return opts


def make_decoder(method: str, cache, num_q_heads: int, cfg: BenchConfig):
    """The decoder ``method`` times on ``cache`` (one of :data:`BENCH_METHODS`)."""
    from kinetics.attention.decode import FlashinferBlockTopkDecode, FlashinferDenseDecode

    if method == "dense":
        return FlashinferDenseDecode(cache, num_q_heads, cfg.use_tensor_cores)
    extra = _triton_attention_options(cfg) if method == "blocktopk-triton" else {}
    return FlashinferBlockTopkDecode(cache, num_q_heads, cfg.topk_pages, cfg.local_pages,
                                     cfg.use_tensor_cores, **extra)


def compare_decode(cfg: BenchConfig, methods: tuple[str, ...] = BENCH_METHODS,
                   check: bool = True, copy_gbps: float | None = None) -> dict[str, Any]:
    """Time ``methods`` on the same caches in one run; returns every number as a dict.

    Keys: ``device``, ``date``, ``config``, ``copy_gbps``, ``methods`` (per method:
    ``ms_per_step``, ``tokens_per_s``, ``bytes_per_step``, ``gbytes_per_s``,
    ``fraction_of_copy``; block top-k adds ``selection_ms`` and ``sparse_attention_ms``),
    ``speedup`` (dense ms / block top-k ms, when both ran; ``speedup_triton``
    likewise for ``blocktopk-triton``), ``roofline_speedup`` (byte ratio), ``checks`` (relative errors vs the float32 reference and pass flags) and
    ``checks_passed``. Needs a CUDA GPU with triton and flashinfer.
    """
    import torch

    from kinetics.attention import reference
    from kinetics.attention.cache import PagedKVCache

    model = cfg.validate()
    for method in methods:
        if method not in BENCH_METHODS:
            raise InputError(f"unknown method {method!r} (choose from {', '.join(BENCH_METHODS)})")
    ok, why = gpu_available()
    if not ok:
        raise InputError(f"no GPU benchmark possible: {why}")
    hq, hkv = local_heads(model, cfg.tp)
    d = model.head_dim
    dtype = torch.bfloat16
    gen = torch.Generator(device="cuda").manual_seed(cfg.seed)
    if copy_gbps is None:
        copy_gbps = copy_bandwidth()

    caches, queries, outs = [], [], []
    for i in range(cfg.replicas):
        caches.append(PagedKVCache.random(cfg.batch_size, hkv, d, cfg.context,
                                          page_size=cfg.page_size, dtype=dtype, device="cuda",
                                          seed=cfg.seed + i, generator=gen))
        queries.append(torch.randn((cfg.batch_size, hq, d), dtype=dtype, device="cuda",
                                   generator=gen))
        outs.append(torch.empty((cfg.batch_size, hq, d), dtype=dtype, device="cuda"))

    layer = None
    weight_bytes = 0.0
    hiddens: list = []
    positions = None
    if not cfg.attention_only:
        try:
            from kinetics.model.layer import ShardedDecoderLayer
        except ImportError as exc:
            raise InputError("the decoder-layer mode needs kinetics.model.layer "
                             f"({exc}); use --attention-only") from None
        layer = ShardedDecoderLayer(model, tp_size=cfg.tp, tp_rank=0, dtype=dtype,
                                    device="cuda", seed=cfg.seed)
        if (layer.local_q_heads, layer.local_kv_heads) != (hq, hkv):
            raise InputError(f"layer shards {layer.local_q_heads}/{layer.local_kv_heads} heads, "
                             f"the benchmark expected {hq}/{hkv}")
        weight_bytes = float(sum(p.numel() * p.element_size() for p in layer.parameters()))
        hiddens = [torch.randn((cfg.batch_size, model.hidden_size), dtype=dtype, device="cuda",
                               generator=gen) for _ in range(cfg.replicas)]
        positions = torch.full((cfg.batch_size,), cfg.context - 1, dtype=torch.int64,
                               device="cuda")

    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "config": asdict(cfg),
        "local_q_heads": hq, "local_kv_heads": hkv, "head_dim": d,
        "copy_gbps": copy_gbps,
        "methods": {},
        "checks": {},
    }
    rounds = 2
    steps = rounds * cfg.replicas

    for method in methods:
        decoders = [make_decoder(method, c, hq, cfg) for c in caches]

        if check:  # poisoned output, one eager step on replica 0, vs the float32 reference
            q0, c0, o0 = queries[0], caches[0], outs[0]
            o0.fill_(float("nan"))
            decoders[0](q0, o0)
            torch.cuda.synchronize()
            checks: dict[str, Any] = {"all_written": bool(torch.isfinite(o0).all())}
            if method == "dense":
                ref = reference.dense_decode(q0, c0)
            else:
                ref = reference.blocktopk_decode(q0, c0, cfg.topk_pages, cfg.local_pages,
                                                 page_mask=decoders[0].selected_page_mask())
                checks.update(_check_selection(q0, c0, decoders[0], cfg))
            checks["rel_err"] = _rel_err(o0, ref)
            checks["passed"] = (checks["all_written"] and checks["rel_err"] < REL_TOL
                                and checks.get("selection_ok", True))
            result["checks"][method] = checks
            del ref

        def make_step(decs, only: str | None = None):
            def attend_fn(i):
                cache, dec = caches[i], decs[i]
                last_page = cache.page_table[:, (cfg.context - 1) // cfg.page_size].long()
                slot = (cfg.context - 1) % cfg.page_size

                def attend(q, k, v):
                    # write the new token over the last slot: sizes stay fixed across steps
                    cache.k_pages[last_page, :, slot] = k
                    cache.v_pages[last_page, :, slot] = v
                    return dec(q.contiguous(), outs[i])
                return attend

            attends = [attend_fn(i) for i in range(cfg.replicas)] if layer is not None else None

            def step():
                for _ in range(rounds):
                    for i in range(cfg.replicas):
                        if layer is not None:
                            layer(hiddens[i], attends[i], positions)
                        elif only == "select":
                            decs[i].select(queries[i])
                        elif only == "attend":
                            decs[i].attend(queries[i], outs[i])
                        else:
                            decs[i](queries[i], outs[i])
            return step

        timing = _time_graph(make_step(decoders), steps, cfg.repeats)
        nbytes = _step_bytes(cfg, hq, hkv, d, method, weight_bytes)
        ms = timing["ms"]
        entry = {
            "ms_per_step": ms, "ms_min": timing["ms_min"], "ms_p90": timing["ms_p90"],
            "tokens_per_s": cfg.batch_size / (ms * 1e-3),
            "bytes_per_step": nbytes.total,
            "gbytes_per_s": nbytes.total / (ms * 1e-3) / 1e9,
        }
        entry["fraction_of_copy"] = entry["gbytes_per_s"] / copy_gbps
        if method != "dense" and layer is None:
            sel = _time_graph(make_step(decoders, "select"), steps, cfg.repeats)
            att = _time_graph(make_step(decoders, "attend"), steps, cfg.repeats)
            entry["selection_ms"] = sel["ms"]
            entry["sparse_attention_ms"] = att["ms"]
            entry["selection_gbytes_per_s"] = nbytes.selection / (sel["ms"] * 1e-3) / 1e9
            entry["sparse_attention_gbytes_per_s"] = ((nbytes.kv + nbytes.io)
                                                      / (att["ms"] * 1e-3) / 1e9)
        result["methods"][method] = entry
        del decoders
        torch.cuda.synchronize()

    if "dense" in result["methods"]:
        dense = result["methods"]["dense"]
        for name, key in SPEEDUP_KEYS.items():
            if name in result["methods"]:
                sparse = result["methods"][name]
                result[key] = dense["ms_per_step"] / sparse["ms_per_step"]
                result["roofline_speedup"] = dense["bytes_per_step"] / sparse["bytes_per_step"]
    result["checks_passed"] = all(c["passed"] for c in result["checks"].values())
    return result


def measure_decode(model: str = "qwen3-8b", method: str = "blocktopk", context: int = 16384,
                   batch_size: int = 64, page_size: int = 16, topk_pages: int = 64, tp: int = 8,
                   attention_only: bool = True, **options: Any) -> dict[str, Any]:
    """Time one method; returns ``ms_per_step`` (ms), ``tokens_per_s`` (tokens/s),
    ``gbytes_per_s`` (GB/s, 1e9 bytes), ``fraction_of_copy`` (of the measured copy
    bandwidth), ``bytes_per_step`` (bytes) and, for block top-k attention-only,
    ``selection_ms``/``sparse_attention_ms``; plus ``device`` and ``copy_gbps``.
    ``options`` go to :class:`BenchConfig` (replicas, repeats, local_pages, ...)."""
    cfg = BenchConfig(model=model, context=context, batch_size=batch_size, page_size=page_size,
                      topk_pages=topk_pages, tp=tp, attention_only=attention_only, **options)
    full = compare_decode(cfg, (method,), check=False)
    return {**full["methods"][method], "device": full["device"], "copy_gbps": full["copy_gbps"]}


def format_table(result: dict[str, Any]) -> str:
    """A short plain-text table of a :func:`compare_decode` result."""
    cfg = result["config"]
    lines = [
        f"{result['device']}  {result['date']}  copy {result['copy_gbps']:.0f} GB/s",
        f"{cfg['model']} tp{cfg['tp']} ({result['local_q_heads']} q / {result['local_kv_heads']} "
        f"kv heads, d {result['head_dim']})  context {cfg['context']}  batch {cfg['batch_size']}"
        f"  {cfg['topk_pages']} pages of {cfg['page_size']}  "
        f"{'attention only' if cfg['attention_only'] else 'decoder layer'}",
        f"{'method':<16} {'ms/step':>9} {'tokens/s':>11} {'GB/s':>8} {'of copy':>8}"
        f" {'select ms':>10} {'attn ms':>8} {'rel err':>9} {'check':>6}",
    ]
    for name, m in result["methods"].items():
        chk = result["checks"].get(name, {})
        sel = f"{m['selection_ms']:.4f}" if "selection_ms" in m else "-"
        att = f"{m['sparse_attention_ms']:.4f}" if "sparse_attention_ms" in m else "-"
        err = f"{chk['rel_err']:.2e}" if "rel_err" in chk else "-"
        passed = "-" if not chk else ("ok" if chk["passed"] else "FAIL")
        lines.append(f"{name:<16} {m['ms_per_step']:>9.4f} {m['tokens_per_s']:>11.0f} "
                     f"{m['gbytes_per_s']:>8.0f} {100 * m['fraction_of_copy']:>7.1f}% "
                     f"{sel:>10} {att:>8} {err:>9} {passed:>6}")
    if "speedup" in result:
        lines.append(f"speedup blocktopk (flashinfer attention) over dense: "
                     f"{result['speedup']:.2f}x (byte roofline {result['roofline_speedup']:.2f}x)")
    if "speedup_triton" in result:
        lines.append(f"speedup blocktopk-triton (Triton attention) over dense: "
                     f"{result['speedup_triton']:.2f}x")
    return "\n".join(lines)


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read a GPU gate baseline (InputError naming the file and field on problems)."""
    path = Path(path)
    data = read_json_object(path)
    for name in FLOOR_KEYS.values():
        floor = data.get(name)
        if floor is None and name != "min_speedup":
            continue
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) \
                or not math.isfinite(floor) or floor <= 0:
            raise InputError("expected a positive number", path=str(path), field=name)
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise InputError("expected an object", path=str(path), field="config")
    known = set(BenchConfig.__dataclass_fields__)  # other top-level keys are notes
    unknown = set(config) - known
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}", path=str(path), field="config")
    return data


def run_gate(baseline_path: str | Path, json_out: str | Path | None = None,
             printer=print) -> int:
    """The GPU regression gate: 0 if block top-k's speedup over dense (dense ms / block
    top-k ms, selection included) is at least the baseline's ``min_speedup`` (and the
    Triton-attention variant's at least ``min_speedup_triton``, if stored) and every
    in-run correctness check passed, else 1."""
    baseline = load_baseline(baseline_path)
    cfg = BenchConfig(**baseline.get("config", {}))
    result = compare_decode(cfg, BENCH_METHODS, check=True)
    floors = {key: float(baseline[name]) for key, name in FLOOR_KEYS.items()
              if baseline.get(name) is not None}
    speed = {key: result[key] >= floor for key, floor in floors.items()}
    passed = all(speed.values()) and result["checks_passed"]
    result["gate"] = {"baseline": str(baseline_path), "floors": floors, "speedup_ok": speed,
                      "checks_ok": result["checks_passed"], "passed": passed}
    printer(format_table(result))
    for key, floor in floors.items():
        printer(f"gate: {key} {result[key]:.2f}x vs floor {floor:.2f}x "
                f"({'ok' if speed[key] else 'BELOW FLOOR'})")
    printer(f"gate: checks {'ok' if result['checks_passed'] else 'FAILED'} -> "
            f"{'PASS' if passed else 'FAIL'}")
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if passed else 1
