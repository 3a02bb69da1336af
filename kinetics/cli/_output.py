"""Safe output for every command: nothing a user made is ever replaced or deleted.

* Folders (``kinetics report --out``) are built in a hidden temporary sibling and
  swapped into place at the end. An existing folder is replaced only when it is empty
  or kinetics wrote it: its marker file (:data:`MARKER`) lists every file in it. A
  folder holding anything else, a read-only one (the folder or a file in it: a
  protected output), the current folder or one above it is refused
  (:class:`~kinetics.errors.InputError`, exit 2) before anything is written.
* Files (``ingest --out``, ``check --update``, ``bench --json-out``/``--plot``; an existing
  one only with ``--force``, the baseline of ``check --update`` by intent; never a
  read-only one) are written to a hidden temporary sibling, flushed to disk and renamed
  over the target, so a reader never sees half a file.
* An output is never one of the run's inputs (:func:`refuse_output_over_inputs`).
* One writer at a time: :func:`output_lock` holds an exclusive ``flock`` on the hidden
  sibling ``.NAME.lock`` while a run checks, builds and swaps in NAME; a second run
  meanwhile is refused ("another kinetics run is writing ...") unless it asked to wait.
  The lock file is removed when released.
* The swap is crash-safe: where Linux offers it, ``renameat2(RENAME_EXCHANGE)``
  exchanges the new folder and the earlier one in one atomic step; elsewhere two
  renames, with the earlier folder put back if anything interrupts between them.
* Writing errors (a full disk, a quota, a read-only file system) are one line naming
  the output, exit 2; the temporaries are removed and the earlier output is unchanged.
* A symlinked output is followed: the folder or file it points to is the target.
* Temporaries are named ``.NAME.tmp-PID-XXXX`` (and ``.NAME.old-PID-XXXX`` while a
  folder is swapped without the atomic exchange). A run killed with SIGKILL cannot
  remove its own; the next run writing the same NAME removes those whose owner
  process is dead (folders only when they carry the marker or are empty), except an
  ``.old`` that may be the only copy: with NAME missing it is renamed back to NAME,
  with NAME not a kinetics output it is kept.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kinetics.errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

MARKER = ".kinetics-report"
_MARKER_HEADER = "written by kinetics; files it may replace:"


def dumps_json(data: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """Strict JSON text: a NaN or infinity raises ValueError instead of writing
    ``NaN``/``Infinity``, which no JSON parser accepts."""
    return json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=False)


# --- writing errors ---------------------------------------------------------------------

# errno values that mean "this output cannot be written here", whatever wrote it
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}
_WRITE_TEXTS = ("No space left on device", "Disk quota exceeded", "File too large",
                "Read-only file system")


def write_failure(exc: BaseException) -> str | None:
    """Why an exception means the output could not be written (a full disk, ...), else None.
    Also reads the text of writers that wrap the OS error (pyarrow's)."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno in _WRITE_ERRNOS:
        return os.strerror(exc.errno).lower()
    text = str(exc)
    return next((t.lower() for t in _WRITE_TEXTS if t in text), None)


def _unwritable(target: Path, reason: str) -> InputError:
    return InputError(f"cannot write it ({reason}); nothing was replaced", path=str(target))


@contextmanager
def _os_errors_as_input(target: Path) -> Iterator[None]:
    """A parent that is a file, no permission, a full disk: one line, exit 2."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot write here ({exc.strerror or exc})", path=str(target)) from None


# --- inputs and outputs -----------------------------------------------------------------

def refuse_output_over_inputs(out: str | Path, inputs: Iterable[str | Path | None], *,
                              flag: str = "--out") -> None:
    """Raise InputError, touching nothing, when the output ``out`` (a file or a folder)
    is one of ``inputs`` or a folder holding one of them.

    Paths are compared after following symbolic links, and an existing file also by
    identity (a hard link to an input is that input). ``None`` entries are skipped.
    Call it before writing anything, with every path the command reads; ``--force``
    does not lift it.
    """
    target = Path(os.path.realpath(out))
    for item in inputs:
        if item is None or not str(item).strip():
            continue
        real = Path(os.path.realpath(item))
        clash = real == target or target in real.parents
        if not clash and os.path.isfile(real) and os.path.isfile(target):
            try:
                clash = os.path.samefile(real, target)
            except OSError:
                pass
        if clash:
            what = "is" if real == target or os.path.isfile(target) else "holds"
            raise InputError(f"{what} an input of this run ({item}); {flag} must not "
                             "overwrite what the run reads. Choose another", path=str(out))


# --- one writer at a time ---------------------------------------------------------------

#: Seconds a check of an output waits for its lock: another check holds it for an
#: instant (two processes checking one output at once must not refuse each other); a
#: run that is writing holds it for the whole run.
PROBE_WAIT_S = 2.0


def lock_path(target: Path) -> Path:
    """The hidden sibling ``.NAME.lock`` that :func:`output_lock` locks for ``target``."""
    return target.parent / f".{target.name}.lock"


_HELD: dict[str, int] = {}  # lock file -> fd, for the locks this process holds


@contextmanager
def output_lock(target: str | Path, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the exclusive writer lock of output ``target`` for the block.

    The lock is an ``flock`` on ``.NAME.lock`` beside ``target`` (its folder must
    exist), created on entry and removed on release; nested use in one process is
    free (re-entrant). When another process holds it, wait up to ``wait_s`` seconds,
    then raise InputError "another kinetics run is writing TARGET". A file system
    without ``flock`` gives no lock (nothing is refused). A process that dies loses
    its lock with it: a lock file left behind is never a stale lock.
    """
    target = Path(os.path.realpath(target))
    path = lock_path(target)
    key = str(path)
    if key in _HELD:  # this process holds it already
        yield
        return
    fd = _acquire(path, target, wait_s) if fcntl is not None else -1
    _HELD[key] = fd
    try:
        yield
    finally:
        del _HELD[key]
        if fd >= 0:
            try:
                os.unlink(path)  # while still locked: a waiter then retries the new file
            except OSError:
                pass
            os.close(fd)


def _acquire(path: Path, target: Path, wait_s: float) -> int:
    """Lock ``path`` (see :func:`output_lock`); the locked fd, or -1 without flock support."""
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        with _os_errors_as_input(target):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise InputError("another kinetics run is writing it; wait for that run to "
                                 "finish, or choose another output", path=str(target)) from None
            time.sleep(0.05)
            continue
        except OSError:  # no flock on this file system (ENOLCK, EOPNOTSUPP): no lock file
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            return -1
        try:
            now = os.stat(path)
            mine = os.fstat(fd)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed this file as we opened it: lock the new one


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


def _remove_tree(path: Path) -> bool:
    """Remove a folder kinetics wrote, also where it (or a file in it) was made read-only;
    True when it is gone."""
    def retry(func, name, _exc) -> None:
        parent = os.path.dirname(name)
        try:
            os.chmod(parent, os.stat(parent).st_mode | stat.S_IRWXU)
            func(name)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:  # pragma: no cover - Python 3.10/3.11
        shutil.rmtree(path, onerror=retry)
    return not os.path.lexists(path)


def remove_stale_temporaries(parent: Path, name: str) -> list[Path]:
    """Remove temporaries of ``parent/name`` left by dead kinetics processes.

    Only ``.NAME.tmp-PID-*`` / ``.NAME.old-PID-*`` entries whose PID is not running;
    a folder additionally must carry the marker or be empty. An ``.old`` folder (the
    earlier output, moved aside during a swap) is removed only when NAME is a kinetics
    output again; with NAME missing it is renamed back to NAME, else kept. Returns
    what was removed.
    """
    pattern = re.compile(rf"\.{re.escape(name)}\.(tmp|old)-(\d+)-[A-Za-z0-9_]+(?:\.[A-Za-z]+)?")
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    target = parent / name
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _process_alive(int(match.group(2))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            if not ((entry / MARKER).is_file() or not any(entry.iterdir())):
                continue
            if match.group(1) == "old":
                if not os.path.lexists(target):
                    os.rename(entry, target)  # the only copy of the earlier output: back
                    continue
                if _read_marker(target) is None:
                    continue  # NAME is not ours: the .old may be the only kinetics copy
            if _remove_tree(entry):
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


_PROTECTED = ("is read-only: kinetics does not replace a protected output (make it "
              "writable, or choose another)")


def _check_replaceable(target: Path, text: str, *, during_run: bool = False) -> None:
    """InputError unless the existing folder ``target`` may be replaced: empty or a
    kinetics output, and writable (the folder and every file in it)."""
    with _os_errors_as_input(target):
        foreign = _foreign_entries(target)
        if foreign and during_run:
            raise InputError(f"gained files kinetics did not write during the run ({foreign[0]})",
                             path=text)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise InputError(f"holds files kinetics did not write ({shown}); --out replaces only "
                             f"an empty folder or an earlier report (marker {MARKER}). "
                             "Choose another --out", path=text)
        if not os.access(target, os.W_OK | os.X_OK) or not all(
                os.access(target / e, os.W_OK) for e in os.listdir(target)):
            raise InputError(_PROTECTED, path=text)


def check_output_folder(text: str) -> Path:
    """The folder ``--out TEXT`` names (a symlink followed), if kinetics may replace it.

    Raises InputError, touching nothing, for an empty name, the current folder or
    one above it, a path that is a file or a broken link, an existing folder holding
    anything kinetics did not write or a read-only one, or one another kinetics run
    is writing (see :func:`output_lock`).
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
    if target.exists() and not target.is_dir():
        raise InputError("exists and is not a folder", path=text)
    if target.parent.is_dir():
        with output_lock(target, wait_s=PROBE_WAIT_S):
            if target.exists():
                _check_replaceable(target, text)
    return target


def _write_marker(folder: Path) -> None:
    files = sorted(p.name for p in folder.iterdir() if p.name != MARKER)
    (folder / MARKER).write_text("\n".join([_MARKER_HEADER, *files]) + "\n", encoding="utf-8")


def _make_shareable(path: Path, mode: int = 0o777) -> None:
    """mkdtemp/mkstemp make private entries; outputs get the umask's permissions."""
    umask = os.umask(0o22)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


# renameat2(2): flags and the "current folder" descriptor (Linux, glibc >= 2.28)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically exchange two existing paths of one file system
    (``renameat2(RENAME_EXCHANGE)``); False, touching nothing, where the system or
    the file system lacks it; OSError on any other failure."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(tmp: Path, target: Path, text: str) -> None:
    """Put the finished folder ``tmp`` at ``target`` (under the lock): a plain rename when
    there is none, else an atomic exchange (or two guarded renames) with the earlier one,
    which is then removed."""
    if not os.path.lexists(target):
        os.rename(tmp, target)
        return
    _check_replaceable(target, text, during_run=True)  # it may have changed during the run
    if exchange_paths(tmp, target):
        _remove_tree(tmp)  # tmp now holds the earlier output
        return
    old = target.with_name(f"{_temp_prefix(target.name, 'old')}{secrets.token_hex(4)}")
    try:
        os.rename(target, old)
        os.rename(tmp, target)
    except BaseException:
        if old.exists() and not os.path.lexists(target):
            os.rename(old, target)  # interrupted between the renames: the earlier one back
        raise
    _remove_tree(old)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target`` (from :func:`check_output_folder`).

    Holds :func:`output_lock` on ``target`` throughout. On a normal exit the folder
    gets a marker listing its files and is swapped in for ``target``; on any exception
    (Ctrl-C and SIGTERM included) it is removed and ``target`` is left as it was; a
    writing error (full disk, ...) becomes InputError naming ``target``. Stale
    temporaries of dead runs are removed first.
    """
    text = str(target)
    with _os_errors_as_input(target):
        target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):
        with _os_errors_as_input(target):
            remove_stale_temporaries(target.parent, target.name)
            tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target.name), dir=target.parent))
        try:
            _make_shareable(tmp)
            _write_marker(tmp)  # ours from the first moment (stale cleanup relies on it)
            yield tmp
            _write_marker(tmp)
            with _os_errors_as_input(target):
                _swap_in(tmp, target, text)
        except BaseException as exc:
            if tmp.is_dir():
                _remove_tree(tmp)
            reason = write_failure(exc)
            if reason is not None:
                raise _unwritable(target, reason) from None
            raise


# --- files ------------------------------------------------------------------------------

def _check_file_writable(target: Path, text: str) -> None:
    if target.exists() and not os.access(target, os.W_OK):
        raise InputError(_PROTECTED, path=text)


def check_output_file(text: str, *, replace: bool = False) -> Path:
    """The file ``--out TEXT`` names (a symlink followed); InputError when it is a
    folder, exists and ``replace`` is False, is read-only, or another kinetics run is
    writing it."""
    if not text.strip():
        raise InputError("--out is empty; name an output file")
    target = Path(os.path.realpath(text))
    if target.is_dir():
        raise InputError("is a folder; expected a file name", path=text)
    _check_parents(target, text)
    if target.exists() and not replace:
        raise InputError("already exists; pass --force to replace it", path=text)
    _check_file_writable(target, text)
    if target.parent.is_dir():
        with output_lock(target, wait_s=PROBE_WAIT_S):
            pass
    return target


@contextmanager
def staged_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` (same suffix) for the caller to write.

    Holds :func:`output_lock` on ``target`` throughout. On a normal exit the file is
    flushed to disk and renamed over ``target`` (atomic: a reader sees the old file or
    the new one); on any exception it is removed and ``target`` left as it was; a
    writing error (full disk, ...) becomes InputError naming ``target``. A folder or
    a read-only file at ``target`` is refused.
    """
    target = Path(os.path.realpath(target))
    if target.is_dir():
        raise InputError("is a folder; expected a file name", path=str(target))
    with _os_errors_as_input(target):
        target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):
        _check_file_writable(target, str(target))
        with _os_errors_as_input(target):
            remove_stale_temporaries(target.parent, target.name)
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=_temp_prefix(target.name),
                                        suffix=target.suffix)
        os.close(fd)
        tmp = Path(name)
        try:
            _make_shareable(tmp, 0o666)
            yield tmp
            _fsync(tmp)
            os.replace(tmp, target)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            reason = write_failure(exc)
            if reason is not None:
                raise _unwritable(target, reason) from None
            raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_file(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically through :func:`staged_file`."""
    with staged_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_file(path: str | Path, data: Any, *, indent: int | None = 2,
                    sort_keys: bool = False) -> None:
    """Write ``data`` as strict JSON (see :func:`dumps_json`), atomically."""
    write_text_file(path, dumps_json(data, indent=indent, sort_keys=sort_keys) + "\n")
