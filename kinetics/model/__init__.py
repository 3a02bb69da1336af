"""A Qwen3 decoder layer for decode steps, tensor parallel (needs torch).

* :mod:`kinetics.model.layer`: :class:`~kinetics.model.layer.ShardedDecoderLayer`,
  :class:`~kinetics.model.layer.GraphedDecodeStep`, the dense reference attend.
* :mod:`kinetics.model.capture`: the layer's step implementations and the capture of
  a whole decode step as one CUDA graph.

Nothing is imported here, so ``import kinetics.model`` needs no torch.
"""
