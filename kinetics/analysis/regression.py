"""Frontier regression check: compare a recomputed summary with a stored baseline.

A summary (``summary.json``, schema 1) holds entries keyed by (law, strategy,
method, budget_eflops), each with an ``accuracy`` (fraction) and the
``optimal_model`` at that budget. The check is pure: dicts in, a DataFrame of
differences out.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from kinetics.errors import InputError
from kinetics.models import PARAM_COUNTS

SUMMARY_SCHEMA = 1
KEY_FIELDS = ("law", "strategy", "method", "budget_eflops")
ENTRY_FIELDS = KEY_FIELDS + ("accuracy", "optimal_model")
DIFF_COLUMNS = ["law", "strategy", "method", "budget_eflops", "what", "baseline", "current", "delta"]


def validate_summary(summary: Any, source: str) -> dict:
    """Check a parsed summary like a trial table: its schema, known names, ranges and
    no duplicate entries; InputError names the file, entry (as ``row``) and field.

    Top level: ``schema`` 1; ``param_count`` one of PARAM_COUNTS; ``hardware`` a
    preset or null; ``intensity`` a finite number >= 0 or null; ``entries`` a
    non-empty list. Each entry: ``law``, ``strategy``, ``method`` known names,
    ``budget_eflops`` > 0, ``accuracy`` a fraction in [0, 1], ``optimal_model`` (and
    ``config``, when present) a string or null, and a (law, strategy, method,
    budget_eflops) key no other entry has.
    """
    if not isinstance(summary, dict):
        raise InputError("expected a JSON object (a kinetics summary)", path=source)
    if summary.get("schema") != SUMMARY_SCHEMA:
        raise InputError(f"unsupported schema {summary.get('schema')!r}, expected {SUMMARY_SCHEMA}",
                         path=source, field="schema")
    _check_top_level(summary, source)
    entries = summary.get("entries")
    if not isinstance(entries, list) or not entries:
        raise InputError("expected a non-empty list", path=source, field="entries")
    seen: dict[tuple, int] = {}
    for i, entry in enumerate(entries, start=1):
        _check_entry(entry, source, i)
        first = seen.setdefault(_key(entry), i)
        if first != i:
            same = all(entries[first - 1].get(k) == entry.get(k) for k in entry)
            raise InputError(f"{'repeats' if same else 'contradicts'} row {first}: two entries "
                             f"for one (law, strategy, method, budget_eflops)", path=source,
                             row=i, field="budget_eflops")
    return summary


def _check_top_level(summary: dict, source: str) -> None:
    from kinetics.hardware import HARDWARE

    if summary.get("param_count", "published") not in PARAM_COUNTS:
        raise InputError(f"expected one of {', '.join(PARAM_COUNTS)}, got "
                         f"{summary['param_count']!r}", path=source, field="param_count")
    hardware, intensity = summary.get("hardware"), summary.get("intensity")
    if hardware is not None and (not isinstance(hardware, str) or hardware.lower() not in HARDWARE):
        raise InputError(f"expected a hardware preset ({', '.join(HARDWARE)}) or null, got "
                         f"{hardware!r}", path=source, field="hardware")
    if intensity is not None and not (_is_finite_number(intensity) and intensity >= 0):
        raise InputError(f"expected a finite number >= 0 (FLOPs per byte) or null, got "
                         f"{intensity!r}", path=source, field="intensity")
    for name, kind in (("synthetic", bool), ("trials_source", str)):
        if name in summary and not isinstance(summary[name], kind):
            raise InputError(f"expected a {'true/false' if kind is bool else 'string'}, got "
                             f"{summary[name]!r}", path=source, field=name)


def _check_entry(entry: Any, source: str, i: int) -> None:
    from kinetics.analysis.frontier import LAWS
    from kinetics.analysis.report import SUMMARY_STRATEGIES
    from kinetics.cost import METHODS

    if not isinstance(entry, dict):
        raise InputError("expected an object", path=source, row=i, field="entries")
    for name in ENTRY_FIELDS:
        if name not in entry:
            raise InputError("missing", path=source, row=i, field=name)
    for name in ("budget_eflops", "accuracy"):
        if not _is_finite_number(entry[name]):
            raise InputError(f"expected a finite number, got {entry[name]!r}", path=source,
                             row=i, field=name)
    for name in ("law", "strategy", "method", "optimal_model", "config"):
        value = entry.get(name)
        if not isinstance(value, str) and not (value is None and name in ("optimal_model",
                                                                            "config")):
            raise InputError(f"expected a string, got {value!r}", path=source, row=i,
                             field=name)
    for name, known in (("law", LAWS), ("strategy", SUMMARY_STRATEGIES), ("method", METHODS)):
        if entry[name] not in known:
            raise InputError(f"unknown {name} {entry[name]!r} (choose from {', '.join(known)})",
                             path=source, row=i, field=name)
    if not 0 <= entry["accuracy"] <= 1:
        raise InputError(f"expected a fraction from 0 to 1, got {entry['accuracy']!r}",
                         path=source, row=i, field="accuracy")
    if entry["budget_eflops"] <= 0:
        raise InputError(f"expected a budget > 0 eFLOPs, got {entry['budget_eflops']!r}",
                         path=source, row=i, field="budget_eflops")


def _is_finite_number(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def _key(entry: dict) -> tuple:
    # budgets are floats written by json; round so 1e15 and 1.0000000000000002e15 match
    return (entry["law"], entry["strategy"], entry["method"], float(f"{entry['budget_eflops']:.9g}"))


def compare_summaries(current: dict, baseline: dict, tolerance: float) -> pd.DataFrame:
    """Every number that moved: accuracy beyond ``tolerance`` (absolute, as a fraction),
    a changed optimal model, or an entry present on one side only.

    Returns a DataFrame with columns DIFF_COLUMNS; empty when all agree.
    """
    if not tolerance >= 0 or not math.isfinite(tolerance):
        raise InputError(f"--tolerance must be a finite number >= 0, got {tolerance}")
    now = {_key(e): e for e in current["entries"]}
    then = {_key(e): e for e in baseline["entries"]}
    rows: list[dict] = []
    for key in sorted(set(now) | set(then), key=lambda k: tuple(map(str, k))):
        base_key = dict(zip(KEY_FIELDS, key, strict=True))
        if key not in now or key not in then:
            rows.append({**base_key, "what": "entry",
                         "baseline": "present" if key in then else "absent",
                         "current": "present" if key in now else "absent", "delta": math.nan})
            continue
        a, b = then[key]["accuracy"], now[key]["accuracy"]
        if abs(b - a) > tolerance + 1e-12:
            rows.append({**base_key, "what": "accuracy", "baseline": a, "current": b, "delta": b - a})
        if then[key]["optimal_model"] != now[key]["optimal_model"]:
            rows.append({**base_key, "what": "optimal_model", "baseline": then[key]["optimal_model"],
                         "current": now[key]["optimal_model"], "delta": math.nan})
    return pd.DataFrame(rows, columns=DIFF_COLUMNS)
