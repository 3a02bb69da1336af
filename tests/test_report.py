"""`kinetics report` end to end on the embedded data, summary schema, speed."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from kinetics.cli import main
from kinetics.models import MODELS
from kinetics.report import SUMMARY_BUDGETS, analyze, build_summary
from kinetics.traces import load_trials

FILES = ["frontier.csv", "pareto.csv", "best_of_n.csv", "long_cot.csv", "summary.json",
         "SYNTHETIC.txt"] + [f"{name}.{ext}" for name in
                             ("accuracy_vs_cost", "pareto_dense_vs_sparse", "optimal_model_size")
                             for ext in ("png", "svg")]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "kinetics-report"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    assert main(["report", "--quiet", "--out", str(out)]) == 0
    return out


def test_report_on_embedded_data_writes_every_file(report_dir, capsys):
    assert sorted(p.name for p in report_dir.iterdir()) == sorted(FILES)
    assert not (report_dir / "stale.txt").exists()  # the folder is replaced as a whole
    for name in ("accuracy_vs_cost", "pareto_dense_vs_sparse", "optimal_model_size"):
        assert (report_dir / f"{name}.png").stat().st_size > 10_000
        assert "SYNTHETIC data" in (report_dir / f"{name}.svg").read_text()
    frontier = pd.read_csv(report_dir / "frontier.csv")
    for column in ("law", "strategy", "method", "budget_eflops", "accuracy", "model", "config"):
        assert column in frontier
    assert set(frontier["law"]) == {"kinetics", "flops"}
    assert set(frontier["strategy"]) == {"best_of_n", "long_cot", "majority_vote"}
    assert set(frontier["method"]) == {"dense", "topk", "blocktopk"}
    assert frontier.groupby(["law", "strategy", "method"]).size().eq(100).all()


def test_summary_schema_is_exact(report_dir):
    summary = json.loads((report_dir / "summary.json").read_text())
    assert list(summary) == ["schema", "synthetic", "trials_source", "intensity", "hardware",
                             "entries"]
    assert summary["schema"] == 1 and summary["synthetic"] is True
    assert summary["intensity"] == 562.5 and summary["hardware"] == "b200"
    assert len(summary["entries"]) == 2 * 2 * 3 * len(SUMMARY_BUDGETS)
    for entry in summary["entries"]:
        assert list(entry) == ["law", "strategy", "method", "budget_eflops", "accuracy",
                               "optimal_model", "config"]
        assert entry["law"] in ("kinetics", "flops")
        assert entry["strategy"] in ("best_of_n", "long_cot")
        assert entry["optimal_model"] is None or entry["optimal_model"] in MODELS
        assert 0.0 <= entry["accuracy"] <= 1.0


def test_terminal_output_says_synthetic(tmp_path, capsys):
    assert main(["report", "--quiet", "--no-plots", "--intensity", "100", "--out",
                 str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "kinetics best_of_n" in out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["hardware"] is None and summary["intensity"] == 100.0


def test_out_path_that_is_a_file_exits_2(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["report", "--quiet", "--no-plots", "--out", str(target)]) == 2
    assert target.read_text() == "x"


def test_build_summary_is_deterministic_and_matches_the_report():
    trials, synthetic = load_trials(None)
    a = build_summary(trials, 562.5, hardware="b200", synthetic=synthetic, source="s")
    b = build_summary(trials, 562.5, hardware="b200", synthetic=synthetic, source="s")
    assert a == b


def test_full_embedded_analysis_runs_under_five_seconds():
    start = time.perf_counter()
    trials, synthetic = load_trials(None)
    from kinetics.traces import resolve_models

    models = resolve_models(trials)
    analysis = analyze(trials, models, 562.5)
    build_summary(trials, 562.5, hardware="b200", synthetic=synthetic, source="s",
                  options=analysis.options)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"full embedded analysis took {elapsed:.2f} s"


def test_a_failure_while_writing_leaves_the_old_report_untouched(tmp_path, monkeypatch):
    from kinetics import plots

    out = tmp_path / "rep"
    out.mkdir()
    (out / "old.txt").write_text("keep me")

    def boom(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "pareto_dense_vs_sparse", boom)
    with pytest.raises(RuntimeError):
        main(["report", "--quiet", "--out", str(out)])
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no temp folder left behind
