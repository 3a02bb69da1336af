"""Frontier regression gate: `kinetics check`."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinetics.analysis.regression import DIFF_COLUMNS, compare_summaries, validate_summary
from kinetics.cli import main
from kinetics.errors import InputError


def summary(*entries):
    return {"schema": 1, "synthetic": True, "intensity": 562.5, "hardware": "b200",
            "trials_source": "test", "entries": list(entries)}


def entry(accuracy, model="qwen3-8b", budget=1e15, law="kinetics", method="dense"):
    return {"law": law, "strategy": "best_of_n", "method": method, "budget_eflops": budget,
            "accuracy": accuracy, "optimal_model": model, "config": "dense"}


@given(st.floats(0, 1), st.floats(0, 0.1))
def test_changes_within_tolerance_pass_and_beyond_fail(accuracy, tolerance):
    base = summary(entry(accuracy))
    inside = summary(entry(accuracy + tolerance * 0.999))
    outside = summary(entry(accuracy + tolerance + 1e-6))
    assert compare_summaries(inside, base, tolerance).empty
    diffs = compare_summaries(outside, base, tolerance)
    assert list(diffs["what"]) == ["accuracy"]


def test_optimal_model_change_and_missing_entries_are_reported():
    base = summary(entry(0.5), entry(0.6, budget=1e16))
    now = summary(entry(0.5, model="qwen3-14b"), entry(0.7, budget=1e17))
    diffs = compare_summaries(now, base, 0.005)
    assert list(diffs.columns) == ["law", "strategy", "method", "budget_eflops", "what",
                                   "baseline", "current", "delta"]
    rows = [tuple(r) for r in diffs.drop(columns="delta").itertuples(index=False)]
    assert rows == [
        ("kinetics", "best_of_n", "dense", 1e15, "optimal_model", "qwen3-8b", "qwen3-14b"),
        ("kinetics", "best_of_n", "dense", 1e16, "entry", "present", "absent"),
        ("kinetics", "best_of_n", "dense", 1e17, "entry", "absent", "present"),
    ]
    assert diffs["delta"].isna().all()  # no number moved, so no delta


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.1))
def test_accuracy_row_holds_baseline_current_and_signed_delta(before, after, tolerance):
    diffs = compare_summaries(summary(entry(after)), summary(entry(before)), tolerance)
    if abs(after - before) <= tolerance + 1e-12:
        assert diffs.empty
        return
    [row] = diffs.to_dict("records")
    assert row["what"] == "accuracy"
    assert (row["baseline"], row["current"]) == (before, after)
    assert row["delta"] == after - before
    assert (row["law"], row["strategy"], row["method"], row["budget_eflops"]) == \
        ("kinetics", "best_of_n", "dense", 1e15)


def test_entries_are_matched_on_every_key_field():
    base = summary(entry(0.5), entry(0.9, law="flops"), entry(0.1, method="topk"))
    now = summary(entry(0.5), entry(0.9, law="flops"), entry(0.2, method="topk"))
    [row] = compare_summaries(now, base, 0.0).to_dict("records")
    assert (row["method"], row["baseline"], row["current"]) == ("topk", 0.1, 0.2)
    assert row["delta"] == pytest.approx(0.1)


def test_float_noise_in_budgets_does_not_split_keys():
    base = summary(entry(0.5, budget=1e15))
    now = summary(entry(0.5, budget=1.0000000000000002e15))
    assert compare_summaries(now, base, 0.0).empty


@pytest.mark.parametrize("bad, message", [
    ([], "base.json: expected a JSON object (a kinetics summary)"),
    ({"schema": 2, "entries": []}, "base.json, field 'schema': unsupported schema 2, expected 1"),
    ({"schema": 1, "entries": []}, "base.json, field 'entries': expected a non-empty list"),
    ({"schema": 1, "param_count": "rounded", "entries": [entry(0.5)]},
     "base.json, field 'param_count': expected one of published, derived, got 'rounded'"),
    ({"schema": 1, "entries": [entry(0.5), 7]},
     "base.json, row 2, field 'entries': expected an object"),
    ({"schema": 1, "entries": [{"law": "kinetics"}]}, "base.json, row 1, field 'strategy': missing"),
    ({"schema": 1, "entries": [entry(0.5), entry("high")]},
     "base.json, row 2, field 'accuracy': expected a finite number, got 'high'"),
    ({"schema": 1, "entries": [entry(float("nan"))]},
     "base.json, row 1, field 'accuracy': expected a finite number, got nan"),
    ({"schema": 1, "entries": [entry(True)]},
     "base.json, row 1, field 'accuracy': expected a finite number, got True"),
    ({"schema": 1, "kv_dtype": "int4", "entries": [entry(0.5)]},
     "base.json, field 'kv_dtype': expected one of bf16, fp8, got 'int4'"),
    ({"schema": 1, "weight_dtype": "fp4", "entries": [entry(0.5)]},
     "base.json, field 'weight_dtype': expected one of bf16, fp8, int4, got 'fp4'"),
    ({"schema": 1, "batch_size": 0, "entries": [entry(0.5)]},
     "base.json, field 'batch_size': expected a positive integer or null, got 0"),
    ({"schema": 1, "batch_size": True, "entries": [entry(0.5)]},
     "base.json, field 'batch_size': expected a positive integer or null, got True"),
    ({"schema": 1, "batch_size": 2.0, "entries": [entry(0.5)]},
     "base.json, field 'batch_size': expected a positive integer or null, got 2.0"),
])
def test_malformed_baseline_names_file_row_and_field(bad, message):
    with pytest.raises(InputError) as info:
        validate_summary(bad, "base.json")
    assert str(info.value) == message


@pytest.mark.parametrize("param_count", [None, "published", "derived"])
def test_both_param_counts_and_none_are_valid(param_count):
    base = summary(entry(0.5))
    if param_count:
        base["param_count"] = param_count
    assert validate_summary(base, "base.json") is base


@pytest.mark.parametrize("settings", [{}, {"kv_dtype": "fp8"}, {"weight_dtype": "int4"},
                                      {"batch_size": 1}, {"batch_size": None},
                                      {"kv_dtype": "bf16", "weight_dtype": "fp8", "batch_size": 64}])
def test_cost_settings_absent_or_valid_are_accepted(settings):
    base = {**summary(entry(0.5)), **settings}
    assert validate_summary(base, "base.json") is base


def test_a_change_of_exactly_the_tolerance_passes_and_empty_diffs_keep_their_columns():
    tolerance = 0.5
    moved = summary(entry(tolerance + 1e-12))  # the comparison allows 1e-12 of float noise
    assert compare_summaries(moved, summary(entry(0.0)), tolerance).empty
    same = compare_summaries(summary(entry(0.3)), summary(entry(0.3)), 0.0)
    assert same.empty and list(same.columns) == DIFF_COLUMNS
    with pytest.raises(InputError, match="--tolerance must be a finite number >= 0, got -0.1"):
        compare_summaries(same, same, -0.1)


# --- end to end on the embedded data -------------------------------------------------

@pytest.fixture(scope="module")
def baseline_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("baseline") / "frontier.json"
    assert main(["check", "--baseline", str(path), "--update"]) == 0
    return path


@pytest.mark.slow  # end to end: recomputes the frontier
def test_fresh_baseline_passes(baseline_file, capsys):
    assert main(["check", "--baseline", str(baseline_file)]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.slow  # end to end: recomputes the frontier
def test_update_writes_a_summary_with_its_provenance_and_check_prints_it(baseline_file,
                                                                         capsys):
    from kinetics.provenance import describe_provenance
    from tests.schemas import validate

    data = validate(json.loads(baseline_file.read_text()), "summary")
    record = data["provenance"]
    assert record["command"] == f"kinetics check --baseline {baseline_file} --update"
    assert main(["check", "--baseline", str(baseline_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"kinetics check: {describe_provenance(record)}"
    assert record["date"] in lines[0] and f"kinetics {record['kinetics']}" in lines[0]


@pytest.mark.slow  # end to end: recomputes the frontier
def test_perturbed_baseline_fails_with_a_table(baseline_file, tmp_path, capsys):
    data = json.loads(baseline_file.read_text())
    perturbed = copy.deepcopy(data)
    perturbed["entries"][0]["accuracy"] += 0.02
    path = tmp_path / "perturbed.json"
    path.write_text(json.dumps(perturbed))
    assert main(["check", "--baseline", str(path)]) == 1
    out = capsys.readouterr().out
    assert "moved" in out and "accuracy" in out
    # within a loose tolerance the same perturbation passes
    assert main(["check", "--baseline", str(path), "--tolerance", "0.05"]) == 0


@pytest.mark.slow  # end to end: recomputes the frontier
def test_perturbed_optimal_model_fails(baseline_file, tmp_path):
    data = json.loads(baseline_file.read_text())
    data["entries"][-1]["optimal_model"] = "not-a-model"
    path = tmp_path / "perturbed.json"
    path.write_text(json.dumps(data))
    assert main(["check", "--baseline", str(path)]) == 1


@pytest.mark.parametrize("content", ["{", "[]", '{"schema": 1, "entries": []}'])
def test_bad_baseline_exits_2(tmp_path, capsys, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["check", "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # end to end: recomputes the frontier
def test_the_baseline_param_count_is_used_and_a_different_one_moves(baseline_file, tmp_path,
                                                                       capsys):
    assert json.loads(baseline_file.read_text())["param_count"] == "published"
    assert main(["check", "--baseline", str(baseline_file), "--param-count", "derived"]) == 1
    derived = tmp_path / "derived.json"
    assert main(["check", "--baseline", str(derived), "--update", "--param-count",
                 "derived"]) == 0
    assert main(["check", "--baseline", str(derived)]) == 0  # read from the baseline
    data = json.loads(derived.read_text())
    data["param_count"] = "rounded"
    derived.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["check", "--baseline", str(derived)]) == 2
    assert "param_count" in capsys.readouterr().err


@pytest.mark.slow  # end to end: recomputes the frontier
def test_the_baseline_cost_settings_are_used_and_others_move(tmp_path, capsys):
    fp8 = tmp_path / "fp8.json"
    assert main(["check", "--baseline", str(fp8), "--update", "--kv-dtype", "fp8",
                 "--batch-size", "64", "--weight-dtype", "int4"]) == 0
    data = json.loads(fp8.read_text())
    assert (data["kv_dtype"], data["weight_dtype"], data["batch_size"]) == ("fp8", "int4", 64)
    assert main(["check", "--baseline", str(fp8)]) == 0  # its own settings, read back
    assert main(["check", "--baseline", str(fp8), "--kv-dtype", "bf16"]) == 1
    capsys.readouterr()
    assert main(["check", "--baseline", str(fp8), "--weight-dtype", "fp8"]) == 2
    assert "--batch-size" in capsys.readouterr().err


def test_missing_baseline_exits_2(tmp_path, capsys):
    assert main(["check", "--baseline", str(tmp_path / "none.json")]) == 2
    assert "--update" in capsys.readouterr().err


def test_bare_check_uses_the_packaged_baseline(tmp_path, monkeypatch, capsys):
    """From any folder (an installed wheel has no benchmarks/), `kinetics check` with no
    --baseline gates the embedded data on the baseline shipped as package data."""
    from kinetics.cli.check_cmd import PACKAGED_BASELINE

    monkeypatch.chdir(tmp_path)
    assert PACKAGED_BASELINE.is_file()
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert str(PACKAGED_BASELINE) in out
    # the shipped baseline says what made it, in one line before the verdict
    record = json.loads(PACKAGED_BASELINE.read_text())["provenance"]
    first = out.splitlines()[0]
    assert first.startswith("kinetics check: baseline provenance: kinetics ")
    assert f"commit {record['git_commit'][:12]}" in first and record["date"] in first
