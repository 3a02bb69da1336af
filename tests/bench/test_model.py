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
    rows = json.loads(out.read_text())
    assert [r["method"] for r in rows] == ["dense", "blocktopk"]
    for r in rows:
        assert r["ms"] > 0 and r["extra"]["layers"] == 28 and r["impl"] == "fused"
        assert r["extra"]["logits_rel_err"] < 0.2  # bf16 over 28 random layers
    assert "tokens/s" in capsys.readouterr().out


def test_distributed_whole_step_graph_single_process(tmp_path, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "tp.json"
    assert main(["bench", "--distributed", "--tp", "1", "--method", "blocktopk", *SMALL,
                 "--json-out", str(out)]) == 0
    result = json.loads(out.read_text())["blocktopk"]
    assert result["step_ms"] > 0 and result["tp1_ms"] > 0 and result["allreduce_ms"] == 0.0
    assert result["piecewise_host_ms"] > 0
