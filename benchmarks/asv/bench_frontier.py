"""asv: the scaling-law pipeline on the embedded (SYNTHETIC) trial set.

time_*: how long the analysis takes (load + both strategies + both laws + all
methods). track_*: the frontier numbers themselves (the paper's single-choice frontier: one
model and config per budget for all queries), so a change in the science shows
on the asv graphs like a speed regression: the frontier accuracy and the optimal
model's active parameters (billions) at the summary budgets
(kinetics.analysis.report.SUMMARY_BUDGETS, eFLOPs per query), for each law, strategy and
attention method, and the smallest of those budgets at which some model fits.
Hardware: b200 (I = 562.5 FLOPs/byte).

Every tracked value is positive: asv's summary of a parameterized benchmark is the
geometric mean over its parameters, which one zero pins at 0. So a budget where
nothing fits (accuracy 0, no optimal model) is skipped in the accuracy and model
tracks, and where the feasible budgets begin is its own track.
"""

import shutil
from pathlib import Path

import pandas as pd

from kinetics.analysis.report import SUMMARY_BUDGETS, build_summary
from kinetics.analysis.synthetic import replicate_queries
from kinetics.analysis.trials import embedded_path, load_trials
from kinetics.cli import main
from kinetics.hardware import B200_INTENSITY
from kinetics.models import MODELS

LAWS = ["kinetics", "flops"]
STRATEGIES = ["best_of_n", "long_cot"]
METHODS = ["dense", "topk", "blocktopk"]
BUDGETS = [f"{b:.0e}" for b in SUMMARY_BUDGETS]
INTENSITY = B200_INTENSITY
# TenfoldReport's files, relative to the folder asv runs it in (and removes)
TENFOLD = "tenfold.parquet"
REPORT_OUT = "tenfold-report"


def _summary():
    trials, synthetic = load_trials(None)
    return build_summary(trials, INTENSITY, hardware="b200", synthetic=synthetic, source="embedded")


class FrontierPipeline:
    """End-to-end summary on the embedded set (55k trials, 6 models, 11 configs)."""

    timeout = 300

    def setup(self):
        self.trials, self.synthetic = load_trials(None)

    def time_load_embedded_trials(self):
        load_trials(None)

    def time_build_summary(self):
        build_summary(self.trials, INTENSITY, hardware="b200", synthetic=self.synthetic,
                      source="embedded")


class _Summary:
    """The embedded data's summary entries, keyed (law, strategy, method, budget), once
    per benchmark class."""

    timeout = 300

    def setup_cache(self):
        return {(e.law, e.strategy, e.method, f"{e.budget_eflops:.0e}"): e
                for e in _summary().entries}


class FrontierNumbers(_Summary):
    """The frontier's science at each summary budget where some model fits."""

    params = [LAWS, STRATEGIES, METHODS, BUDGETS]
    param_names = ["law", "strategy", "method", "budget_eflops"]

    def setup(self, entries, law, strategy, method, budget):
        entry = entries.get((law, strategy, method, budget))
        if entry is None:
            raise NotImplementedError("no such entry in the summary")
        if entry.optimal_model is None or entry.accuracy <= 0:
            raise NotImplementedError("nothing fits at this budget (see FrontierReach)")

    def track_accuracy(self, entries, law, strategy, method, budget):
        return entries[(law, strategy, method, budget)].accuracy

    track_accuracy.unit = "accuracy"

    def track_optimal_model_active_params_b(self, entries, law, strategy, method, budget):
        return MODELS[entries[(law, strategy, method, budget)].optimal_model].active_params / 1e9

    track_optimal_model_active_params_b.unit = "B params"


class FrontierReach(_Summary):
    """Where the frontier begins: the smallest summary budget with a positive accuracy."""

    params = [LAWS, STRATEGIES, METHODS]
    param_names = ["law", "strategy", "method"]

    def setup(self, entries, law, strategy, method):
        if self._smallest(entries, law, strategy, method) is None:
            raise NotImplementedError("nothing fits at any summary budget")

    @staticmethod
    def _smallest(entries, law, strategy, method):
        budgets = [e.budget_eflops for key, e in entries.items()
                   if key[:3] == (law, strategy, method) and e.accuracy > 0]
        return min(budgets, default=None)

    def track_smallest_feasible_budget_eflops(self, entries, law, strategy, method):
        return self._smallest(entries, law, strategy, method)

    track_smallest_feasible_budget_eflops.unit = "eFLOPs"


class TenfoldReport:
    """`kinetics report` (with plots) on a 10x copy of the embedded table (554,400 rows):
    wall time and peak memory (issue 10 target: < 15 s on 2 cores, < 1.5 GB RSS).

    Every file goes under the working directory: asv runs setup_cache and the
    benchmarks in a temporary folder of its own and removes it when the class is done,
    so a run leaves nothing behind (no /tmp/kinetics-asv-* folders)."""

    timeout = 600
    number = 1
    repeat = 1

    def setup_cache(self):
        path = Path(TENFOLD).resolve()
        replicate_queries(pd.read_parquet(embedded_path()), 10).to_parquet(path)
        return str(path)

    def setup(self, trials):
        self.out = Path(REPORT_OUT).resolve()

    def time_report(self, trials):
        main(["report", "--quiet", "--trials", trials, "--out", str(self.out)])

    def peakmem_report(self, trials):
        main(["report", "--quiet", "--trials", trials, "--out", str(self.out)])

    def teardown(self, trials):
        shutil.rmtree(self.out, ignore_errors=True)
