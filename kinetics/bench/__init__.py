"""GPU benchmarks of the decode (torch, triton and flashinfer import lazily).

* :mod:`kinetics.bench.decode`: dense vs block top-k decode on one GPU
  (``kinetics bench``), and the GPU regression gate.
* :mod:`kinetics.bench.tp`: one tensor-parallel decoder layer over torch.distributed
  (``kinetics bench --distributed``, ``python -m kinetics.bench.tp``).
"""
