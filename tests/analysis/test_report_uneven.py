"""Uneven tables (queries with different numbers of samples): every file `kinetics report`
writes agrees on every (model, config, N), checked against pass@N computed here."""

from __future__ import annotations

import json
from math import comb

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinetics.analysis.trials import load_trials
from kinetics.cli import main
from kinetics.errors import InputError

INTENSITY = 562.5  # b200, the report's default
LAW_INTENSITY = {"kinetics": INTENSITY, "flops": 0.0}
CONFIGS = [("dense", None), ("topk", 256)]


def trial_table(samples: dict[tuple[str, str, str], list[int]], prompt: int, gen: int
                ) -> pd.DataFrame:
    """Rows for {(model, method, query): [correct per sample]}; every sample the same
    lengths, so an option costs the same for every query."""
    rows = []
    for (model, method, query), correct in samples.items():
        budget = dict(CONFIGS)[method]
        for trial, ok in enumerate(correct):
            rows.append({"model": model, "method": method, "budget": budget,
                         "block_size": None, "local": None, "query_id": query, "trial": trial,
                         "prompt_len": prompt, "gen_len": gen, "correct": ok,
                         "answer_pos": gen if ok else None})
    return pd.DataFrame(rows)


def pass_at(n: int, c: int, k: int) -> float:
    return 1.0 - comb(n - c, k) / comb(n, k)


def expected_options(samples) -> dict[tuple[str, str, int], float]:
    """(model, method, N) -> mean over every query of pass@N, for N up to the fewest
    samples a query of that (model, method) has: the one rule for uneven tables."""
    by_pair: dict[tuple[str, str], list[list[int]]] = {}
    for (model, method, _query), correct in samples.items():
        by_pair.setdefault((model, method), []).append(correct)
    out = {}
    for (model, method), queries in by_pair.items():
        for k in range(1, min(len(q) for q in queries) + 1):
            out[(model, method, k)] = sum(pass_at(len(q), sum(q), k) for q in queries) / len(queries)
    return out


def run_report(tmp_path, samples, prompt, gen):
    path = tmp_path / "t.csv"
    trial_table(samples, prompt, gen).to_csv(path, index=False)
    out = tmp_path / "rep"
    assert main(["report", "--quiet", "--no-plots", "--grid-points", "9", "--trials", str(path),
                 "--out", str(out)]) == 0
    bon = pd.read_csv(out / "best_of_n.csv")
    pareto = pd.read_csv(out / "pareto.csv")
    frontier = pd.read_csv(out / "frontier.csv")
    summary = pd.DataFrame(json.loads((out / "summary.json").read_text())["entries"])
    return bon, pareto, frontier, summary


def check_agreement(samples, bon, pareto, frontier, summary) -> None:
    want = expected_options(samples)
    bon["method"] = bon["config"].str.replace(r"\d+$", "", regex=True)
    got = {(r.model, r.method, r.n): r.coverage for r in bon.itertuples()}
    assert got.keys() == want.keys()  # best_of_n.csv: the options, no more, no fewer
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12)
    cost = {law: {(r.model, r.method, r.n): r.compute_flops + i * r.memory_bytes
                  for r in bon.itertuples()} for law, i in LAW_INTENSITY.items()}
    for r in pareto[pareto["strategy"] == "best_of_n"].itertuples():  # pareto.csv
        key = (r.model, r.method, int(r.param))
        assert r.accuracy == pytest.approx(want[key], abs=1e-12), key
        assert r.cost_eflops == pytest.approx(cost[r.law][key], rel=1e-9)
    points = pd.concat([frontier[frontier["strategy"] == "best_of_n"],
                        summary[summary["strategy"] == "best_of_n"]])
    for r in points.itertuples():  # frontier.csv and summary.json
        options = {k: c for k, c in cost[r.law].items() if k[1] == r.method}
        if any(abs(c - r.budget_eflops) <= 1e-9 * c for c in options.values()):
            continue  # a budget on an option's cost: float noise decides, skip it
        best = 0.0  # one (model, config) for all queries: its largest N that fits
        for (model, method, k), c in options.items():
            if c <= r.budget_eflops:
                best = max(best, want[(model, method, k)])
        assert r.accuracy == pytest.approx(best, abs=1e-9), (r.law, r.method, r.budget_eflops)


def test_the_issue_example_best_of_3_is_not_offered(tmp_path):
    """One query with 8 samples (all right), one with 2 (both wrong): pass@3 exists for
    neither, so no output says Best-of-3 reaches 1.0."""
    samples = {("qwen3-4b", "dense", "a"): [1] * 8, ("qwen3-4b", "dense", "b"): [0, 0]}
    bon, pareto, frontier, summary = run_report(tmp_path, samples, 100, 20000)
    assert sorted(bon["n"]) == [1, 2]
    assert set(pareto["param"][pareto["strategy"] == "best_of_n"]) <= {1, 2}
    assert frontier[frontier["strategy"] == "best_of_n"]["accuracy"].max() == 0.5
    check_agreement(samples, bon, pareto, frontier, summary)


MODEL_NAMES = ["qwen3-0.6b", "qwen3-4b"]


@st.composite
def uneven_tables(draw):
    models = draw(st.lists(st.sampled_from(MODEL_NAMES), min_size=1, max_size=2, unique=True))
    methods = draw(st.lists(st.sampled_from([m for m, _ in CONFIGS]), min_size=1, max_size=2,
                            unique=True))
    queries = [f"q{i}" for i in range(draw(st.integers(1, 3)))]
    samples = {(m, meth, q): draw(st.lists(st.integers(0, 1), min_size=1, max_size=6))
               for m in models for meth in methods for q in queries}
    return samples, draw(st.sampled_from([100, 4000])), draw(st.sampled_from([2000, 30000, 90000]))


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uneven_tables())
def test_every_output_agrees_on_every_option_of_an_uneven_table(tmp_path, table):
    samples, prompt, gen = table
    for old in tmp_path.iterdir():  # one example at a time in the shared tmp_path
        if old.is_file():
            old.unlink()
    check_agreement(samples, *run_report(tmp_path, samples, prompt, gen))


def test_a_pair_missing_a_query_is_refused(tmp_path):
    samples = {("qwen3-4b", "dense", "a"): [1, 0], ("qwen3-4b", "dense", "b"): [0, 0],
               ("qwen3-0.6b", "dense", "a"): [1, 1]}
    path = tmp_path / "t.csv"
    trial_table(samples, 100, 2000).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"t.csv, row 5, field 'query_id': qwen3-0.6b \(dense\) "
                                         r"has no sample of query 'b'"):
        load_trials(path)


def test_the_report_says_where_best_of_n_stops(tmp_path, capsys):
    samples = {("qwen3-4b", "dense", "a"): [1] * 8, ("qwen3-4b", "dense", "b"): [0, 0]}
    trial_table(samples, 100, 2000).to_csv(tmp_path / "t.csv", index=False)
    assert main(["report", "--no-plots", "--grid-points", "5", "--trials",
                 str(tmp_path / "t.csv"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "note: uneven samples per query" in out and "qwen3-4b dense: N <= 2 (8 at most)" in out
