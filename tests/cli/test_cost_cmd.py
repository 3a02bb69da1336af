"""`kinetics cost`: the CLI contract other tools call."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kinetics.cli import main
from kinetics.cost import AttentionConfig, query_cost
from kinetics.models import MODELS
from tests.schemas import validate


def run_json(capsys, *argv, provenance: bool = False):
    """The --json object; its provenance (checked against the schema) dropped unless
    asked for, so two runs' numbers compare equal."""
    assert main(["cost", *argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    validate(out["provenance"], "provenance")
    if not provenance:
        del out["provenance"]
    return out


def test_dense_json_matches_the_formula(capsys):
    out = run_json(capsys, "--model", "qwen3-8b", "--method", "dense", "--prompt-len", "128",
                   "--gen-len", "32768", "--samples", "8")
    L, hq, hkv, d, S, T, N, P = 36, 32, 8, 128, 128, 32768, 8, 8.19e9
    assert out["compute_flops"] == pytest.approx(N * (2 * P * T + 2 * L * hq * d * (2 * S + T + 1) * T))
    assert out["memory_bytes"] == pytest.approx(2 * L * hkv * d * (2 * S + N * (T + 1)) * T)
    assert out["intensity"] == 562.5
    assert out["eflops"] == pytest.approx(out["compute_flops"] + 562.5 * out["memory_bytes"])


def test_blocktopk_budget_and_topk_blocks_agree(capsys):
    common = ["--method", "blocktopk", "--prompt-len", "100", "--gen-len", "5000", "--block-size", "16"]
    by_blocks = run_json(capsys, *common, "--topk-blocks", "64")
    by_budget = run_json(capsys, *common, "--budget", "1024")
    assert by_blocks == by_budget
    expected = query_cost(MODELS["qwen3-8b"], AttentionConfig.blocktopk(16, topk_blocks=64), 100, 5000)
    assert by_blocks["eflops"] == pytest.approx(float(expected.eflops(562.5)))


def test_custom_intensity_and_hardware(capsys):
    common = ["--method", "topk", "--budget", "512", "--prompt-len", "10", "--gen-len", "100"]
    assert run_json(capsys, *common, "--intensity", "300")["intensity"] == 300
    assert run_json(capsys, *common, "--hardware", "h100")["intensity"] == pytest.approx(295.37, abs=0.01)


BAD_FLAGS = [  # argv, what the one-line message must name
    (["--method", "topk", "--prompt-len", "1", "--gen-len", "1"], "--budget"),
    (["--method", "blocktopk", "--budget", "64", "--prompt-len", "1", "--gen-len", "1"],
     "--block-size"),
    (["--method", "blocktopk", "--block-size", "16", "--budget", "65", "--prompt-len", "1",
      "--gen-len", "1"], "budget 65"),
    (["--method", "dense", "--budget", "5", "--prompt-len", "1", "--gen-len", "1"], "--budget"),
    (["--prompt-len", "-1", "--gen-len", "1"], "--prompt-len"),
    (["--prompt-len", "1", "--gen-len", "1", "--samples", "0"], "--samples"),
    (["--prompt-len", "x", "--gen-len", "1"], "--prompt-len"),
    (["--gen-len", "1"], "--prompt-len"),  # missing
    (["--model", "gpt-9", "--prompt-len", "1", "--gen-len", "1"], "gpt-9"),
    (["--prompt-len", "1", "--gen-len", "1", "--hardware", "h100", "--intensity", "3"],
     "--intensity"),
    (["--prompt-len", "1", "--gen-len", "1", "--model-config", "/nonexistent/config.json"],
     "/nonexistent/config.json"),
    (["--prompt-len", "1", "--gen-len", "1", "--batch-size", "0"], "--batch-size"),
    # lengths past the 2**31-token cap (int64 wrapped 4e9 to negative costs before)
    *[(["--prompt-len", "10", "--gen-len", str(n)], "--gen-len")
      for n in (2**31 + 1, 4_000_000_000, 5 * 10**9, 10**10, 10**30)],
    (["--prompt-len", str(10**30), "--gen-len", "10"], "--prompt-len"),
    (["--method", "topk", "--budget", str(10**30), "--prompt-len", "1", "--gen-len", "1"], "budget"),
    (["--method", "blocktopk", "--block-size", "16", "--topk-blocks", str(2**28), "--prompt-len",
      "1", "--gen-len", "1"], "budget"),
]


@pytest.mark.parametrize("argv, names", BAD_FLAGS)
def test_bad_flags_give_one_line_naming_the_flag_and_exit_2(capsys, argv, names):
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(["cost", *argv]))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert names in err


@pytest.mark.parametrize("method", [
    ["--method", "dense"], ["--method", "topk", "--budget", "4096"],
    ["--method", "blocktopk", "--block-size", "1", "--topk-blocks", "4096"],
])
def test_lengths_at_the_cap_are_exact(capsys, method):
    """S = T = 2**31, the largest accepted case: positive, and the library's values
    (which test_cost checks against Python integers over the whole range)."""
    out = run_json(capsys, *method, "--prompt-len", str(2**31), "--gen-len", str(2**31),
                   "--samples", "4")
    attention = AttentionConfig(out["method"], budget=out["budget"], block_size=out["block_size"],
                                local=out["local"] or 0)
    expected = query_cost(MODELS["qwen3-8b"], attention, 2**31, 2**31, 4)
    assert out["compute_flops"] == float(expected.compute_flops) > 0
    assert out["memory_bytes"] == float(expected.memory_bytes) > 0
    assert out["compute_flops"] > 2 * 8.19e9 * 2**31 * 4  # linear part alone; no wrap-around


def test_console_script_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "kinetics", "cost", "--prompt-len", "128",
                           "--gen-len", "1024"], capture_output=True, text=True, check=True)
    assert "eFLOPs" in proc.stdout


@pytest.mark.parametrize("model, published, derived", [
    ("qwen3-30b-a3b", 3_300_000_000, 3_041_656_832), ("qwen3-4b", 4_020_000_000, 4_022_272_000),
    ("qwen3-8b", 8_190_000_000, 7_568_097_280)])
def test_param_count_changes_only_the_linear_flops(capsys, model, published, derived):
    common = ["--model", model, "--prompt-len", "100", "--gen-len", "3000", "--samples", "4"]
    default = run_json(capsys, *common)
    pub = run_json(capsys, *common, "--param-count", "published")
    der = run_json(capsys, *common, "--param-count", "derived")
    assert default == pub and pub["active_params"] == published
    assert der["active_params"] == derived and der["param_count"] == "derived"
    assert der["compute_flops"] - pub["compute_flops"] == pytest.approx(
        4 * 2 * (derived - published) * 3000, rel=1e-9)
    assert der["memory_bytes"] == pub["memory_bytes"]


def test_seconds_on_the_hardware_beside_eflops(capsys):
    common = ["--prompt-len", "128", "--gen-len", "32768", "--samples", "8"]
    out = run_json(capsys, *common, "--hardware", "h100")
    assert out["compute_seconds"] == out["compute_flops"] / 989.5e12
    assert out["memory_seconds"] == out["memory_bytes"] / 3.35e12
    assert out["seconds"] == pytest.approx(out["eflops"] / 989.5e12, rel=1e-12)
    assert run_json(capsys, *common, "--intensity", "10")["seconds"] is None
    assert main(["cost", *common]) == 0
    text = capsys.readouterr().out
    eflops_line = next(line for line in text.splitlines() if "eFLOPs" in line)
    want = run_json(capsys, *common)["seconds"]
    assert f"{want:.4g} s on b200" in eflops_line
    assert max(len(line) for line in text.splitlines()) <= 80


def test_kv_and_weight_dtypes_price_the_bytes(capsys):
    common = ["--prompt-len", "128", "--gen-len", "4096", "--samples", "4"]
    base = run_json(capsys, *common)
    assert (base["kv_dtype"], base["weight_dtype"]) == ("bf16", "bf16")
    fp8 = run_json(capsys, *common, "--kv-dtype", "fp8")
    assert fp8["memory_bytes"] * 2 == base["memory_bytes"]
    assert fp8["compute_flops"] == base["compute_flops"]
    model = MODELS["qwen3-8b"]
    batched = run_json(capsys, *common, "--batch-size", "16", "--weight-dtype", "int4")
    want = query_cost(model, AttentionConfig.dense(), 128, 4096, 4, 16, "bf16", "int4")
    assert batched["memory_bytes"] == float(want.memory_bytes)
    assert batched["weight_dtype"] == "int4" and batched["batch_size"] == 16


@pytest.mark.parametrize("argv, needle", [
    (["--weight-dtype", "int4"], "--weight-dtype int4 prices parameter reads, which only "
     "--batch-size BS counts"),
    (["--kv-dtype", "int4"], "--kv-dtype"),
    (["--batch-size", "0"], "--batch-size must be 1..2147483648 (2**31), got 0"),
])
def test_bad_dtype_flags(capsys, argv, needle):
    try:
        code = main(["cost", "--prompt-len", "1", "--gen-len", "1", *argv])
    except SystemExit as exit_:  # argparse's own refusal of a choice
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


def test_json_carries_the_runs_provenance(capsys):
    argv = ["--model", "qwen3-8b", "--prompt-len", "128", "--gen-len", "1024"]
    out = run_json(capsys, *argv, provenance=True)
    assert out["provenance"]["command"] == "kinetics cost " + " ".join(argv) + " --json"
