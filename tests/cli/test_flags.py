"""Flags that read the same in every command: --model-config NAME=PATH, cost's
--samples, report --json, and the progress bar only on a terminal."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kinetics.analysis.trials import embedded_path
from kinetics.cli import main

CONFIG = {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
          "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 512,
          "vocab_size": 1000}


@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG))
    return str(path)


def cost_json(capsys, *argv) -> dict:
    assert main(["cost", "--prompt-len", "100", "--gen-len", "50", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_cost_uses_a_single_model_config_named_by_its_name(capsys, config):
    out = cost_json(capsys, "--model-config", f"mine={config}", "--samples", "1")
    assert out["model"] == "mine" and out["samples"] == 1
    S, T, L, hkv, d = 100, 50, 4, 2, 64  # dense memory: 2 L h_kv d (2S+T+1) T bytes
    assert out["memory_bytes"] == 2 * L * hkv * d * (2 * S + T + 1) * T


def test_cost_model_picks_among_configs_and_presets(capsys, config, tmp_path):
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps({**CONFIG, "num_key_value_heads": 4}))
    pairs = ["--model-config", f"mine={config}", "--model-config", f"wide={wide}"]
    mine = cost_json(capsys, *pairs, "--model", "mine")
    other = cost_json(capsys, *pairs, "--model", "wide")
    assert (mine["model"], other["model"]) == ("mine", "wide")
    assert other["memory_bytes"] == 2 * mine["memory_bytes"]  # twice the KV heads
    assert cost_json(capsys, *pairs, "--model", "qwen3-4b")["model"] == "qwen3-4b"
    assert cost_json(capsys)["model"] == "qwen3-8b"


@pytest.fixture()
def renamed_trials(tmp_path):
    """A small trial table whose first model is renamed to one no preset knows."""
    trials = pd.read_parquet(embedded_path())
    trials = trials[trials["query_id"].isin(trials["query_id"].unique()[:3])]
    trials = trials.replace({"model": {trials["model"].iloc[0]: "my-model"}})
    path = tmp_path / "t.csv"
    trials.to_csv(path, index=False)
    return str(path)


def test_check_reads_model_configs_like_report(tmp_path, capsys, config, renamed_trials):
    base = str(tmp_path / "base.json")
    common = ["check", "--trials", renamed_trials, "--baseline", base]
    assert main([*common, "--update"]) == 2
    err = capsys.readouterr().err
    assert "field 'model'" in err and "--model-config my-model=" in err
    with_config = [*common, "--model-config", f"my-model={config}"]
    assert main([*with_config, "--update"]) == 0
    assert main(with_config) == 0
    assert "OK" in capsys.readouterr().out


def test_report_json_prints_the_summary_and_still_writes_the_folder(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "--json", "--no-plots", "--grid-points", "5", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed == json.loads((out / "summary.json").read_text())
    assert printed["synthetic"] is True and printed["entries"]
    assert captured.err == ""  # stderr is no terminal here: no progress bar either


def test_one_model_name_for_tables_configs_and_presets(tmp_path, capsys, config):
    """'Qwen/Qwen3-4B' in a table, in --model-config NAME= and in --model is one model:
    a config given under either spelling replaces the preset everywhere."""
    trials = pd.read_parquet(embedded_path())
    trials = trials[trials["query_id"].isin(trials["query_id"].unique()[:3])
                    & (trials["model"] == "qwen3-4b")].assign(model="Qwen/Qwen3-4B")
    table = tmp_path / "t.csv"
    trials.to_csv(table, index=False)

    def summary(*argv) -> dict:
        assert main(["report", "--json", "--no-plots", "--grid-points", "5", "--trials",
                     str(table), "--out", str(tmp_path / "rep"), *argv]) == 0
        return json.loads(capsys.readouterr().out)["entries"]

    preset = summary()
    spelled = [summary("--model-config", f"{name}={config}")
               for name in ("Qwen/Qwen3-4B", "qwen3-4b", "QWEN3-4B")]
    assert spelled[0] == spelled[1] == spelled[2] != preset
    base = tmp_path / "base.json"
    check = ["check", "--trials", str(table), "--baseline", str(base)]
    assert main([*check, "--update", "--model-config", f"qwen3-4b={config}"]) == 0
    assert main([*check, "--model-config", f"Qwen/Qwen3-4B={config}"]) == 0  # the same numbers
    assert main(check) == 1  # the preset's numbers differ
    capsys.readouterr()
    via_config = cost_json(capsys, "--model", "Qwen/Qwen3-4B", "--model-config",
                           f"qwen3-4b={config}")
    assert via_config["model"] == "qwen3-4b"
    assert via_config["memory_bytes"] == cost_json(capsys, "--model-config", f"x={config}")[
        "memory_bytes"]
    assert main(["cost", "--prompt-len", "1", "--gen-len", "1", "--model-config",
                 f"qwen3-4b={config}", "--model-config", f"Qwen/Qwen3-4B={tmp_path}"]) == 2
    assert "given twice" in capsys.readouterr().err
