"""GPU benchmarks of the decode (torch, triton and flashinfer import lazily).

Every benchmark takes one :class:`kinetics.bench.spec.DecodeSpec` (the workload, its
byte model and builders):

* :mod:`kinetics.bench.layer`: dense vs block top-k on one GPU, one decoder-layer shard
  or its attention alone (``kinetics bench [--attention-only]``);
* :mod:`kinetics.bench.whole_model`: the whole model's step as one CUDA graph
  (``--whole-model``);
* :mod:`kinetics.bench.tp`: one layer under real tensor parallelism (``--distributed``);
* :mod:`kinetics.bench.grid`: the regime grid (``--grid``), beside the read floors of
  :mod:`kinetics.bench.floors`;
* :mod:`kinetics.bench.gate`: the GPU regression gate (``--gate``);
* :mod:`kinetics.bench.records`: the JSON records read back (``--from-json``), with
  :mod:`kinetics.bench.cost_vs_measured` (the cost model beside the measured time);
* :mod:`kinetics.bench.timing`: the one timer, clocks, copy bandwidth.
"""
