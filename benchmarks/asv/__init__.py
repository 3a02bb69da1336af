"""asv benchmark suites for kinetics (time_* speed, track_* science and GPU numbers).

asv's ``benchmark_dir`` (asv.conf.json). The pytest-benchmark suites live in
benchmarks/pytest, the GPU exploration scripts in benchmarks/explore.
"""
