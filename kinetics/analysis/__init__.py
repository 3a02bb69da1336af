"""Scaling-law analysis: trial tables in, Best-of-N / long-CoT frontiers and reports out.

Pure functions over DataFrames; no torch. ``trials`` (load and validate the trial table),
``answers`` (final-answer extraction and grading), ``ingest`` (raw traces -> trial
table), ``synthetic`` (the embedded synthetic set), ``strategies`` (option tables),
``frontier`` (Pareto frontiers, optimal model per budget), ``report`` (the whole
analysis + summary), ``plots`` (figures), ``regression`` (the frontier regression gate
behind ``kinetics check``).
"""
