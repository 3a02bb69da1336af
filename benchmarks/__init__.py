"""asv benchmark suites for kinetics (time_* speed, track_* science and GPU numbers).

pytest-benchmark suites live in benchmarks/pytest (not a package, so asv skips them).
"""
