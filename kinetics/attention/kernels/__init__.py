"""Triton kernels of the GPU decode (imported lazily: importing a submodule needs triton).

* :mod:`.select`: page scoring and top-k selection (launched by
  :class:`kinetics.attention.select.PageSelector`).
* :mod:`.sparse_decode`: split-KV decode over the selected pages.
* :mod:`.fused_decode`: scoring, selection and split-KV attention in one kernel
  (launched by :class:`kinetics.attention.decode.FusedBlockTopkDecode`).
"""
