"""The dequantized-GGUF cache's keys and folders (no model loaded)."""

from __future__ import annotations

import os

import pytest

from kinetics.quality import cache


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KINETICS_CACHE", str(tmp_path / "k"))
    assert cache.default_cache_dir() == tmp_path / "k"
    monkeypatch.delenv("KINETICS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache.default_cache_dir() == tmp_path / "x" / "kinetics"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.default_cache_dir().parts[-2:] == (".cache", "kinetics")


def test_an_edited_or_moved_file_gets_a_new_entry(tmp_path):
    pytest.importorskip("transformers")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(60))
    first = cache.entry(tmp_path / "c", model)
    assert first.parent == tmp_path / "c" / "gguf" and first.name.startswith("m-")
    assert cache.entry(tmp_path / "c", model) == first
    os.utime(model, ns=(1, 1))
    touched = cache.entry(tmp_path / "c", model)
    assert touched != first
    moved = tmp_path / "sub"
    moved.mkdir()
    (moved / "m.gguf").write_bytes(model.read_bytes())
    os.utime(moved / "m.gguf", ns=(1, 1))
    assert cache.entry(tmp_path / "c", moved / "m.gguf") != touched
    assert cache.load(first) is None  # no entry: convert


def test_an_unwritable_cache_is_skipped_without_leftovers(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")

    class Model:
        config = None

    assert cache.save(blocked / "gguf" / "m-0", Model(), None, "test") is False
    assert blocked.read_text() == "not a folder"
