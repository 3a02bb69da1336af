"""asv: the scaling-law pipeline on the embedded (SYNTHETIC) trial set.

time_*: how long the analysis takes (load + both strategies + both laws + all
methods). track_*: the frontier numbers themselves (the paper's single-choice frontier: one
model and config per budget for all queries), so a change in the science shows
on the asv graphs like a speed regression: the frontier accuracy and the optimal
model's active parameters (billions; 0 where nothing fits) at the summary budgets
(kinetics.report.SUMMARY_BUDGETS, eFLOPs per query), for each law, strategy and
attention method. Hardware: b200 (I = 562.5 FLOPs/byte).
"""

from kinetics.hardware import get_hardware
from kinetics.models import MODELS
from kinetics.report import SUMMARY_BUDGETS, build_summary
from kinetics.traces import load_trials

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
