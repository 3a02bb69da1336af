"""pytest-benchmark: the whole embedded analysis (both strategies, both laws, all methods).

Run with `nox -s bench` (or `pytest benchmarks/pytest --benchmark-enable`).
"""

from kinetics.hardware import B200_INTENSITY
from kinetics.report import analyze, build_summary
from kinetics.traces import load_trials, resolve_models


def test_full_embedded_analysis(benchmark):
    def work():
        trials, synthetic = load_trials(None)
        models = resolve_models(trials)
        analysis = analyze(trials, models, B200_INTENSITY)
        summary = build_summary(trials, B200_INTENSITY, hardware="b200", synthetic=synthetic,
                                source="embedded", options=analysis.options)
        return analysis, summary

    benchmark.extra_info.update(trials="embedded synthetic", device="cpu")
    analysis, summary = benchmark.pedantic(work, rounds=5, iterations=1, warmup_rounds=1)
    assert len(analysis.frontier) == 2 * 3 * 3 * 100
    assert summary.synthetic is True
