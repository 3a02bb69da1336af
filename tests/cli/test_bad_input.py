"""Hostile but realistic input to every command: one line on stderr, exit 2, and no
file of the user's touched. Plus kills, closed pipes and folder safety (issue 11)."""

from __future__ import annotations

import errno
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
from kinetics.errors import InputError

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
    trials = pd.read_parquet(embedded_path())
    trials = trials[trials["query_id"].isin(trials["query_id"].unique()[:3])]  # every config
    trials = trials.reset_index(drop=True)
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


# --- faults: a full disk, two runs at once, a kill between renames, a protected report ---

def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_full_disk_is_one_line_and_the_earlier_report_stays(work, capsys, monkeypatch):
    assert main([*FAST_REPORT, "--out", "rep"]) == 0
    before = snapshot(work)
    monkeypatch.setattr(pd.DataFrame, "to_csv", _no_space)
    assert main([*FAST_REPORT, "--out", "rep"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "kinetics report: error: rep: cannot write it (no space left on device); "
        "nothing was replaced"] or str(work / "rep") in err, err
    assert "no space left on device" in err and len(err.strip().splitlines()) == 1
    assert snapshot(work) == before and _leftovers(work) == []


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"),  # pyarrow
    OSError(errno.EDQUOT, "Disk quota exceeded"),
])
def test_a_full_disk_under_check_update_keeps_the_baseline(work, capsys, monkeypatch, error):
    before = snapshot(work)
    original = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.startswith(".base.json.tmp-"):
            original(self, "half a fi", encoding="utf-8")  # a partial write, then the error
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["check", "--update", "--baseline", "base.json", "--trials", "d/trials.csv"]) == 2
    err = capsys.readouterr().err
    assert "base.json: cannot write it (" in err and "nothing was replaced" in err, err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(work) == before and _leftovers(work) == []


HOLD_LOCK = ("import sys, time; from kinetics.cli._output import output_lock\n"
             "with output_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(120)")


def _hold_lock(work: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, name], cwd=work, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("argv, out", [
    ([*FAST_REPORT, "--out", "rep"], "rep"),
    (["check", "--update", "--baseline", "base.json", "--trials", "d/trials.csv"], "base.json"),
])
def test_a_second_run_into_a_locked_output_says_so_and_touches_nothing(work, capsys, argv, out):
    holder = _hold_lock(work, out)
    try:
        before = snapshot(work)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{out}: another kinetics run is writing it" in err, err
        assert len(err.strip().splitlines()) == 1 and snapshot(work) == before
    finally:
        holder.kill()
        holder.wait()
    assert main(argv) == 0  # a dead holder's lock is gone with it


def test_the_lock_file_is_removed_and_waiting_works(tmp_path):
    from kinetics.cli._output import lock_path, output_lock

    target = tmp_path / "rep"
    holder = _hold_lock(tmp_path, "rep")
    try:
        with pytest.raises(InputError, match="another kinetics run is writing it"):
            with output_lock(target, wait_s=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(target, wait_s=5):
        with output_lock(target):  # re-entrant in one process
            assert lock_path(target).exists()
    assert not lock_path(target).exists()


BRIEF_HOLD = ("import sys, time; from kinetics.cli._output import output_lock\n"
              "with output_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(0.5)")


@pytest.mark.parametrize("check", ["file", "folder"])
def test_checking_an_output_waits_out_another_check(tmp_path, check):
    """Another process checking the same output holds its lock for an instant (two
    torchrun ranks checking one --json-out at once): the check waits, it does not
    refuse."""
    from kinetics.cli._output import PROBE_WAIT_S, check_output_file, check_output_folder

    assert PROBE_WAIT_S > 0.5
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", BRIEF_HOLD, "out"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            checked = check_output_file("out") if check == "file" else check_output_folder("out")
        finally:
            os.chdir(cwd)
        assert checked == (tmp_path / "out").resolve()
    finally:
        holder.kill()
        holder.wait()


def test_two_runs_into_one_earlier_report_never_fail_badly(work):
    """Two reports started together into a folder holding an earlier report: each either
    writes the report or says another run is writing it; never a traceback, never a claim
    of foreign files; the folder ends as a whole report and nothing is left beside it."""
    assert main([*FAST_REPORT, "--out", "rep"]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(2):
        procs = [subprocess.Popen([sys.executable, "-m", "kinetics", *FAST_REPORT, "--out", "rep"],
                                  cwd=work, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        assert 0 in [code for code, _ in results], results
        for code, err in results:
            assert code == 0 and err == "" or (
                code == 2 and "another kinetics run is writing it" in err), results
        assert (work / "rep" / "summary.json").is_file() and _leftovers(work) == []


def test_an_interrupt_between_the_two_renames_puts_the_earlier_report_back(work, capsys,
                                                                          monkeypatch):
    from kinetics.cli import _output

    assert main([*FAST_REPORT, "--out", "rep"]) == 0
    before = snapshot(work)
    monkeypatch.setattr(_output, "exchange_paths", lambda a, b: False)  # no renameat2 here
    original = os.rename

    def interrupted(src, dst):
        original(src, dst)
        if ".old-" in str(dst):
            raise KeyboardInterrupt  # Ctrl-C right after the earlier report moved aside

    monkeypatch.setattr(os, "rename", interrupted)
    assert main([*FAST_REPORT, "--out", "rep"]) == 130
    monkeypatch.setattr(os, "rename", original)
    assert snapshot(work) == before and _leftovers(work) == []
    assert main([*FAST_REPORT, "--intensity", "3", "--out", "rep"]) == 0  # fallback swap works
    assert json.loads((work / "rep" / "summary.json").read_text())["intensity"] == 3.0
    assert _leftovers(work) == []


def test_the_swap_is_one_atomic_exchange_where_the_system_has_it(tmp_path):
    from kinetics.cli._output import exchange_paths

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "new").write_text("new")
    (tmp_path / "b" / "old").write_text("old")
    if not exchange_paths(tmp_path / "a", tmp_path / "b"):
        pytest.skip("no renameat2(RENAME_EXCHANGE) on this system")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["new"]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["old"]


def test_an_old_report_left_by_a_killed_swap_is_restored_not_deleted(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()

    def old_copy(tag: str) -> Path:
        old = tmp_path / f".rep.old-{dead}-{tag}"
        old.mkdir()
        (old / MARKER).write_text("written by kinetics; files it may replace:\nsummary.json\n")
        (old / "summary.json").write_text(tag)
        return old

    old_copy("only")  # killed between the renames: rep is missing, this is the only copy
    assert remove_stale_temporaries(tmp_path, "rep") == []
    assert (tmp_path / "rep" / "summary.json").read_text() == "only"
    (tmp_path / "rep" / MARKER).unlink()  # rep is no longer a kinetics report
    kept = old_copy("kept")
    assert remove_stale_temporaries(tmp_path, "rep") == [] and kept.is_dir()
    (tmp_path / "rep" / MARKER).write_text("written by kinetics; files it may replace:\n")
    assert remove_stale_temporaries(tmp_path, "rep") == [kept]  # rep is ours again


def test_a_read_only_earlier_report_is_refused(work, capsys, monkeypatch):
    assert main([*FAST_REPORT, "--out", "rep"]) == 0
    rep = str(work / "rep")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if str(p).startswith(rep) and mode & os.W_OK else real_access(p, mode, **kw)))
    before = snapshot(work)
    assert main([*FAST_REPORT, "--out", "rep"]) == 2
    err = capsys.readouterr().err
    assert "rep: is read-only: kinetics does not replace a protected output" in err, err
    assert snapshot(work) == before and _leftovers(work) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_chmod_read_only_report_is_refused_and_nothing_accumulates(work, capsys):
    assert main([*FAST_REPORT, "--out", "rep"]) == 0
    for path in [*(work / "rep").iterdir(), work / "rep"]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        for _ in range(2):
            assert main([*FAST_REPORT, "--out", "rep"]) == 2
            assert "is read-only" in capsys.readouterr().err
            assert _leftovers(work) == []
    finally:
        (work / "rep").chmod(0o755)


def test_a_read_only_baseline_is_not_replaced(work, capsys, monkeypatch):
    real_access = os.access
    base = str(work / "base.json")
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if str(p) == base and mode & os.W_OK else real_access(p, mode, **kw)))
    before = snapshot(work)
    assert main(["check", "--update", "--baseline", "base.json", "--trials", "d/trials.csv"]) == 2
    assert "base.json: is read-only" in capsys.readouterr().err
    assert snapshot(work) == before


def test_a_report_never_replaces_the_file_it_reads(work, capsys):
    assert main([*FAST_REPORT, "--out", "rep"]) == 0
    before = snapshot(work)
    # pareto.csv is listed in the marker, so the folder may be replaced; but it is the input
    assert main([*FAST_REPORT, "--trials", "rep/pareto.csv", "--out", "rep"]) == 2
    err = capsys.readouterr().err
    assert "rep: holds an input of this run (rep/pareto.csv)" in err, err
    assert snapshot(work) == before


def test_quality_never_replaces_the_text_it_reads(work, capsys):
    out = work / "q"
    out.mkdir()
    (out / "sequence.txt").write_text("a long enough text to pass the size check. " * 10)
    (out / MARKER).write_text("written by kinetics; files it may replace:\nsequence.txt\n")
    before = snapshot(work)
    assert main(["quality", "--text", "q/sequence.txt", "--budgets", "64", "--block-sizes", "16",
                 "--out", "q"]) == 2
    err = capsys.readouterr().err
    assert "q: holds an input of this run (q/sequence.txt)" in err, err
    assert snapshot(work) == before


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("argv", [COST, [*COST, "--json"]], ids=["table", "json"])
def test_stdout_on_a_full_disk_is_one_line(work, argv):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open("/dev/full", "w") as full:  # every write: ENOSPC, as a full disk
        proc = subprocess.run([sys.executable, "-m", "kinetics", *argv], cwd=work, env=env,
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "kinetics cost: error: cannot write the output (no space left on device)"], proc.stderr
