"""kinetics.provenance: the one record of what made an output (version, git commit,
date, command line, library versions, device), cheap and never failing."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kinetics
from kinetics import provenance as prov
from kinetics.provenance import (
    LIBRARIES,
    Provenance,
    describe_provenance,
    git_state,
    library_versions,
    provenance,
)
from tests.schemas import errors, validate

ROOT = Path(__file__).resolve().parents[1]
HAS_GIT = shutil.which("git") is not None


def test_the_record_names_this_run():
    record = provenance(["kinetics", "report", "--out", "my folder"], device="cpu")
    assert record.kinetics == kinetics.__version__
    assert record.command == "kinetics report --out 'my folder'"  # shell-quoted
    assert record.python == ".".join(map(str, sys.version_info[:3]))
    assert record.device == "cpu" and record.schema == 1
    when = dt.datetime.strptime(record.date, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.timezone.utc)
    assert abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) < 60
    assert set(record.versions) == set(LIBRARIES)
    import numpy
    import pandas

    assert record.versions["numpy"] == numpy.__version__
    assert record.versions["pandas"] == pandas.__version__
    validate(record.to_dict(), "provenance")


def test_the_default_command_line_is_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/kinetics", "cost", "--json"])
    assert provenance().command == "/usr/bin/kinetics cost --json"


def test_a_library_not_installed_is_none(monkeypatch):
    real = prov.metadata.version

    def version(name: str) -> str:
        if name in ("flashinfer-python", "flashinfer"):
            raise prov.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(prov.metadata, "version", version)
    assert library_versions()["flashinfer"] is None
    assert library_versions()["numpy"] is not None


def test_an_imported_module_reports_its_own_version(monkeypatch):
    """torch's metadata may say 2.11.0 while torch.__version__ says 2.11.0+cu130 (so it
    did on a lent H200): the imported module's word is recorded; not imported: the
    metadata's."""
    monkeypatch.setattr(prov.metadata, "version", lambda name: "2.11.0")
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(__version__="2.11.0+cu130"))
    assert library_versions()["torch"] == "2.11.0+cu130"
    monkeypatch.delitem(sys.modules, "torch")
    assert library_versions()["torch"] == "2.11.0"


def test_the_device_is_read_from_an_imported_torch_only(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert provenance([]).device == "cpu"
    cuda = types.SimpleNamespace(is_available=lambda: True, get_device_name=lambda: "Fake H200")
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert provenance([]).device == "Fake H200"
    assert provenance([], device="cuda:1 elsewhere").device == "cuda:1 elsewhere"

    def broken() -> bool:
        raise RuntimeError("CUDA driver too old")

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(
        cuda=types.SimpleNamespace(is_available=broken)))
    assert provenance([]).device == "cpu"


def test_building_it_imports_nothing_heavy():
    """Versions come from the distributions' metadata (numpy is imported by kinetics
    itself; nothing more)."""
    code = ("import sys; from kinetics.provenance import provenance; provenance(); "
            "print(','.join(m for m in ('pandas', 'torch', 'triton', 'flashinfer', "
            "'pyarrow', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == ""


# --- git ------------------------------------------------------------------------------------

def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not HAS_GIT or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_commit_is_this_checkouts_head():
    record = provenance([])
    assert record.git_commit == _git(ROOT, "rev-parse", "HEAD")
    dirty = bool(_git(ROOT, "status", "--porcelain", "--untracked-files=no"))
    assert record.git_dirty is dirty


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_a_repository_commit_and_dirty_flag(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == (head, False)
    (repo / "untracked.txt").write_text("not counted\n")
    assert git_state.__wrapped__(repo) == (head, False)
    (repo / "a.txt").write_text("two\n")
    assert git_state.__wrapped__(repo) == (head, True)
    # a folder inside a repository is not a checkout of its own (an installed wheel in a
    # venv inside some project must not report that project's commit)
    inner = repo / "site-packages"
    inner.mkdir()
    assert git_state.__wrapped__(inner) == (None, None)


def test_no_checkout_no_git_or_a_hung_git_give_none(tmp_path, monkeypatch):
    assert git_state.__wrapped__(tmp_path) == (None, None)  # no .git
    (tmp_path / ".git").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # git missing
    assert git_state.__wrapped__(tmp_path) == (None, None)
    monkeypatch.undo()

    def hung(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], prov.GIT_TIMEOUT_S)

    monkeypatch.setattr(prov.subprocess, "run", hung)
    assert git_state.__wrapped__(tmp_path) == (None, None)


def test_git_environment_variables_do_not_redirect_it(tmp_path, monkeypatch):
    """GIT_DIR set by a hook or a calling tool must not make another repository's commit
    this source tree's."""
    if not HAS_GIT or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    head = _git(ROOT, "rev-parse", "HEAD")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    assert git_state.__wrapped__(ROOT)[0] == head


# --- the record as JSON and as text ---------------------------------------------------------

VERSION = st.one_of(st.none(), st.text(min_size=1, max_size=12))
RECORDS = st.builds(
    Provenance,
    kinetics=st.text(min_size=1, max_size=10),
    git_commit=st.one_of(st.none(), st.text("0123456789abcdef", min_size=40, max_size=40)),
    git_dirty=st.one_of(st.none(), st.booleans()),
    date=st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1))
    .map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    command=st.text(max_size=40), python=st.text(min_size=1, max_size=8),
    platform=st.text(max_size=20), device=st.text(min_size=1, max_size=20),
    versions=st.fixed_dictionaries({name: VERSION for name in LIBRARIES}),
)


@given(RECORDS)
def test_to_dict_round_trips_through_json_and_fits_the_schema(record):
    data = json.loads(json.dumps(record.to_dict(), allow_nan=False))
    assert Provenance.from_dict(data) == record
    assert errors(data, "provenance") == []


@given(RECORDS)
def test_lines_are_one_key_value_per_field(record):
    lines = record.lines()
    assert len(lines) == len(record.to_dict()) - 1 + len(LIBRARIES)
    keys = [line.split(": ", 1)[0] for line in lines]
    assert keys[:2] == ["kinetics", "git_commit"] and keys[-1] == "schema"
    assert set(LIBRARIES) <= set(keys)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)


@given(JSON)
def test_describing_any_json_never_raises_and_is_one_line(data):
    line = describe_provenance(data)
    assert "\n" not in line and line.startswith("baseline ")


def test_describe_names_version_commit_date_and_device():
    record = provenance(["kinetics", "check"], device="NVIDIA H200").to_dict()
    record.update(git_commit="0123456789abcdef" * 2 + "01234567", git_dirty=True)
    line = describe_provenance(record)
    assert line == (f"baseline provenance: kinetics {kinetics.__version__}, commit "
                    f"0123456789ab (dirty), {record['date']}, device NVIDIA H200")
    record.update(git_commit=None, git_dirty=None)
    assert "no git commit," in describe_provenance(record, "gate baseline")
    for old in (None, "a string", ["a", "list"]):
        assert describe_provenance(old) == "baseline has no provenance record"


def test_the_schema_refuses_a_record_missing_a_field_or_of_a_wrong_type():
    good = provenance([]).to_dict()
    assert errors(good, "provenance") == []
    for key in good:
        assert errors({k: v for k, v in good.items() if k != key}, "provenance"), key
    for key, bad in (("git_dirty", "no"), ("date", "2026-01-01 12:00 UTC"), ("schema", 2),
                     ("git_commit", "abc"), ("versions", {"numpy": 2})):
        assert errors({**good, key: bad}, "provenance"), key
