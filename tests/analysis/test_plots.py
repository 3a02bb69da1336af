"""Report figures: the chosen hardware names the seconds axis, labels and titles read as
prose, the optimal-model plot names models, a table without dense rows still draws."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
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
    for ax in _panels(fig):
        (child,) = ax.child_axes
        if "FLOPs-only" in ax.get_title():  # x holds no bytes: the seconds count compute only
            assert child.get_xlabel() == ("H100 compute seconds (FLOPs / 0.99 PFLOP/s; memory "
                                          "time not counted)")
        else:
            assert child.get_xlabel() == ("H100 seconds: compute + memory time (eFLOPs / "
                                          "0.99 PFLOP/s)")
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
        assert "FLOPs-only" in title or "I = 295.4 FLOPs/byte)" in title  # rounded, with unit
        legend = ax.get_legend() or fig.legends[0]
        assert all("_" not in text.get_text() for text in legend.get_texts())
    plt.close(fig)


@pytest.mark.parametrize("name", FIGURES)
def test_rows_are_strategies_columns_laws_and_every_panel_says_synthetic(small, name):
    _, models, analysis = small
    fig = _draw(name, analysis, models, None)
    axes = _panels(fig)
    assert len(axes) == 4
    for i, ax in enumerate(axes):
        title = ax.get_title()
        assert title.startswith("Best-of-N" if i < 2 else "long CoT")
        assert ("Kinetics law" if i % 2 == 0 else "FLOPs-only law") in title
        assert [t.get_text() for t in ax.texts] == ["SYNTHETIC"]
    plt.close(fig)
    real = (plots.pareto_dense_vs_sparse(analysis, synthetic=False) if name.startswith("pareto")
            else getattr(plots, name)(analysis, models, synthetic=False))
    assert not any(ax.texts for ax in _panels(real)) and "SYNTHETIC" not in real._suptitle.get_text()
    plt.close(real)


def test_optimal_model_strips_name_methods_and_colour_models(small):
    _, models, analysis = small
    fig = plots.optimal_model_size(analysis, models, synthetic=True)
    for ax in _panels(fig):
        assert [t.get_text() for t in ax.get_yticklabels()] == ["dense", "top-k", "block top-k"]
        assert ax.patches  # the strips
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["qwen3-1.7b (2.03B)", "qwen3-8b (8.19B)"]
    colors = plots.model_colors(["qwen3-1.7b", "qwen3-8b"])
    used = {tuple(p.get_facecolor()) for ax in _panels(fig) for p in ax.patches}
    assert used <= set(colors.values()) and len(used) == 2
    plt.close(fig)


def test_choice_runs_cover_the_grid_between_geometric_midpoints():
    budgets = [1.0, 10.0, 100.0, 1000.0]
    runs = plots.choice_runs(budgets, ["a", "a", None, "b"])
    assert [r[2] for r in runs] == ["a", None, "b"]
    edges = [runs[0][0]] + [r[1] for r in runs]
    assert edges == pytest.approx([10**-0.5, 10**1.5, 10**2.5, 10**3.5])
    assert plots.choice_runs([], []) == []
    (only,) = plots.choice_runs([5.0], ["x"])
    assert only[0] < 5.0 < only[1] and only[2] == "x"


@pytest.mark.parametrize("value, text", [(1e15, "10¹⁵"), (3e15, "3×10¹⁵"), (1e-2, "10⁻²"),
                                         (1.0, "10⁰"), (0.0, "")])
def test_tick_labels_are_plain_text_powers_of_ten(value, text):
    assert plots.power_of_ten(value) == text


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
    assert "h100_seconds" in pd.read_csv(out / "frontier.csv")
    assert main(["report", "--quiet", "--no-plots", "--grid-points", "4", "--intensity", "300",
                 "--out", str(tmp_path / "custom")]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines()
                  if line.strip().startswith("budget"))
    assert " s " not in header and "dense" in header
    assert not [c for c in pd.read_csv(tmp_path / "custom" / "frontier.csv") if "seconds" in c]


def test_bad_formats_exit_2(tmp_path, capsys):
    assert main(["report", "--quiet", "--formats", "png,gif", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--formats" in err[0] and not (tmp_path / "r").exists()
