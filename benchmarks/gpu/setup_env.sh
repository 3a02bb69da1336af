# Sourced by the GPU drivers (device_run.sh, generate_run.sh) on a lent GPU machine, from
# the repository root: $OUT made, the carried wheels in .whl/ installed under /tmp/site
# and put on the path, the run's environment exported, the GPU and library versions
# written to $OUT/nvidia-smi.txt and $OUT/versions.txt.
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
export PATH="/tmp/site/bin:$PATH"
command -v python >/dev/null || { mkdir -p /tmp/site/bin; ln -sf "$(command -v python3)" /tmp/site/bin/python; }
export FLASHINFER_WORKSPACE_BASE=/tmp/fiws  # JIT cache shared by every step of this call
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv \
    | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch, triton, flashinfer; print('torch', torch.__version__, 'triton', \
triton.__version__, 'flashinfer', flashinfer.__version__)" | tee "$OUT/versions.txt"
