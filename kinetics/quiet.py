"""Third-party output on request only: the progress bars and warnings of transformers,
huggingface_hub and tqdm reach stderr only when asked for.

Commands that load models or tokenizers (``quality``, ``ingest``, and any generation
backend) run that work inside :func:`third_party_output`: progress bars show only on a
terminal without ``--quiet``, warnings only with ``--verbose``, so an error stays one line.
Import-light: nothing heavy is imported here.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

# read by transformers and huggingface_hub when first imported
_QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
_NO_BARS_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}
_LOGGERS = ("transformers", "huggingface_hub", "accelerate", "datasets")


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables the user has not set, for the block."""
    added = [k for k in values if k not in os.environ]
    for key in added:
        os.environ[key] = values[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextmanager
def _loggers_at_error() -> Iterator[None]:
    """The libraries' loggers (and transformers' own verbosity) at ERROR for the block."""
    saved = {name: logging.getLogger(name).level for name in _LOGGERS}
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextmanager
def _tqdm_disabled() -> Iterator[None]:
    """Every tqdm bar created in the block is disabled, also those whose caller passes
    no ``disable`` (transformers' GGUF loader); tqdm reads TQDM_DISABLE only on import."""
    try:
        from tqdm import std
    except ImportError:
        yield
        return
    original = std.tqdm.__init__

    def quiet_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["disable"] = True
        original(self, *args, **kwargs)

    std.tqdm.__init__ = quiet_init
    try:
        yield
    finally:
        std.tqdm.__init__ = original


@contextmanager
def _hub_bars_disabled() -> Iterator[None]:
    """huggingface_hub's and transformers' download bars off, when they are imported."""
    hub = sys.modules.get("huggingface_hub.utils")
    was_off = bool(hub and hub.are_progress_bars_disabled())
    if hub is not None:
        hub.disable_progress_bars()
    try:
        yield
    finally:
        if hub is not None and not was_off:
            hub.enable_progress_bars()


@contextmanager
def third_party_output(*, progress: bool, verbose: bool) -> Iterator[None]:
    """Within the block, third-party progress bars show only when ``progress`` and
    third-party warnings (Python ``warnings``, the transformers / huggingface_hub
    loggers below ERROR) only when ``verbose``; everything is restored on exit.

    Import the libraries inside the block: transformers decides what to print at
    import from the environment this sets.
    """
    with ExitStack() as stack:
        if not verbose:
            stack.enter_context(_environment(_QUIET_ENV))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            stack.enter_context(_loggers_at_error())
        if not progress:
            stack.enter_context(_environment(_NO_BARS_ENV))
            stack.enter_context(_tqdm_disabled())
            stack.enter_context(_hub_bars_disabled())
        yield
