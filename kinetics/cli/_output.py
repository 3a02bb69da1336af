"""Safe output for every command: nothing a user made is ever replaced or deleted.

* Folders (``kinetics report --out``) are built in a hidden temporary sibling and
  moved into place at the end. An existing folder is replaced only when it is empty
  or kinetics wrote it: its marker file (:data:`MARKER`) lists every file in it. A
  folder holding anything else, the current folder or one above it is refused
  (:class:`~kinetics.errors.InputError`, exit 2) before anything is written.
* Files (``ingest --out``, ``check --update``, ``bench --json-out``/``--plot``; an existing
  one only with ``--force``, the baseline of ``check --update`` by intent) are written to a
  hidden temporary sibling and renamed over the target, so a reader never sees half
  a file.
* A symlinked output is followed: the folder or file it points to is the target.
* Temporaries are named ``.NAME.tmp-PID-XXXX`` (and ``.NAME.old-PID-XXXX`` while a
  folder is swapped). A run killed with SIGKILL cannot remove its own; the next run
  writing the same NAME removes those whose owner process is dead (folders only when
  they carry the marker or are empty).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kinetics.errors import InputError

MARKER = ".kinetics-report"
_MARKER_HEADER = "written by kinetics; files it may replace:"


def dumps_json(data: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """Strict JSON text: a NaN or infinity raises ValueError instead of writing
    ``NaN``/``Infinity``, which no JSON parser accepts."""
    return json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=False)


# --- temporaries ------------------------------------------------------------------------

def _temp_prefix(name: str, kind: str = "tmp") -> str:
    return f".{name}.{kind}-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or an absurd pid): not provably dead
    return True


def remove_stale_temporaries(parent: Path, name: str) -> list[Path]:
    """Remove temporaries of ``parent/name`` left by dead kinetics processes.

    Only ``.NAME.tmp-PID-*`` / ``.NAME.old-PID-*`` entries whose PID is not running;
    a folder additionally must carry the marker or be empty. Returns what was removed.
    """
    pattern = re.compile(rf"\.{re.escape(name)}\.(?:tmp|old)-(\d+)-[A-Za-z0-9_]+(?:\.[A-Za-z]+)?")
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            if (entry / MARKER).is_file() or not any(entry.iterdir()):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        elif entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _check_parents(target: Path, text: str) -> None:
    """The nearest existing parent of ``target`` must be a folder we may write in."""
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write here ({parent} is not a folder)", path=text)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write here (no permission in {parent})", path=text)


@contextmanager
def _os_errors_as_input(target: Path) -> Iterator[None]:
    """A parent that is a file, no permission, a full disk: one line, exit 2."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot write here ({exc.strerror or exc})", path=str(target)) from None


# --- folders ----------------------------------------------------------------------------

def _read_marker(folder: Path) -> set[str] | None:
    """File names a kinetics marker lists, or None when there is no valid marker."""
    try:
        lines = (folder / MARKER).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or lines[0] != _MARKER_HEADER:
        return None
    return {line for line in lines[1:] if line}


def _foreign_entries(folder: Path) -> list[str]:
    """Entries of ``folder`` that kinetics did not write (empty list: safe to replace)."""
    entries = sorted(os.listdir(folder))
    if not entries:
        return []
    listed = _read_marker(folder)
    if listed is None:
        return entries
    return [e for e in entries if e != MARKER and (
        e not in listed or (folder / e).is_symlink() or not (folder / e).is_file())]


def check_output_folder(text: str) -> Path:
    """The folder ``--out TEXT`` names (a symlink followed), if kinetics may replace it.

    Raises InputError, touching nothing, for an empty name, the current folder or
    one above it, a path that is a file or a broken link, or an existing folder
    holding anything kinetics did not write.
    """
    if not text.strip():
        raise InputError("--out is empty; name a folder for the report")
    target = Path(os.path.realpath(text))
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise InputError("is the current folder or one above it; --out needs a folder of its own",
                         path=text)
    if Path(text).is_symlink() and not target.exists():
        raise InputError("is a broken symbolic link", path=text)
    _check_parents(target, text)
    if target.exists():
        if not target.is_dir():
            raise InputError("exists and is not a folder", path=text)
        with _os_errors_as_input(target):
            foreign = _foreign_entries(target)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise InputError(f"holds files kinetics did not write ({shown}); --out replaces only "
                             f"an empty folder or an earlier report (marker {MARKER}). "
                             "Choose another --out", path=text)
    return target


def _write_marker(folder: Path) -> None:
    files = sorted(p.name for p in folder.iterdir() if p.name != MARKER)
    (folder / MARKER).write_text("\n".join([_MARKER_HEADER, *files]) + "\n", encoding="utf-8")


def _make_shareable(path: Path, mode: int = 0o777) -> None:
    """mkdtemp/mkstemp make private entries; outputs get the umask's permissions."""
    umask = os.umask(0o22)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _swap_in(tmp: Path, target: Path) -> None:
    if target.exists():
        foreign = _foreign_entries(target)  # again: it may have changed during the run
        if foreign:
            raise InputError(f"gained files kinetics did not write during the run ({foreign[0]})",
                             path=str(target))
        old = target.with_name(f"{_temp_prefix(target.name, 'old')}{secrets.token_hex(4)}")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target`` (from :func:`check_output_folder`).

    On a normal exit it gets a marker listing its files and replaces ``target``; on
    any exception (Ctrl-C and SIGTERM included) it is removed and ``target`` is left
    as it was. Stale temporaries of dead runs are removed first.
    """
    with _os_errors_as_input(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent, target.name)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target.name), dir=target.parent))
    try:
        _make_shareable(tmp)
        _write_marker(tmp)  # ours from the first moment (stale cleanup relies on it)
        yield tmp
        _write_marker(tmp)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- files ------------------------------------------------------------------------------

def check_output_file(text: str, *, replace: bool = False) -> Path:
    """The file ``--out TEXT`` names (a symlink followed); InputError when it is a
    folder, or exists and ``replace`` is False."""
    if not text.strip():
        raise InputError("--out is empty; name an output file")
    target = Path(os.path.realpath(text))
    if target.is_dir():
        raise InputError("is a folder; expected a file name", path=text)
    _check_parents(target, text)
    if target.exists() and not replace:
        raise InputError("already exists; pass --force to replace it", path=text)
    return target


@contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` (same suffix); on a normal exit it
    is renamed over ``target``, on any exception removed."""
    target = Path(os.path.realpath(target))
    if target.is_dir():
        raise InputError("is a folder; expected a file name", path=str(target))
    with _os_errors_as_input(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent, target.name)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=_temp_prefix(target.name),
                                    suffix=target.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        _make_shareable(tmp, 0o666)
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_file(path: str | Path, data: Any, *, indent: int | None = 2,
                    sort_keys: bool = False) -> None:
    """Write ``data`` as strict JSON (see :func:`dumps_json`), atomically."""
    text = dumps_json(data, indent=indent, sort_keys=sort_keys) + "\n"
    with staged_file(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")
