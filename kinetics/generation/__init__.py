"""Generating reasoning traces: problems, a backend interface, sampling and grading into
trial tables (``kinetics generate``).

Modules: :mod:`~kinetics.generation.backend` (the interface every engine implements and
the per-sample seeds), :mod:`~kinetics.generation.sampling` (greedy / temperature + top-p),
:mod:`~kinetics.generation.hf` (the transformers reference backend),
:mod:`~kinetics.generation.problems` (the package's arithmetic set and loaders),
:mod:`~kinetics.generation.run` (problems x configurations x samples -> graded trial rows),
:mod:`~kinetics.generation.store` (resumable shards), :mod:`~kinetics.generation.distributed`
(data parallel under torchrun). Nothing here is imported by ``import kinetics``.
"""
