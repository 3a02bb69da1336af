"""kinetics.quiet: third-party progress bars and warnings reach stderr only when asked for."""

from __future__ import annotations

import logging
import warnings

import pytest

from kinetics.quiet import third_party_output


def noisy() -> None:
    """What transformers does while loading: a bar with no ``disable``, a warning, a log."""
    from tqdm.auto import tqdm

    for _ in tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
        pass
    warnings.warn("PyTorch was not found.", UserWarning, stacklevel=1)
    logging.getLogger("transformers.modeling_utils").warning("a loader warning")


@pytest.mark.parametrize("progress, verbose", [(False, False), (True, False), (False, True),
                                               (True, True)])
def test_bars_only_with_progress_and_warnings_only_with_verbose(capsys, progress, verbose):
    logging.getLogger("transformers").addHandler(handler := logging.StreamHandler())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with third_party_output(progress=progress, verbose=verbose):
                noisy()
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    err = capsys.readouterr().err
    assert ("GGUF tensors" in err) == progress, err
    assert any("PyTorch was not found" in str(w.message) for w in caught) == verbose
    assert ("a loader warning" in err) == verbose, err


def test_everything_is_restored_afterwards(capsys, monkeypatch):
    from tqdm import std

    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    init, level = std.tqdm.__init__, logging.getLogger("transformers").level
    with third_party_output(progress=False, verbose=False):
        import os

        assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"
    assert std.tqdm.__init__ is init and logging.getLogger("transformers").level == level
    assert "TRANSFORMERS_VERBOSITY" not in __import__("os").environ
