"""asv: the scaling-law pipeline on the embedded (SYNTHETIC) trial set.

time_*: how long the analysis takes (load + both strategies + both laws + all
methods). track_*: the frontier numbers themselves (the paper's single-choice frontier: one
model and config per budget for all queries), so a change in the science shows
on the asv graphs like a speed regression: the frontier accuracy and the optimal
model's active parameters (billions; 0 where nothing fits) at the summary budgets
(kinetics.report.SUMMARY_BUDGETS, eFLOPs per query), for each law, strategy and
attention method. Hardware: b200 (I = 562.5 FLOPs/byte).
"""

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from kinetics.cli import main
from kinetics.hardware import get_hardware
from kinetics.models import MODELS
from kinetics.report import SUMMARY_BUDGETS, build_summary
from kinetics.synthetic import replicate_queries
from kinetics.traces import embedded_path, load_trials

LAWS = ["kinetics", "flops"]
STRATEGIES = ["best_of_n", "long_cot"]
METHODS = ["dense", "topk", "blocktopk"]
BUDGETS = [f"{b:.0e}" for b in SUMMARY_BUDGETS]
INTENSITY = get_hardware("b200").intensity




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


class FrontierNumbers:
    """The frontier's science, tracked per commit."""

    params = [LAWS, STRATEGIES, METHODS, BUDGETS]
    param_names = ["law", "strategy", "method", "budget_eflops"]
    timeout = 300

    def setup_cache(self):
        summary = _summary()
        return {(e.law, e.strategy, e.method, f"{e.budget_eflops:.0e}"): e
                for e in summary.entries}

    def setup(self, entries, law, strategy, method, budget):
        if (law, strategy, method, budget) not in entries:
            raise NotImplementedError("no such entry in the summary")

    def track_accuracy(self, entries, law, strategy, method, budget):
        return entries[(law, strategy, method, budget)].accuracy

    track_accuracy.unit = "accuracy"

    def track_optimal_model_active_params_b(self, entries, law, strategy, method, budget):
        name = entries[(law, strategy, method, budget)].optimal_model
        return 0.0 if name is None else MODELS[name].active_params / 1e9

    track_optimal_model_active_params_b.unit = "B params"


class TenfoldReport:
    """`kinetics report` (with plots) on a 10x copy of the embedded table (554,400 rows):
    wall time and peak memory (issue 10 target: < 15 s on 2 cores, < 1.5 GB RSS)."""

    timeout = 600
    number = 1
    repeat = 1

    def setup_cache(self):
        folder = Path(tempfile.mkdtemp(prefix="kinetics-asv-"))
        path = folder / "tenfold.parquet"
        replicate_queries(pd.read_parquet(embedded_path()), 10).to_parquet(path)
        return str(path)

    def setup(self, trials):
        self.out = Path(tempfile.mkdtemp(prefix="kinetics-asv-out-")) / "report"

    def time_report(self, trials):
        main(["report", "--quiet", "--trials", trials, "--out", str(self.out)])

    def peakmem_report(self, trials):
        main(["report", "--quiet", "--trials", trials, "--out", str(self.out)])

    def teardown(self, trials):
        shutil.rmtree(self.out.parent, ignore_errors=True)
