"""Tensor parallelism over torch.distributed: gloo on CPU, 2 processes.

The sharded layer's output after its all-reduces must equal the unsharded layer's
(float32), over decode steps with the KV cache growing; tp_layer_timing must run end
to end on every rank and give every rank the same numbers.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

from kinetics.bench.spec import DecodeSpec  # noqa: E402
from kinetics.bench.tp import TpLayerTiming, format_tp_layer_timing, tp_layer_timing  # noqa: E402
from kinetics.cli import main  # noqa: E402
from kinetics.errors import InputError  # noqa: E402
from kinetics.model.layer import DenseKVAttend, GraphedDecodeStep, ShardedDecoderLayer  # noqa: E402
from kinetics.models import ModelSpec  # noqa: E402

TINY = ModelSpec(name="tiny", num_layers=2, hidden_size=64, num_q_heads=4, num_kv_heads=2,
                 head_dim=16, intermediate_size=128, vocab_size=100)
TINY_ONE_KV = ModelSpec(name="tiny-1kv", num_layers=2, hidden_size=64, num_q_heads=4,
                        num_kv_heads=1, head_dim=16, intermediate_size=128, vocab_size=100)
# on GPUs the timed layer attends through flashinfer, which has no kernel for head_dim 16
SMALL = ModelSpec(name="small", num_layers=2, hidden_size=256, num_q_heads=8, num_kv_heads=2,
                  head_dim=128, intermediate_size=512, vocab_size=100)
WORLD, BATCH, CONTEXT, STEPS = 2, 3, 5, 3
TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs():
    gen = torch.Generator().manual_seed(11)
    hiddens = [torch.randn(BATCH, 64, generator=gen) for _ in range(STEPS)]
    positions = [torch.tensor([CONTEXT + s, CONTEXT + 7 + s, s]) for s in range(STEPS)]
    return hiddens, positions


def _decode(model: ModelSpec, tp: int, rank: int, group, device, graphs: bool = False) -> list:
    layer = ShardedDecoderLayer(model, tp, rank, group, dtype=torch.float32, device=device,
                                seed=3)
    attend = DenseKVAttend(layer.local_q_heads, layer.local_kv_heads, layer.head_dim, BATCH,
                           CONTEXT, device, torch.float32, kv_head_start=layer.kv_head_start)
    hiddens, positions = _inputs()
    with torch.inference_mode():
        step = GraphedDecodeStep(layer, BATCH) if graphs else layer
        outs = [step(h.to(device), attend, p.to(device)).cpu()
                for h, p in zip(hiddens, positions, strict=True)]
    assert attend.length == CONTEXT + STEPS  # the cache grew by one token per step
    return outs


def _worker(rank: int, port: int, outdir: str, backend: str, world: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NCCL_NVLS_ENABLE="0",
                      TORCH_SYMM_MEM_DISABLE_MULTICAST="1")
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        result = {}
        for model in (TINY, TINY_ONE_KV):
            result[model.name] = _decode(model, world, rank, dist.group.WORLD, device)
            if backend == "nccl":  # all-reduces captured in CUDA graphs
                result[model.name + "/graphs"] = _decode(model, world, rank, dist.group.WORLD,
                                                         device, graphs=True)
            if rank == 0:
                result[model.name + "/unsharded"] = _decode(model, 1, 0, None, device)
        spec = DecodeSpec(model=SMALL if backend == "nccl" else TINY, tp=world, context=8,
                          batch_size=2)
        bench = tp_layer_timing(spec, "dense", rank, dist.group.WORLD, device, repeats=3,
                                inner=2)
        result["bench"] = bench.to_dict()
        torch.save(result, os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _spawn_and_check(tmp_path, backend: str, world: int = WORLD, tol: float = 1e-5) -> None:
    port = _free_port()
    ctx = mp.start_processes(_worker, args=(port, str(tmp_path), backend, world), nprocs=world,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"{backend} workers did not finish in {TIMEOUT_S} s")
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]
    r0 = results[0]
    for name in (TINY.name, TINY_ONE_KV.name):
        want = r0[name + "/unsharded"]
        for res in results:
            for key in (name, name + "/graphs"):
                for got, exp in zip(res.get(key, want), want, strict=True):
                    torch.testing.assert_close(got, exp, rtol=tol, atol=tol)
        # the steps differ from each other (the cache and positions matter)
        assert not torch.allclose(want[0], want[1])
    bench = r0["bench"]
    assert all(res["bench"] == bench for res in results[1:])  # every rank: the same numbers
    assert bench["tp"] == world and bench["backend"] == backend
    model = SMALL if backend == "nccl" else TINY
    assert bench["model"] == model.name and len(bench["per_rank_ms"]) == world
    for key in ("step_ms", "nocomm_ms", "allreduce_ms", "tp1_ms", "speedup",
                "scaling_efficiency"):
        assert bench[key] is not None and bench[key] > 0, key
    assert bench["step_ms"] == max(bench["per_rank_ms"])
    assert bench["comm_share"] < 1
    timing = TpLayerTiming(DecodeSpec(model=model, tp=world), bench["method"], bench["impl"],
                           bench["backend"], bench["device"], bench["step_ms"],
                           bench["nocomm_ms"], bench["allreduce_ms"], bench["tp1_ms"],
                           bench["per_rank_ms"])
    assert "scaling efficiency" in format_tp_layer_timing(timing)


def test_gloo_two_ranks_match_unsharded(tmp_path):
    _spawn_and_check(tmp_path, "gloo")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="needs >= 2 CUDA devices")
def test_nccl_two_gpus_match_unsharded(tmp_path):
    _spawn_and_check(tmp_path, "nccl", tol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nccl_one_gpu_group_smoke(tmp_path):
    """The NCCL code path (events around all-reduce, barriers, gather) on one GPU."""
    _spawn_and_check(tmp_path, "nccl", world=1, tol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_weights_equal_cpu_and_graphed_step_equals_eager():
    from kinetics.model.weights import hashed_uniform

    rows, cols = torch.arange(300), torch.arange(70)
    cpu = hashed_uniform(4, 2, rows, cols, 0.1, torch.float32, "cpu")
    gpu = hashed_uniform(4, 2, rows, cols, 0.1, torch.float32, "cuda")
    assert torch.equal(cpu, gpu.cpu())
    want = _decode(TINY, 1, 0, None, "cpu")
    for graphs in (False, True):
        got = _decode(TINY, 1, 0, None, "cuda", graphs=graphs)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
    # simulated TP on one GPU, graphed: each rank's step runs (no group, no all-reduce)
    for rank in range(2):
        out = _decode(TINY, 2, rank, None, "cuda", graphs=True)
        assert out[0].shape == (BATCH, 64) and torch.isfinite(out[-1]).all()


def test_single_process_tp1():
    spec = DecodeSpec(model=TINY, tp=1, context=4, batch_size=2)
    t = tp_layer_timing(spec, "dense", 0, None, torch.device("cpu"), repeats=2, inner=2)
    assert t.spec.tp == 1 and t.backend == "none" and t.device == "cpu"
    assert t.allreduce_ms == 0.0 and t.tp1_ms > 0 and t.step_ms > 0
    assert t.per_rank_ms == [t.step_ms]
    assert "tp 1" in format_tp_layer_timing(t)


def test_tp_without_launcher_is_input_error(monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["bench", "--distributed", "--tp", "2", "--method", "dense"]) == 2
    assert "torchrun --nproc-per-node 2" in capsys.readouterr().err


@pytest.mark.parametrize("rank, refused", [("0", True), ("1", False)])
def test_only_rank_0_checks_the_outputs(monkeypatch, capsys, tmp_path, rank, refused):
    """Under torchrun rank 0 alone checks --json-out (it alone writes it): an existing file
    refuses rank 0; rank 1 goes on to the process-group setup (refused there, no launcher)."""
    out = tmp_path / "tp.json"
    out.write_text("{}")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["bench", "--distributed", "--tp", "2", "--method", "dense",
                 "--json-out", str(out)]) == 2
    err = capsys.readouterr().err
    assert ("already exists" in err) is refused and ("torchrun --nproc-per-node 2" in err) is not refused
    assert out.read_text() == "{}"


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="blocktopk"), "needs a GPU"),
    (dict(method="topk"), "unknown method"),
    (dict(spec=DecodeSpec(model=TINY, tp=3, context=4)), "do not divide"),
    (dict(layer_impl="magic"), "layer implementation"),
    (dict(repeats=0), "repeats"),
])
def test_bad_arguments(kwargs, match):
    args = dict(spec=DecodeSpec(model=TINY, tp=1, context=4, batch_size=1), method="dense",
                rank=0, group=None, device=torch.device("cpu"), repeats=1)
    with pytest.raises(InputError, match=match):
        tp_layer_timing(**{**args, **kwargs})


def test_timing_record_and_ratios():
    spec = DecodeSpec(tp=2, context=32768, batch_size=32)
    t = TpLayerTiming(spec, "blocktopk", "fused", "nccl", "GPU", 0.16, 0.14, 0.025, 0.24,
                      [0.16, 0.16])
    assert t.speedup == pytest.approx(1.5) and t.scaling_efficiency == pytest.approx(0.75)
    assert t.comm_share == pytest.approx(0.125)
    assert "scaling efficiency 75.0%" in format_tp_layer_timing(t)
    row = t.to_dict()
    assert (row["model"], row["batch_size"], row["tp"], row["scope"]) == ("qwen3-8b", 32, 2,
                                                                         "layer")
    assert TpLayerTiming(spec, "dense", "fused", "none", "cpu", 1.0, 1.0, 0.0, None,
                         [1.0]).scaling_efficiency is None


def test_cli_distributed_runs_under_torchrun_on_cpu(tmp_path):
    """`torchrun -m kinetics bench --distributed` end to end: gloo, 2 ranks, rank 0 reports."""
    import json
    import subprocess
    import sys

    if not _has_torchrun_module():
        pytest.skip("torch.distributed.run (torchrun) is not available")
    out = tmp_path / "tp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()), "-m", "kinetics", "bench", "--distributed",
           "--tp", "2", "--method", "dense", "--model", "qwen3-0.6b", "--context", "64",
           "--batch-size", "2", "--repeats", "2", "--json-out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    from tests.schemas import validate

    record = validate(json.loads(out.read_text()), "bench-record")
    assert record["kind"] == "tp" and record["command"].startswith("kinetics bench")
    assert record["provenance"]["device"] == record["device"] == "cpu"
    (result,) = record["rows"]
    assert result["tp"] == 2 and result["step_ms"] > 0 and result["comm_share"] <= 1
    assert result["method"] == "dense" and result["context"] == 64
    assert "scaling efficiency" in proc.stdout


def _has_torchrun_module() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch.distributed.run") is not None
