"""Tensor parallelism over torch.distributed: gloo on CPU, 2 processes.

The sharded layer's output after its all-reduces must equal the unsharded layer's
(float32), over decode steps with the KV cache growing; run_tp_bench must run end to
end and return its result on rank 0 only.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict
from datetime import timedelta

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

from kinetics.bench.tp import TpResult, _call_factory, format_tp_result, run_tp_bench  # noqa: E402
from kinetics.errors import InputError  # noqa: E402
from kinetics.model.layer import DenseKVAttend, GraphedDecodeStep, ShardedDecoderLayer  # noqa: E402
from kinetics.models import ModelSpec  # noqa: E402

TINY = ModelSpec(name="tiny", num_layers=2, hidden_size=64, num_q_heads=4, num_kv_heads=2,
                 head_dim=16, intermediate_size=128, vocab_size=100)
TINY_ONE_KV = ModelSpec(name="tiny-1kv", num_layers=2, hidden_size=64, num_q_heads=4,
                        num_kv_heads=1, head_dim=16, intermediate_size=128, vocab_size=100)
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
        bench = run_tp_bench(TINY, "dense", 8, 2, 16, 0, world, 3, 1, "float32")
        result["bench"] = None if bench is None else asdict(bench)
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
    assert all(res["bench"] is None for res in results[1:])
    assert bench["tp"] == world and bench["backend"] == backend
    assert bench["local_q_heads"] == 4 // world and bench["local_kv_heads"] == 2 // world
    for key in ("step_ms", "comm_ms", "nocomm_step_ms", "tp1_step_ms", "tokens_per_s",
                "speedup", "scaling_efficiency"):
        assert bench[key] is not None and bench[key] > 0, key
    assert 0 < bench["comm_share"] < 1
    assert bench["comm_overhead_ms"] is not None
    assert "scaling efficiency" in format_tp_result(TpResult(**bench))


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


def test_single_process_tp1(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    result = run_tp_bench(TINY, "dense", 4, 2, 16, 0, 1, 2, 1, "float32")
    assert result.tp == 1 and result.backend == "none"
    assert result.speedup == pytest.approx(1.0) and result.comm_ms == 0.0
    assert result.nocomm_step_ms is None
    assert "tp 1" in format_tp_result(result)


def test_tp_without_launcher_is_input_error(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(InputError, match="torchrun --nproc-per-node 2"):
        run_tp_bench(TINY, "dense", 4, 2, 16, 0, 2, 2, 1, "float32")


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="topk"), "needs an attend_factory"),
    (dict(tp=3), "do not divide"),
    (dict(dtype="int8"), "unknown dtype"),
    (dict(steps=0), "steps"),
])
def test_bad_arguments(kwargs, match):
    args = dict(model_name=TINY, method="dense", context=4, batch_size=1, page_size=16,
                topk_pages=0, tp=1, steps=1, warmup=0, dtype="float32")
    with pytest.raises(InputError, match=match):
        run_tp_bench(**{**args, **kwargs})


def test_factory_gets_only_the_extras_it_names():
    seen = {}

    def named(lq, lkv, d, b, c, device, dtype, *, method, topk_pages):
        seen["named"] = (lq, lkv, d, b, c, method, topk_pages)

    def catch_all(lq, lkv, d, b, c, device, dtype, **kw):
        seen["all"] = sorted(kw)

    extras = dict(method="topk", page_size=16, topk_pages=8, kv_head_start=1)
    _call_factory(named, 2, 1, 16, 3, 100, "cpu", torch.float32, extras)
    _call_factory(catch_all, 2, 1, 16, 3, 100, "cpu", torch.float32, extras)
    assert seen["named"] == (2, 1, 16, 3, 100, "topk", 8)
    assert seen["all"] == ["kv_head_start", "method", "page_size", "topk_pages"]



def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or not _has("flashinfer") or not _has("triton"),
                    reason="needs a CUDA device with flashinfer and triton")
@pytest.mark.parametrize("method", ["dense", "blocktopk"])
def test_paged_flashinfer_factory_one_gpu(method, monkeypatch):
    from kinetics.bench.tp import paged_attend_factory

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    spec = ModelSpec(name="small", num_layers=2, hidden_size=256, num_q_heads=8,
                     num_kv_heads=2, head_dim=128, intermediate_size=512, vocab_size=100)
    factory = paged_attend_factory(method, 16, 4)
    result = run_tp_bench(spec, method, 256, 2, 16, 4, 1, 5, 2, "bfloat16", factory)
    assert result.attention == f"paged {method}" and result.cuda_graphs
    assert result.step_ms > 0


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
           "--batch-size", "2", "--topk-pages", "2", "--repeats", "2", "--json-out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())["dense"]
    assert result["tp"] == 2 and result["step_ms"] > 0 and 0 <= result["comm_share"] <= 1
    assert "scaling efficiency" in proc.stdout


def _has_torchrun_module() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch.distributed.run") is not None
