"""Every ``kinetics bench`` flag, in every mode, is honoured or refused with exit 2.

Modes x flags on the CPU: a flag a mode honours lands in the plan the benchmark runs
(the one DecodeSpec, the run settings, the outputs); any other is refused with one
line naming it. Then, per mode, the plan's spec and settings reach the benchmark's
entry point (stubbed: no GPU here).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kinetics.bench import spec as bench_spec
from kinetics.bench.spec import DecodeSpec
from kinetics.cli import bench_cmd, build_parser, main
from kinetics.errors import InputError
from tests.schemas import validate

ROOT = Path(__file__).resolve().parents[2]
BASELINE = str(ROOT / "benchmarks" / "baseline" / "gpu.json")
GRID_RECORD = str(ROOT / "tests" / "data" / "bench" / "grid-synthetic.json")

# the flags that select each mode; "tp-cpu" is --distributed where no GPU is
SELECT = {
    "layer": [], "attention": ["--attention-only"], "model": ["--whole-model"],
    "tp": ["--distributed"], "tp-cpu": ["--distributed", "--method", "dense"],
    "tp-model": ["--distributed", "--whole-model"], "grid": ["--grid"],
    "gate": ["--gate", BASELINE], "from-json": ["--from-json", GRID_RECORD],
    "generate": ["--generate"],
}
SPEC_FLAGS = {"--model", "--context", "--batch-size", "--page-size", "--topk-pages",
              "--local-pages", "--tp", "--cuda-cores", "--topk", "--impl",
              "--page-means-dtype", "--replicas"}
OUT = {"--json", "--json-out", "--force"}
GRID_FLAGS = {"--grid-models", "--grid-contexts", "--grid-batches", "--grid-budget-tokens",
              "--time-budget", "--no-floors", "--plot"}
RUN = {"--method", "--repeats", "--layer-impl"}
# what each mode honours, written out here (not read from bench_cmd)
EXPECTED = {
    "layer": SPEC_FLAGS | OUT | RUN,
    "attention": SPEC_FLAGS | OUT | {"--method", "--repeats", "--attention-only"},
    "model": (SPEC_FLAGS - {"--replicas"}) | OUT | RUN | {"--whole-model"},
    "tp": (SPEC_FLAGS - {"--replicas"}) | OUT | RUN | {"--distributed"},
    "tp-cpu": {"--model", "--context", "--batch-size", "--tp", "--repeats", "--layer-impl",
               "--distributed"} | OUT,
    "tp-model": (SPEC_FLAGS - {"--replicas"}) | OUT | RUN | {"--distributed", "--whole-model"},
    "grid": GRID_FLAGS | OUT | {"--grid", "--page-size", "--tp", "--local-pages",
                                "--cuda-cores", "--topk", "--repeats"},
    "gate": OUT | {"--gate", "--allow-version-mismatch"},
    "from-json": {"--from-json", "--plot", "--force", "--relabel"},
    "generate": OUT | {"--generate", "--model", "--method", "--batch-size", "--page-size",
                       "--topk-pages", "--local-pages", "--prompt-tokens", "--new-tokens",
                       "--layers", "--samples", "--skewed", "--hf", "--device",
                       "--shared-prompt", "--step"},
}


SELECTORS = {"--attention-only": "attention", "--whole-model": "model", "--distributed": "tp",
             "--grid": "grid", "--gate": "gate", "--from-json": "from-json",
             "--generate": "generate"}
# a mode's flags plus another mode's selector: the mode they make together (else refused)
COMBINED = {("model", "--distributed"): "tp-model", ("tp", "--whole-model"): "tp-model",
            ("tp-cpu", "--whole-model"): "tp-model"}


def _given(flag: str, mode: str, tmp: Path) -> list[str]:
    """The argv that gives ``flag`` (with a value unlike its default)."""
    out = str(tmp / "out.json")
    values = {
        "--model": ["--model", "qwen3-32b"], "--method": ["--method", "blocktopk"],
        "--context": ["--context", "32768"], "--batch-size": ["--batch-size", "16"],
        "--page-size": ["--page-size", "32"], "--topk-pages": ["--topk-pages", "32"],
        "--local-pages": ["--local-pages", "2"], "--tp": ["--tp", "4"],
        "--cuda-cores": ["--cuda-cores"], "--topk": ["--topk", "bitonic"],
        "--impl": ["--impl", "separate"], "--page-means-dtype": ["--page-means-dtype", "fp8"],
        "--relabel": ["--relabel", str(tmp / "relabelled.json")],
        "--replicas": ["--replicas", "2"], "--repeats": ["--repeats", "7"],
        "--layer-impl": ["--layer-impl", "reference"], "--json": ["--json"],
        "--json-out": ["--json-out", out],
        "--force": ["--force", *(["--plot", str(tmp / "f.png")] if mode == "from-json"
                                 else ["--json-out", out])],
        "--attention-only": ["--attention-only"], "--whole-model": ["--whole-model"],
        "--distributed": ["--distributed"], "--grid": ["--grid"],
        "--gate": ["--gate", BASELINE], "--from-json": ["--from-json", GRID_RECORD],
        "--grid-models": ["--grid-models", "qwen3-32b"],
        "--grid-contexts": ["--grid-contexts", "8192"],
        "--grid-batches": ["--grid-batches", "4"],
        "--grid-budget-tokens": ["--grid-budget-tokens", "512"],
        "--time-budget": ["--time-budget", "30"], "--no-floors": ["--no-floors"],
        "--plot": ["--plot", str(tmp / "f.png")],
        "--generate": ["--generate"], "--prompt-tokens": ["--prompt-tokens", "64"],
        "--new-tokens": ["--new-tokens", "96"], "--layers": ["--layers", "3"],
        "--samples": ["--samples", "40"], "--skewed": ["--skewed"], "--hf": ["--hf"],
        "--shared-prompt": ["--shared-prompt"], "--step": ["--step"],
        "--device": ["--device", "cuda:1"],
        "--allow-version-mismatch": ["--allow-version-mismatch"],
    }
    return values[flag]


def _honoured(plan: bench_cmd.BenchPlan, flag: str) -> bool:
    """Whether ``plan`` carries what :func:`_given` gave for ``flag``."""
    s, grid, g = plan.spec, plan.grid, plan.generate
    checks = {
        "--model": s.model == "qwen3-32b", "--method": plan.methods == ("blocktopk",),
        "--context": s.context == 32768, "--batch-size": s.batch_size == 16,
        "--page-size": s.page_size == 32, "--topk-pages": s.topk_pages == 32,
        "--local-pages": s.local_pages == 2, "--tp": s.tp == 4,
        "--cuda-cores": s.dense_kernel == "cuda-cores", "--topk": s.topk_kernel == "bitonic",
        "--impl": s.blocktopk_impl == "separate", "--page-means-dtype": s.page_means_dtype == "fp8",
        "--relabel": plan.relabel is not None and plan.relabel.endswith("relabelled.json"),
        "--replicas": s.replicas == 2,
        "--repeats": plan.repeats == 7 and (grid is None or grid.repeats == 7),
        "--layer-impl": plan.layer_impl == "reference", "--json": plan.json,
        "--json-out": plan.json_out is not None and plan.json_out.endswith("out.json"),
        "--force": plan.force, "--attention-only": plan.mode == "attention",
        "--whole-model": plan.mode in ("model", "tp-model"),
        "--distributed": plan.mode in ("tp", "tp-model"), "--grid": plan.mode == "grid",
        "--gate": plan.baseline == BASELINE, "--from-json": plan.records == (GRID_RECORD,),
        "--plot": plan.plot is not None and plan.plot.endswith("f.png"),
        "--grid-models": grid is not None and grid.models == ("qwen3-32b",),
        "--grid-contexts": grid is not None and grid.contexts == (8192,),
        "--grid-batches": grid is not None and grid.batch_sizes == (4,),
        "--grid-budget-tokens": grid is not None and grid.budget_tokens == (512,),
        "--time-budget": plan.deadline_s == 30.0,
        "--no-floors": grid is not None and not grid.measure_floors,
        "--generate": plan.mode == "generate",
        "--prompt-tokens": g is not None and g.prompt_tokens == 64,
        "--new-tokens": g is not None and g.new_tokens == 96,
        "--layers": g is not None and g.layers == 3,
        "--samples": g is not None and g.samples == 40,
        "--skewed": g is not None and g.skewed, "--hf": g is not None and g.hf,
        "--shared-prompt": g is not None and g.shared_prompt, "--step": g is not None and g.step,
        "--device": plan.device == "cuda:1",
        "--allow-version-mismatch": plan.allow_version_mismatch,
    }
    if g is not None:  # generate mode: the shared flags land in its spec
        checks.update({"--model": g.model == "qwen3-32b", "--batch-size": g.batch_size == 16,
                       "--page-size": g.page_size == 32, "--topk-pages": g.topk_pages == 32,
                       "--local-pages": g.local_pages == 2,
                       "--method": g.methods == ("blocktopk",)})
    if grid is not None:
        assert grid.base == s  # the grid's cells start from the one spec
    return checks[flag]


CASES = [(mode, flag) for mode in SELECT for flag in sorted(bench_cmd.FLAGS)]


@pytest.mark.parametrize("mode,flag", CASES, ids=[f"{m}:{f}" for m, f in CASES])
def test_every_flag_is_honoured_or_refused(mode, flag, tmp_path, monkeypatch, capsys):
    argv = ["bench", *SELECT[mode], *_given(flag, mode, tmp_path)]
    gpu = mode != "tp-cpu"
    args = build_parser().parse_args(argv)
    if flag in SELECTORS and flag not in EXPECTED[mode]:  # two modes' selectors
        together = SELECTORS[flag] if mode == "layer" else COMBINED.get((mode, flag))
        if together is not None:
            assert bench_cmd.plan(args, gpu).mode == together
            return
        with pytest.raises(InputError, match="does not apply to"):
            bench_cmd.plan(args, gpu)
        return
    if flag in EXPECTED[mode]:
        plan = bench_cmd.plan(args, gpu)
        assert plan.mode == mode.replace("-cpu", "")
        assert _honoured(plan, flag), f"{flag} given but not in the plan of {mode}"
        return
    with pytest.raises(InputError, match=flag):
        bench_cmd.plan(args, gpu)
    if mode != "tp":  # the CLI itself: exit 2, one line naming the flag (this CPU: no GPU)
        monkeypatch.setattr(bench_spec, "gpu_available", lambda: (False, "no GPU (test)"))
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0]


@pytest.mark.parametrize("argv,match", [
    (["--method", "dense", "--topk-pages", "8"], "--topk-pages is a block top-k setting"),
    (["--method", "dense", "--topk", "bitonic"], "--topk is a block top-k setting"),
    (["--method", "dense", "--impl", "fused"], "--impl is a block top-k setting"),
    (["--method", "dense", "--page-means-dtype", "fp8"],
     "--page-means-dtype is a block top-k setting"),
    (["--impl", "fused", "--topk", "bitonic"], "--topk picks the separate implementation's"),
    (["--grid", "--impl", "fused"], "--impl does not apply to --grid (the grid times every"),
    (["--relabel", "x.json"], "--relabel does not apply to the decoder-layer benchmark"),
    (["--method", "blocktopk", "--cuda-cores"], "--cuda-cores is a dense setting"),
    (["--distributed"], "runs --method dense only"),  # no GPU: both methods refused
    (["--force"], "--force replaces"),
    (["--grid", "--gate", BASELINE], "--grid does not apply to --gate"),
])
def test_combinations_that_cannot_be_honoured(argv, match, monkeypatch, capsys):
    monkeypatch.setattr(bench_spec, "gpu_available", lambda: (False, "no GPU (test)"))
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def test_defaults_build_the_default_spec():
    plan = bench_cmd.plan(build_parser().parse_args(["bench"]), True)
    assert plan.spec == DecodeSpec() and plan.methods == ("dense", "blocktopk")
    assert (plan.mode, plan.repeats, plan.layer_impl) == ("layer", 100, "fused")
    grid = bench_cmd.plan(build_parser().parse_args(["bench", "--grid"]), True)
    assert grid.repeats == grid.grid.repeats == 20 and grid.grid.measure_floors


# ------------------------------------------------------------------ the spec reaches the run
FULL = ["--model", "qwen3-32b", "--context", "8192", "--batch-size", "4", "--page-size",
        "32", "--topk-pages", "16", "--local-pages", "2", "--tp", "4", "--topk", "bitonic",
        "--impl", "separate", "--page-means-dtype", "fp8", "--cuda-cores", "--repeats", "3"]
WANT = DecodeSpec(model="qwen3-32b", tp=4, context=8192, batch_size=4, page_size=32,
                  topk_pages=16, local_pages=2, topk_kernel="bitonic",
                  blocktopk_impl="separate", page_means_dtype="fp8",
                  dense_kernel="cuda-cores")


@pytest.fixture
def gpu_stubs(monkeypatch):
    """gpu_available says yes; every benchmark entry point records what it got."""
    from kinetics.bench import gate, grid, layer, tp, whole_model
    from kinetics.model import parallel

    calls: dict[str, tuple] = {}
    monkeypatch.setattr(bench_spec, "gpu_available", lambda: (True, "stub GPU"))

    def compare(spec, methods, **kw):
        calls["layer"] = (spec, methods, kw)
        return layer.DecodeComparison({"device": "stub", "date": "now", "versions": {}}, spec,
                                      kw["scope"], kw["layer_impl"],
                                      kw["repeats"], 8, 1, 128, 1.0)

    def model_timings(spec, methods, **kw):
        calls["model"] = (spec, methods, kw)
        return []

    def tp_layer_timing(spec, method, rank, group, device, **kw):
        calls.setdefault("tp", []).append((spec, method, kw))
        return tp.TpLayerTiming(spec, method, kw["layer_impl"], "none", "stub", 1.0, 1.0,
                                0.0, 1.0, [1.0])

    def run_grid(spec, progress, deadline_s):
        calls["grid"] = (spec, deadline_s)
        return grid.GridResult("stub", "now", {}, 1.0, spec)

    def run_gate(path, printer):
        calls["gate"] = (path,)
        return gate.GateRun(0, {"kind": "gate"})

    monkeypatch.setattr(layer, "compare_decode", compare)
    monkeypatch.setattr(whole_model, "model_timings", model_timings)
    monkeypatch.setattr(tp, "tp_layer_timing", tp_layer_timing)
    monkeypatch.setattr(grid, "run_grid", run_grid)
    monkeypatch.setattr(gate, "run_gate", run_gate)
    # the pinned GPU stack (benchmarks/gpu/constraints.txt), as the gate baseline records it
    monkeypatch.setattr(gate, "running_versions",
                        lambda: gate.read_constraints(ROOT / "benchmarks" / "gpu" / "constraints.txt"))
    info = parallel.ParallelInfo(rank=0, world_size=1, local_rank=0, device="cpu",
                                 backend="none", group=None, created=False)
    monkeypatch.setattr(parallel, "init_distributed", lambda tp_size: info)
    return calls


@pytest.mark.parametrize("mode,extra", [
    ("layer", ["--layer-impl", "reference", "--replicas", "2"]),
    ("attention", ["--attention-only", "--replicas", "2"]),
    ("model", ["--whole-model", "--layer-impl", "reference"]),
    ("tp", ["--distributed", "--layer-impl", "reference"]),
    ("tp-model", ["--distributed", "--whole-model", "--layer-impl", "reference"]),
])
def test_the_spec_reaches_the_benchmark(mode, extra, gpu_stubs, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["bench", *FULL, *extra, "--json-out", str(out)]) == 0
    replicas = 2 if "--replicas" in extra else WANT.replicas
    want = replace(WANT, replicas=replicas)
    if mode in ("layer", "attention"):
        spec, methods, kw = gpu_stubs["layer"]
        assert kw["scope"] == mode and kw["repeats"] == 3
        assert kw["layer_impl"] == ("reference" if mode == "layer" else "fused")
    elif mode == "tp":
        (spec, _, kw), (_, method, _) = gpu_stubs["tp"]
        methods = ("dense", method)
        assert kw == {"layer_impl": "reference", "repeats": 3}
    else:
        spec, methods, kw = gpu_stubs["model"]
        assert kw["layer_impls"] == ("reference",) and kw["repeats"] == 3
    assert spec == want and tuple(methods) == ("dense", "blocktopk")
    record = validate(json.loads(out.read_text()), "bench-record")
    assert record["command"].startswith("kinetics bench --model qwen3-32b")
    assert record["provenance"]["command"] == record["command"]


def test_the_grid_and_gate_get_their_settings(gpu_stubs, tmp_path, capsys):
    assert main(["bench", "--grid", "--tp", "4", "--page-size", "32", "--local-pages", "2",
                 "--topk", "bitonic", "--cuda-cores", "--repeats", "3", "--grid-models",
                 "qwen3-32b", "--grid-contexts", "8192", "--grid-batches", "4",
                 "--grid-budget-tokens", "512", "--time-budget", "9", "--no-floors"]) == 0
    grid, deadline = gpu_stubs["grid"]
    assert grid.base == DecodeSpec(tp=4, page_size=32, local_pages=2, topk_kernel="bitonic",
                                   dense_kernel="cuda-cores")
    assert (grid.models, grid.contexts, grid.batch_sizes, grid.budget_tokens) == (
        ("qwen3-32b",), (8192,), (4,), (512,))
    assert (grid.repeats, grid.measure_floors, deadline) == (3, False, 9.0)
    assert main(["bench", "--gate", BASELINE, "--json"]) == 0
    assert gpu_stubs["gate"] == (BASELINE,)
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["kind"] == "gate"


def test_the_gate_refuses_other_library_versions(gpu_stubs, monkeypatch, capsys):
    """Floors set with torch 2.11.0+cu130 / triton 3.6.0 / flashinfer 0.6.1 do not apply
    to another stack: one line, exit 2, nothing run, unless --allow-version-mismatch."""
    from kinetics.bench import gate

    running = {"torch": "2.12.0+cu130", "triton": "3.6.0", "flashinfer": "0.6.1"}
    monkeypatch.setattr(gate, "running_versions", lambda: running)
    assert main(["bench", "--gate", BASELINE]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "torch recorded 2.11.0+cu130, running 2.12.0+cu130" in err
    assert "--allow-version-mismatch" in err and "gate" not in gpu_stubs
    assert main(["bench", "--gate", BASELINE, "--allow-version-mismatch"]) == 0
    assert gpu_stubs["gate"] == (BASELINE,)
    assert "warning: torch recorded 2.11.0+cu130" in capsys.readouterr().err


def test_allow_version_mismatch_belongs_to_the_gate(gpu_stubs, capsys):
    assert main(["bench", "--attention-only", "--allow-version-mismatch"]) == 2
    assert "--allow-version-mismatch does not apply" in capsys.readouterr().err


def test_no_gpu_is_one_error_line_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(bench_spec, "gpu_available", lambda: (False, "no GPU (test)"))
    assert main(["bench", "--method", "dense"]) == 2
    err = capsys.readouterr().err
    assert err == "kinetics bench: error: no GPU benchmark on this machine: no GPU (test)\n"
