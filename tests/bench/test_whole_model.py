"""Whole-model and whole-step TP timings through the CLI on a GPU (skipped elsewhere)."""

from __future__ import annotations

import importlib.util
import json

import pytest

torch = pytest.importorskip("torch")

from kinetics.cli import main  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("flashinfer") is None
    or importlib.util.find_spec("triton") is None,
    reason="needs a CUDA GPU with flashinfer and triton")]
SMALL = ["--model", "qwen3-0.6b", "--batch-size", "4", "--context", "1024", "--topk-pages",
         "8", "--repeats", "3"]


def test_whole_model_cli_times_every_method(tmp_path, capsys):
    out = tmp_path / "model.json"
    assert main(["bench", "--whole-model", "--tp", "1", *SMALL, "--json-out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["kind"] == "model"
    rows = record["rows"]
    assert [r["method"] for r in rows] == ["dense", "blocktopk"]
    for r in rows:
        assert r["ms"] > 0 and r["extra"]["layers"] == 28 and r["impl"] == "fused"
        assert (r["batch_size"], r["context"], r["topk_pages"], r["tp"]) == (4, 1024, 8, 1)
        assert r["extra"]["logits_rel_err"] < 0.2  # bf16 over 28 random layers
    assert "tokens/s" in capsys.readouterr().out


def test_distributed_whole_step_graph_single_process(tmp_path, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "tp.json"
    assert main(["bench", "--distributed", "--tp", "1", "--method", "blocktopk", *SMALL,
                 "--json-out", str(out)]) == 0
    (result,) = json.loads(out.read_text())["rows"]
    assert result["step_ms"] > 0 and result["tp1_ms"] > 0 and result["allreduce_ms"] == 0.0
    assert result["method"] == "blocktopk" and result["backend"] == "none"


def test_whole_model_takes_the_block_topk_flags(tmp_path):
    """--local-pages, --topk and --cuda-cores reach the whole model's attends."""
    out = tmp_path / "model.json"
    assert main(["bench", "--whole-model", "--tp", "1", *SMALL, "--local-pages", "2",
                 "--topk", "bitonic", "--cuda-cores", "--json-out", str(out)]) == 0
    for r in json.loads(out.read_text())["rows"]:
        assert (r["local_pages"], r["topk_kernel"], r["dense_kernel"]) == (
            2, "bitonic", "cuda-cores")
        assert r["extra"]["logits_rel_err"] < 0.2
