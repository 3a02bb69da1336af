"""`kinetics report` end to end on the embedded data: summary schema, single-choice frontier, --smooth, --param-count."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kinetics.analysis.frontier import law_intensity, moving_average, option_cost
from kinetics.analysis.report import SUMMARY_BUDGETS, analyze, build_summary
from kinetics.analysis.trials import load_trials, resolve_models
from kinetics.cli import main
from kinetics.models import MODELS
from tests.schemas import errors, validate

FILES = [".kinetics-report", "frontier.csv", "pareto.csv", "best_of_n.csv", "long_cot.csv",
         "summary.json", "SYNTHETIC.txt"] + [f"{name}.{ext}" for name in
                             ("accuracy_vs_cost", "pareto_dense_vs_sparse", "optimal_model_size")
                             for ext in ("png", "pdf")]


@pytest.fixture(scope="module")
def printed_report(tmp_path_factory):
    """The default report's folder and what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("rep") / "kinetics-report"
    assert main(["report", "--quiet", "--no-plots", "--intensity", "1", "--out", str(out)]) == 0
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["report", "--quiet", "--out", str(out)]) == 0  # replaces the earlier one
    return out, stdout.getvalue()


@pytest.fixture(scope="module")
def report_dir(printed_report):
    return printed_report[0]


def test_the_terminal_output_fits_80_columns_and_says_what_it_shows(printed_report):
    _, text = printed_report
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    assert "Frontier accuracy" in text and "optimal model" in text
    headers = [line for line in lines if line.strip().startswith("eFLOPs")
               or line.strip().startswith("FLOPs")]
    assert len(headers) == 4 and all(h.count("acc") == 3 and h.count("model") == 3
                                     for h in headers)
    assert "0.000 -" not in text and "0.000" not in text.split("Frontier")[1].replace(
        "1.000", "")  # nothing fits: '-', not a zero accuracy
    summary = json.loads((printed_report[0] / "summary.json").read_text())
    empty = [e for e in summary["entries"] if e["optimal_model"] is None]
    rows = [line for line in lines if line.strip()[:1].isdigit() and "e+" in line]
    assert len(rows) == len(summary["entries"]) // 3
    assert sum(line.count(" - ") for line in rows) >= len(empty)  # every empty cell shows '-'


def test_default_figures_are_png_and_pdf_at_200_dpi(report_dir):
    from PIL import Image

    with Image.open(report_dir / "pareto_dense_vs_sparse.png") as image:
        assert image.size[0] == 12 * 200
    assert not list(report_dir.glob("*.svg"))


def test_report_on_embedded_data_writes_every_file(report_dir, capsys):
    assert sorted(p.name for p in report_dir.iterdir()) == sorted(FILES)
    assert json.loads((report_dir / "summary.json").read_text())["hardware"] == "b200"
    assert sorted((report_dir / ".kinetics-report").read_text().splitlines()[1:]) == sorted(
        FILES[1:])
    for name in ("accuracy_vs_cost", "pareto_dense_vs_sparse", "optimal_model_size"):
        assert (report_dir / f"{name}.png").stat().st_size > 10_000
        assert (report_dir / f"{name}.pdf").read_bytes().startswith(b"%PDF")
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
                             "param_count", "kv_dtype", "weight_dtype", "batch_size", "entries",
                             "provenance"]
    validate(summary, "summary")
    assert summary["provenance"]["command"] == f"kinetics report --quiet --out {report_dir}"
    assert summary["param_count"] == "published"
    assert (summary["kv_dtype"], summary["weight_dtype"], summary["batch_size"]) == (
        "bf16", "bf16", None)
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
    assert "SYNTHETIC" in out and "Best-of-N, Kinetics law" in out
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


@pytest.fixture(scope="module")
def embedded():
    trials, synthetic = load_trials(None)
    models = resolve_models(trials)
    return trials, models, analyze(trials, models, 562.5, grid_points=12)


def test_summary_accuracy_is_one_model_and_config_for_all_queries(embedded):
    """Each summary number, recomputed by a loop: the chosen (model, config) pair's mean
    over queries of its best option that fits, and no pair does better."""
    trials, models, analysis = embedded
    summary = build_summary(trials, 562.5, hardware="b200", synthetic=True, source="s",
                            options=analysis.options)
    assert summary.param_count == "published"
    for e in summary.entries:
        if e.method != "dense" or e.strategy != "best_of_n":
            continue
        table = analysis.options["best_of_n"]
        table = table[table["method"] == "dense"]
        cost = option_cost(table, law_intensity(e.law, 562.5))
        fit = table[cost <= e.budget_eflops]
        n_queries = table["query_id"].nunique()
        scores = {pair: part.groupby("query_id")["coverage"].max().sum() / n_queries
                  for pair, part in fit.groupby(["model", "config"])}
        if not scores:
            assert e.optimal_model is None and e.accuracy == 0.0
            continue
        assert e.accuracy == pytest.approx(max(scores.values()), abs=1e-9)
        assert scores[(e.optimal_model, e.config)] == pytest.approx(e.accuracy, abs=1e-9)


def test_frontier_csv_names_the_oracle_apart(report_dir):
    frontier = pd.read_csv(report_dir / "frontier.csv")
    assert "per_query_oracle_accuracy" in frontier and "model_accuracy" not in frontier
    assert not any("frontier" in column for column in frontier.columns)
    assert (frontier["per_query_oracle_accuracy"] >= frontier["accuracy"] - 1e-12).all()
    assert (frontier.loc[frontier["model"].isna(), "accuracy"] == 0).all()
    # on this set the per-query oracle is strictly above the single choice somewhere
    assert (frontier["per_query_oracle_accuracy"] > frontier["accuracy"] + 0.01).any()


def test_smooth_3_averages_the_curves_and_leaves_the_summary(tmp_path):
    plain, smooth = tmp_path / "plain", tmp_path / "smooth"
    for out, extra in ((plain, []), (smooth, ["--smooth", "3"])):
        assert main(["report", "--quiet", "--no-plots", "--grid-points", "20", "--out", str(out),
                     *extra]) == 0
    a, b = (pd.read_csv(d / "frontier.csv") for d in (plain, smooth))
    assert (a["model"].fillna("") == b["model"].fillna("")).all()
    for _, part in a.groupby(["law", "strategy", "method"]):
        got = b.loc[part.index, "accuracy"].to_numpy()
        want = moving_average(part["accuracy"].to_numpy(), part["model"].notna().to_numpy(), 3)
        np.testing.assert_allclose(got, want, atol=1e-12)
    assert (b.loc[b["model"].isna(), "accuracy"] == 0).all()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (plain, smooth))
    assert "--smooth" in b.pop("provenance")["command"]
    assert "--smooth" not in a.pop("provenance")["command"]
    assert a == b


@pytest.mark.parametrize("width", ["2", "0", "-3"])
def test_bad_smooth_width_exits_2(tmp_path, capsys, width):
    assert main(["report", "--quiet", "--no-plots", "--smooth", width, "--out",
                 str(tmp_path / "r")]) == 2
    assert "--smooth" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_param_count_derived_prices_the_shapes(tmp_path):
    assert main(["report", "--quiet", "--no-plots", "--grid-points", "4", "--param-count",
                 "derived", "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["param_count"] == "derived"
    trials, _ = load_trials(None)
    derived = build_summary(trials, 562.5, hardware="b200", synthetic=True,
                            source="embedded", param_count="derived")
    published = build_summary(trials, 562.5, hardware="b200", synthetic=True,
                              source="embedded")
    assert summary["entries"] == derived.to_json()["entries"]
    assert derived.entries != published.entries  # 0.6B and 1.7B lose a whole embedding


def test_a_failure_while_writing_leaves_the_old_report_untouched(tmp_path, monkeypatch):
    from kinetics.analysis import plots

    out = tmp_path / "rep"
    assert main(["report", "--quiet", "--no-plots", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "pareto_dense_vs_sparse", boom)
    with pytest.raises(RuntimeError):
        main(["report", "--quiet", "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no temp folder left behind


@pytest.mark.parametrize("names, room, want, prefix", [
    (["qwen3-8b", "qwen3-32b"], 12, ["qwen3-8b", "qwen3-32b"], ""),
    (["qwen3-235b-a22b", "qwen3-30b-a3b"], 12, ["235b-a22b", "30b-a3b"], "qwen3-"),
    (["a-very-long-model-name", "b"], 8, ["a-very-…", "b"], ""),
])
def test_model_names_are_shortened_only_to_fit(names, room, want, prefix):
    from kinetics.cli.report_cmd import _short_names

    short, cut = _short_names(names, room)
    assert [short[n] for n in names] == want and cut == prefix
    assert all(len(s) <= room for s in short.values())


def test_the_table_fits_80_columns_with_long_model_names():
    from kinetics.analysis.report import Summary, SummaryEntry
    from kinetics.cli.report_cmd import _terminal_table
    from kinetics.hardware import get_hardware

    entries = tuple(SummaryEntry(law, "best_of_n", method, budget, 0.5, model, "c")
                    for law in ("kinetics", "flops") for method in ("dense", "topk", "blocktopk")
                    for budget, model in ((1e14, None), (1e15, "qwen3-235b-a22b"),
                                          (1e16, "qwen3-30b-a3b")))
    text = _terminal_table(Summary(True, "t", 562.5, "b200", "published", entries),
                           get_hardware("b200"))
    assert max(map(len, text.splitlines())) <= 80
    assert "235b-a22b" in text and "names without 'qwen3-'" in " ".join(text.split())
    assert text.count("0.500") == 12 and "0.000" not in text


def test_json_prints_summary_json_with_its_provenance(tmp_path, capsys):
    """--json prints the very object written to summary.json, provenance included, and
    both fit the shipped schema; without the record (or with a wrong type) they do not."""
    out = tmp_path / "r"
    assert main(["report", "--quiet", "--no-plots", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "summary.json").read_text())
    validate(printed, "summary")
    assert printed["provenance"]["command"].startswith("kinetics report --quiet --no-plots")
    assert errors({k: v for k, v in printed.items() if k != "provenance"}, "summary")
    assert errors({**printed, "provenance": "kinetics 0.1.0"}, "summary")
    assert errors({**printed, "intensity": "562.5"}, "summary")
