"""Report figures: the chosen hardware names the seconds axis, labels and titles read as
prose, the optimal-model plot names models, a table without dense rows still draws."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from kinetics.analysis import plots
from kinetics.analysis.report import analyze
from kinetics.analysis.trials import load_trials, resolve_models
from kinetics.cli import main
from kinetics.hardware import get_hardware

FIGURES = ("accuracy_vs_cost", "pareto_dense_vs_sparse", "optimal_model_size")


@pytest.fixture(scope="module")
def small():
    trials, _ = load_trials(None)
    trials = trials[trials["model"].isin(["qwen3-1.7b", "qwen3-8b"])]
    models = resolve_models(trials)
    return trials, models, analyze(trials, models, get_hardware("h100").intensity, grid_points=8)


def _draw(name, analysis, models, hardware):
    fn = getattr(plots, name)
    args = (analysis,) if name == "pareto_dense_vs_sparse" else (analysis, models)
    return fn(*args, synthetic=True, hardware=hardware)


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_xscale() == "log"]


@pytest.mark.parametrize("name", FIGURES)
def test_seconds_axis_names_the_chosen_hardware_and_no_preset_hides_it(small, name):
    _, models, analysis = small
    fig = _draw(name, analysis, models, get_hardware("h100"))
    labels = [child.get_xlabel() for ax in _panels(fig) for child in ax.child_axes]
    assert labels and all(label.startswith("H100 seconds (at 0.99 PFLOP/s)") for label in labels)
    plt.close(fig)
    fig = _draw(name, analysis, models, None)
    assert all(not ax.child_axes for ax in _panels(fig))
    plt.close(fig)


@pytest.mark.parametrize("name", FIGURES)
def test_labels_and_titles_read_as_prose(small, name):
    _, models, analysis = small
    fig = _draw(name, analysis, models, None)
    for ax in _panels(fig):
        title = ax.get_title()
        assert "_" not in title and "--" not in title and "topk" not in title
        unit = ax.get_xlabel().rsplit(", ", 1)[-1]
        assert unit == ("FLOPs" if "FLOPs-only" in title else "eFLOPs")
        assert all("_" not in text.get_text() for text in ax.get_legend().get_texts())
    plt.close(fig)


def test_optimal_model_ticks_are_model_names(small):
    _, models, analysis = small
    fig = plots.optimal_model_size(analysis, models, synthetic=True)
    for ax in _panels(fig):
        assert [t.get_text() for t in ax.get_yticklabels()] == ["qwen3-1.7b", "qwen3-8b"]
    plt.close(fig)


def test_a_table_without_dense_rows_draws_what_it_has(small):
    trials, models, _ = small
    sparse = trials[trials["method"] == "blocktopk"]
    analysis = analyze(sparse, models, 562.5, grid_points=8)
    fig = plots.accuracy_vs_cost(analysis, models, synthetic=True)
    for ax in _panels(fig):
        assert ax.get_lines() and "no dense rows, showing block top-k" in ax.get_title()
    plt.close(fig)


def test_report_formats_dpi_and_the_table_name_the_choices(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "--quiet", "--grid-points", "4", "--hardware", "h100", "--formats",
                 "pdf", "--dpi", "40", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.pdf")) == sorted(f"{n}.pdf" for n in FIGURES)
    assert not list(out.glob("*.png")) and not list(out.glob("*.svg"))
    printed = capsys.readouterr().out
    assert "H100 s" in printed and "B200" not in printed and "(PDF)" in printed
    assert main(["report", "--quiet", "--no-plots", "--grid-points", "4", "--intensity", "300",
                 "--out", str(tmp_path / "custom")]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("law"))
    assert " s " not in header and "eFLOPs" in header


def test_bad_formats_exit_2(tmp_path, capsys):
    assert main(["report", "--quiet", "--formats", "png,gif", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--formats" in err[0] and not (tmp_path / "r").exists()
