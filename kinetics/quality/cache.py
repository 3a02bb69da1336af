"""A cache of GGUF models as transformers dequantized them, so a second run skips the
conversion (about a minute for SmolLM2-135M on a 2-core CPU).

One folder per GGUF file under the cache directory (``--cache-dir``; default
``$KINETICS_CACHE``, else ``$XDG_CACHE_HOME/kinetics``, else ``~/.cache/kinetics``, then
``gguf/``), named by the file's stem and a key over its absolute path, size and
modification time and the transformers version, so an edited or replaced file, or
another transformers, gets a new entry. The folder holds the model's
config, its float32 weights (safetensors, about 4 bytes a parameter) and the
tokenizer's ``save_pretrained``; it is written beside its final name and renamed into place, so a run
never reads a half-written entry. Nothing is ever deleted: remove the folder to
free the space.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

DONE = "kinetics-cache.txt"  # written last: an entry without it is ignored
WEIGHTS = "model.safetensors"


def default_cache_dir() -> Path:
    """``$KINETICS_CACHE``, else ``$XDG_CACHE_HOME/kinetics``, else ``~/.cache/kinetics``."""
    if os.environ.get("KINETICS_CACHE"):
        return Path(os.environ["KINETICS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kinetics"


def entry(cache_dir: Path, gguf: Path) -> Path:
    """The folder that holds (or will hold) ``gguf`` dequantized."""
    import transformers

    path = Path(gguf).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|transformers {transformers.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / "gguf" / f"{path.stem}-{digest}"


def load(folder: Path) -> tuple[Any, Any] | None:
    """(model, tokenizer) from a complete cache entry, float32 in eval mode; None when
    there is no complete entry."""
    if not (folder / DONE).is_file():
        return None
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    try:  # no random initialisation of weights about to be overwritten (seconds)
        from transformers.initialization import no_init_weights
    except ImportError:  # another transformers: initialise, only slower
        no_init_weights = contextlib.nullcontext
    # on the CPU, not the meta device: buffers that are computed, not stored (the
    # rotary frequencies), are made by the constructor
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.tie_weights()
    weights = load_file(folder / WEIGHTS)
    # the file holds a tied tensor (a tied embedding's LM head) once, under one name
    stored = {t.data_ptr() for name, t in model.state_dict().items() if name in weights}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    state = model.state_dict()
    if unexpected or any(state[name].data_ptr() not in stored for name in missing):
        raise ValueError(f"cache entry {folder} does not match its config")
    return model.eval(), tokenizer


def save(folder: Path, model: Any, tokenizer: Any, source: str) -> bool:
    """Write an entry (temporary sibling, then rename); False, leaving nothing behind,
    when it cannot be written (a read-only or full disk: the run goes on uncached)."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        from safetensors.torch import save_model

        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        # save_pretrained refuses a model loaded from GGUF ("not serializable"); its
        # config and dequantized float32 weights are all a reload needs
        model.config.save_pretrained(tmp)
        save_model(model, str(tmp / WEIGHTS))
        tokenizer.save_pretrained(tmp)
        (tmp / DONE).write_text(f"dequantized from {source}\n")
        os.replace(tmp, folder)
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
