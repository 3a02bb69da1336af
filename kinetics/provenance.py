"""What made a result: the one provenance record every kinetics output carries.

:func:`provenance` builds a :class:`Provenance`: the kinetics version, the git commit
of the source tree (and whether it had uncommitted changes) when kinetics runs from a
git checkout, the UTC date, the command line, the Python version and platform, the
versions of the libraries the numbers depend on, and the device. Every JSON file or
JSON object kinetics writes holds its :meth:`Provenance.to_dict` under the top-level
key ``"provenance"``, and every Parquet table kinetics writes holds it (as JSON) in
its metadata under :data:`PROVENANCE_META_KEY`. The JSON Schema of the record is
``kinetics/schemas/provenance.schema.json``.

Readers never need it: a file without the key (written before it existed) is read as
before; :func:`describe_provenance` says so in one line.

Cheap by contract (``kinetics report`` has a speed budget): only the standard library
is imported; library versions come from the installed distributions' metadata, never
from importing torch, triton or flashinfer; git runs at most twice, each with a time
limit, and only when the package's parent folder is a git checkout.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

#: The version of the record's layout (the ``schema`` key); bumped when a key changes.
PROVENANCE_SCHEMA = 1
#: The Parquet metadata key of a table's provenance (JSON bytes of :meth:`Provenance.to_dict`).
PROVENANCE_META_KEY = b"kinetics.provenance"
#: Library -> the distributions that install it, first found wins.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",), "pandas": ("pandas",), "pyarrow": ("pyarrow",),
    "torch": ("torch",), "triton": ("triton", "pytorch-triton"),
    "flashinfer": ("flashinfer-python", "flashinfer"),
}
DISTRIBUTION = "kinetics-tts"  # the name on PyPI; the import name is kinetics
GIT_TIMEOUT_S = 2.0  # seconds each git call may take before the commit is reported unknown
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the folder holding the kinetics package


@dataclass(frozen=True)
class Provenance:
    """One run's provenance (see the module docstring; its JSON is :meth:`to_dict`).

    ``date`` is UTC ISO 8601 to the second (``2026-01-31T12:00:00Z``); ``command`` the
    command line, shell-quoted; ``git_commit`` a 40-hex commit and ``git_dirty``
    whether tracked files differed from it, both None outside a git checkout;
    ``versions`` maps each of :data:`LIBRARIES` to its installed version or None;
    ``device`` the CUDA device's name or ``"cpu"``.
    """

    kinetics: str
    git_commit: str | None
    git_dirty: bool | None
    date: str
    command: str
    python: str
    platform: str
    device: str
    versions: Mapping[str, str | None] = field(default_factory=dict)
    schema: int = PROVENANCE_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the record (plain types; ``versions`` a new dict)."""
        out = asdict(self)
        out["versions"] = dict(self.versions)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """The record back from :meth:`to_dict`'s object (KeyError on a missing key)."""
        names = ("kinetics", "git_commit", "git_dirty", "date", "command", "python",
                 "platform", "device", "versions", "schema")
        return cls(**{name: data[name] for name in names})

    def lines(self) -> list[str]:
        """``key: value`` lines, one per field, the versions flattened; ``-`` for None."""
        out = []
        for key, value in self.to_dict().items():
            if key == "versions":
                out += [f"{name}: {'-' if v is None else v}" for name, v in value.items()]
            else:
                out.append(f"{key}: {'-' if value is None else value}")
        return out


def kinetics_version() -> str:
    """The installed distribution's version, else the source tree's ``kinetics.__version__``."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        from kinetics import __version__

        return __version__


def installed_version(name: str, distributions: Sequence[str],
                      import_module: bool = False) -> str | None:
    """The version of module ``name``: its ``__version__`` when it is imported (or, with
    ``import_module``, importable: a broken install falls through) — torch's carries its
    CUDA label, e.g. ``+cu130``, which its distribution's metadata may lack — else the
    first of ``distributions`` installed; None when none is."""
    module = sys.modules.get(name)
    if module is None and import_module:
        try:
            module = importlib.import_module(name)
        except Exception:  # a missing or broken install: the metadata decides
            module = None
    version = getattr(module, "__version__", None)
    if version is not None:
        return str(version)
    for dist in distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def library_versions() -> dict[str, str | None]:
    """Each of :data:`LIBRARIES` -> its :func:`installed_version`, or None (nothing is
    imported)."""
    return {name: installed_version(name, dists) for name, dists in LIBRARIES.items()}


def _git(root: Path, *args: str) -> str | None:
    """git's stdout in ``root``, or None when git is missing, fails or times out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def git_state(root: Path = SOURCE_ROOT) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout at ``root``: the 40-hex HEAD commit and whether
    a tracked file differs from it (untracked files do not count). (None, None) when
    ``root`` holds no ``.git`` (an installed wheel: a repository further up is not the
    source), git is missing or a call fails or outlasts :data:`GIT_TIMEOUT_S`; dirty
    alone None when only the status failed. Cached per process."""
    if not (root / ".git").exists():
        return None, None
    head = _git(root, "rev-parse", "--verify", "HEAD")
    if head is None or len(head.strip()) != 40:
        return None, None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return head.strip(), None if status is None else bool(status.strip())


def current_device() -> str:
    """The CUDA device's name when torch is already imported and sees a GPU, else ``"cpu"``
    (torch is never imported here)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return str(torch.cuda.get_device_name())
    except Exception:  # a broken CUDA setup: the record still gets written
        pass
    return "cpu"


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second with a ``Z`` (``2026-01-31T12:00:00Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def provenance(argv: Sequence[str] | None = None, device: str | None = None) -> Provenance:
    """This run's :class:`Provenance`.

    ``argv``: the command line, program first (the CLI passes ``["kinetics", *words]``);
    default ``sys.argv``. ``device``: the device the run used; default
    :func:`current_device`. Takes milliseconds (see the module docstring).
    """
    commit, dirty = git_state(SOURCE_ROOT)
    words = list(sys.argv if argv is None else argv)
    return Provenance(kinetics=kinetics_version(), git_commit=commit, git_dirty=dirty,
                      date=utc_now(), command=shlex.join(str(w) for w in words),
                      python=platform.python_version(), platform=platform.platform(),
                      device=current_device() if device is None else str(device),
                      versions=library_versions())


def describe_provenance(record: Any, what: str = "baseline") -> str:
    """One line naming what made an output from its provenance ``record`` (the parsed
    ``"provenance"`` object, or None): ``"{what} provenance: kinetics V, commit C
    (dirty), DATE, device D"``, or ``"{what} has no provenance record"`` when ``record``
    is not an object (a file written before provenance existed). Never raises: a
    malformed record is shown as far as it goes."""
    if not isinstance(record, Mapping):
        return f"{what} has no provenance record"

    def get(key: str) -> str:
        value = record.get(key)
        return "unknown" if value is None else str(value)

    commit = record.get("git_commit")
    commit_text = "no git commit" if commit is None else f"commit {str(commit)[:12]}"
    if commit is not None and record.get("git_dirty"):
        commit_text += " (dirty)"
    return (f"{what} provenance: kinetics {get('kinetics')}, {commit_text}, {get('date')}, "
            f"device {get('device')}")
