"""Hostile but realistic input to every command: one line on stderr, exit 2, and no
file of the user's touched. Plus kills, closed pipes and folder safety (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from kinetics.analysis.trials import embedded_path
from kinetics.cli import main
from kinetics.cli._output import MARKER, remove_stale_temporaries

REPO = Path(__file__).resolve().parents[2]
FAST_REPORT = ["report", "--quiet", "--no-plots", "--grid-points", "5"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """A scratch folder as the current folder, holding a user's trial table and notes."""
    monkeypatch.chdir(tmp_path)
    trials = pd.read_parquet(embedded_path()).head(2000)
    user = tmp_path / "d"
    user.mkdir()
    trials.to_csv(user / "trials.csv", index=False)
    (user / "notes.txt").write_text("my notes")
    baseline = {"schema": 1, "hardware": "b200", "intensity": None, "entries": [
        {"law": "kinetics", "strategy": "best_of_n", "method": "dense", "budget_eflops": 1e15,
         "accuracy": 0.5, "optimal_model": "qwen3-8b"}]}
    (tmp_path / "base.json").write_text(json.dumps(baseline))
    for name, top, entry in [("intensity", {"intensity": "562"}, {}),
                             ("hardware", {"hardware": 7}, {}),
                             ("law", {}, {"law": ["kinetics"]})]:
        bad = {**baseline, **top, "entries": [{**baseline["entries"][0], **entry}]}
        (tmp_path / f"bad-{name}.json").write_text(json.dumps(bad))
    (tmp_path / "config.json").write_text(json.dumps({"text_config": ["not", "an", "object"]}))
    inf_trials = trials.astype({"gen_len": float})
    inf_trials.loc[4, "gen_len"] = float("inf")
    inf_trials.to_csv(tmp_path / "inf.csv", index=False)
    entry = baseline["entries"][0]
    for name, entries in [  # baselines `kinetics check` must refuse as bad input, not compare
        ("dup", [entry, entry]), ("clash", [entry, {**entry, "accuracy": 0.7}]),
        ("acc-high", [{**entry, "accuracy": 1.5}]), ("acc-low", [{**entry, "accuracy": -0.2}]),
        ("acc-pct", [{**entry, "accuracy": 50}]), ("budget-0", [{**entry, "budget_eflops": 0}]),
        ("budget-neg", [{**entry, "budget_eflops": -1e15}]),
        ("law-typo", [{**entry, "law": "kinetcs"}]), ("method", [{**entry, "method": "sparse"}]),
        ("strategy", [{**entry, "strategy": "best_of_3"}]),
        ("config", [{**entry, "config": 16}])]:
        (tmp_path / f"bad-{name}.json").write_text(json.dumps({**baseline, "entries": entries}))
    (tmp_path / "bad-tpu.json").write_text(json.dumps({**baseline, "hardware": "tpu9"}))
    (tmp_path / "bad-neg-intensity.json").write_text(json.dumps({**baseline, "intensity": -1}))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    return tmp_path


COST = ["cost", "--prompt-len", "10", "--gen-len", "10"]
BAD_INPUT = [
    # (argv, what stderr must say)
    (["report", "--trials", "d/trials.csv", "--out", "d"], "holds files kinetics did not write"),
    (["report", "--out", "."], "current folder"),
    (["report", "--out", ""], "--out is empty"),
    (["report", "--out", ".."], "current folder or one above it"),
    (["report", "--out", "d/notes.txt"], "exists and is not a folder"),
    (["report", "--out", "d/notes.txt/rep"], "notes.txt is not a folder"),
    (["report", "--intensity", "inf"], "expected a finite number"),
    (["report", "--intensity", "nan"], "expected a finite number"),
    (["report", "--trials", "inf.csv", "--out", "r"], "inf.csv, row 5, field 'gen_len'"),
    (["check", "--baseline", "base.json", "--tolerance", "nan"], "expected a finite number"),
    (["check", "--baseline", "base.json", "--tolerance", "inf"], "expected a finite number"),
    (["check", "--baseline", "base.json", "--intensity", "inf"], "expected a finite number"),
    (["check", "--baseline", "bad-intensity.json"], "field 'intensity'"),
    (["check", "--baseline", "bad-hardware.json"], "field 'hardware'"),
    (["check", "--baseline", "bad-law.json"], "row 1, field 'law'"),
    (["check", "--baseline", "d"], "is a folder"),
    ([*COST, "--intensity", "inf"], "expected a finite number"),
    ([*COST, "--model-config", "config.json"], "expected NAME=PATH"),
    ([*COST, "--model-config", "mine=config.json"], "field 'text_config'"),
    ([*COST, "--model-config", "a=config.json", "--model-config", "b=config.json"],
     "pick one with --model NAME"),
    ([*COST, "--model-config", "a=config.json", "--model-config", "a=other.json"],
     "given twice"),
    (["report", "--model-config", "nopath"], "expected NAME=PATH"),
    (["check", "--baseline", "base.json", "--model-config", "x"], "expected NAME=PATH"),
    (["ingest", "raw", "--tokenizer", "t", "--model-config", "=p"], "expected NAME=PATH"),
    # baselines are validated like trial tables: duplicates, ranges, known names
    (["check", "--baseline", "bad-dup.json"], "bad-dup.json, row 2, field 'budget_eflops': "
     "repeats row 1: two entries"),
    (["check", "--baseline", "bad-clash.json"], "row 2, field 'budget_eflops': contradicts row 1"),
    (["check", "--baseline", "bad-acc-high.json"], "field 'accuracy': expected a fraction from "
     "0 to 1, got 1.5"),
    (["check", "--baseline", "bad-acc-low.json"], "field 'accuracy': expected a fraction"),
    (["check", "--baseline", "bad-acc-pct.json"], "field 'accuracy': expected a fraction"),
    (["check", "--baseline", "bad-budget-0.json"], "field 'budget_eflops': expected a budget > 0"),
    (["check", "--baseline", "bad-budget-neg.json"], "field 'budget_eflops': expected a budget"),
    (["check", "--baseline", "bad-law-typo.json"], "field 'law': unknown law 'kinetcs'"),
    (["check", "--baseline", "bad-method.json"], "field 'method': unknown method 'sparse'"),
    (["check", "--baseline", "bad-strategy.json"], "field 'strategy': unknown strategy"),
    (["check", "--baseline", "bad-config.json"], "field 'config': expected a string, got 16"),
    (["check", "--baseline", "bad-tpu.json"], "bad-tpu.json, field 'hardware': expected a "
     "hardware preset"),
    (["check", "--baseline", "bad-neg-intensity.json"], "field 'intensity': expected a finite "
     "number >= 0"),
    # JSON nested too deeply for the parser: one line, not a RecursionError
    (["check", "--baseline", "deep.json"], "deep.json: not valid JSON here (nested too deeply"),
    ([*COST, "--model-config", "m=deep.json"], "deep.json: not valid JSON here (nested too deeply"),
    (["report", "--model-config", "qwen3-8b=deep.json", "--out", "r"], "deep.json: not valid JSON"),
    # a --model-config the table never uses is a typo, not something to ignore
    (["report", "--model-config", "qwen3-9b=config.json", "--out", "r"],
     "--model-config qwen3-9b: the trial table has no model 'qwen3-9b' (it has qwen3-"),
    # an output path that is an input is refused, --force or not
    (["check", "--update", "--trials", "d/trials.csv", "--baseline", "d/trials.csv"],
     "d/trials.csv: is an input of this run"),
    (["ingest", "d/trials.csv", "--tokenizer", "t", "--out", "d/trials.csv", "--force"],
     "d/trials.csv: is an input of this run"),
    # size flags named, before anything is loaded
    ([*COST, "--method", "blocktopk", "--block-size", "0", "--topk-blocks", "4"],
     "--block-size must be 1.."),
    ([*COST, "--method", "blocktopk", "--block-size", "16", "--topk-blocks", "-3"],
     "--topk-blocks must be 0.."),
    ([*COST, "--method", "topk", "--budget", "-5"], "--budget must be 1.."),
    ([*COST, "--batch-size", "0"], "--batch-size must be 1.."),
    (["quality", "--methods", ""], "--methods needs at least one of topk, blocktopk"),
    (["quality", "--methods", " , "], "--methods needs at least one"),
    (["quality", "--tokens", "1000000000"], "--tokens must be 2..16384"),
    (["quality", "--budgets", "1000000000", "--tokens", "160"],
     "largest of --budgets (1000000000 tokens) exceeds --tokens 160"),
    (["quality", "--budgets", "2048"], "exceeds --tokens 1024 (the default)"),
    (["quality", "--threads", "100000"], "--threads must be 1.."),
    (["quality", "--text", "d"], "d: is a folder, expected a file"),
    (["quality", "--text", "d/notes.txt", "--budgets", "128", "--block-sizes", "16"],
     "notes.txt: holds 8 bytes, too few for the largest of --budgets (128 tokens)"),
    (["bench", "--grid", "--grid-models", "llama"], "unknown model 'llama' (presets: qwen3-0.6b"),
]


def run_cli(argv: list[str]) -> int:
    """main()'s exit code, also for argparse errors (which raise SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize("argv, message", BAD_INPUT,
                         ids=[" ".join(a)[:60] for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(work, capsys, argv, message):
    before = snapshot(work)
    code = run_cli(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "--model-config" not in err or "--model-config" in argv  # no flag it lacks
    assert snapshot(work) == before  # nothing written, nothing removed


def test_a_users_file_added_to_an_earlier_report_survives(work, capsys):
    out = work / "rep"
    assert main([*FAST_REPORT, "--out", str(out)]) == 0
    (out / "mine.txt").write_text("keep")
    before = snapshot(work)
    assert main([*FAST_REPORT, "--out", str(out)]) == 2
    assert "mine.txt" in capsys.readouterr().err
    assert snapshot(work) == before


def test_an_empty_folder_or_an_earlier_report_is_replaced(work):
    out = work / "rep"
    out.mkdir()
    assert main([*FAST_REPORT, "--out", str(out)]) == 0
    assert (out / MARKER).is_file() and (out / "summary.json").is_file()
    assert main([*FAST_REPORT, "--intensity", "3", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["intensity"] == 3.0
    assert not [p for p in work.iterdir() if ".old-" in p.name or ".tmp-" in p.name]


def test_a_symlinked_out_is_followed_and_stays_a_link(work):
    target = work / "real"
    target.mkdir()
    (work / "link").symlink_to(target)
    assert main([*FAST_REPORT, "--out", "link"]) == 0
    assert (work / "link").is_symlink() and (target / "summary.json").is_file()
    assert main([*FAST_REPORT, "--out", "link"]) == 0  # replaces the report it points to
    assert (work / "link").is_symlink() and (target / "summary.json").is_file()
    assert not [p for p in work.iterdir() if ".old-" in p.name or ".tmp-" in p.name]
    (work / "broken").symlink_to(work / "nowhere")
    assert main([*FAST_REPORT, "--out", "broken"]) == 2


def _temporaries(folder: Path, name: str) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.")]


def _start_report_and_wait_for_its_temporary(work: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "kinetics", *FAST_REPORT, "--grid-points",
                             "100", "--out", name], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not _temporaries(work, name):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no temporary folder appeared"
        time.sleep(0.02)
    return proc


def test_a_sigkilled_reports_temporary_is_removed_by_the_next_run(work):
    proc = _start_report_and_wait_for_its_temporary(work, "rep")
    proc.kill()
    proc.wait()
    assert _temporaries(work, "rep")  # SIGKILL cannot clean up after itself
    assert main([*FAST_REPORT, "--out", "rep"]) == 0
    assert not _temporaries(work, "rep")
    assert (work / "rep" / "summary.json").is_file()


def test_sigterm_exits_143_and_removes_its_temporary(work):
    proc = _start_report_and_wait_for_its_temporary(work, "rep")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert proc.stderr.read().decode().strip() == "kinetics report: terminated"
    assert not _temporaries(work, "rep") and not (work / "rep").exists()


def test_stale_cleanup_spares_live_runs_and_folders_it_cannot_prove_are_ours(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    live = tmp_path / f".rep.tmp-{os.getpid()}-abc"
    foreign = tmp_path / f".rep.tmp-{dead}-abc"
    stale = tmp_path / f".rep.tmp-{dead}-xyz"
    for folder in (live, foreign, stale):
        folder.mkdir()
    (live / MARKER).write_text("x")
    (foreign / "data.csv").write_text("user data")
    (stale / MARKER).write_text("x")
    assert remove_stale_temporaries(tmp_path, "rep") == [stale]
    assert live.exists() and foreign.exists()


@pytest.mark.parametrize("argv", [COST, [*FAST_REPORT, "--out", "rep"]],
                         ids=["cost", "report"])
def test_a_closed_stdout_pipe_exits_quietly(work, argv):
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` that has already exited
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.run([sys.executable, "-m", "kinetics", *argv], cwd=work, env=env,
                              stdout=write_end, stderr=subprocess.PIPE, timeout=300)
    finally:
        os.close(write_end)
    assert proc.returncode in (0, 141)
    assert proc.stderr.decode() == ""
