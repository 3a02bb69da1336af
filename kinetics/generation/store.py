"""Resumable generation: finished units as atomic shard files beside the output.

A run writing ``OUT`` keeps a hidden folder ``.OUT.parts`` next to it: a
``run.json`` naming the run's arguments, and one Parquet shard per finished
(configuration, problem), each written to a temporary name and renamed. A run
restarted with the same arguments skips the units that have a shard; a run with other
arguments is refused until the folder is removed (``--restart``). Data-parallel ranks
share the folder; each unit has one owner, so no shard is written twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinetics.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

MANIFEST = "run.json"


def parts_folder(out: Path) -> Path:
    """The shard folder of output file ``out``."""
    return out.parent / f".{out.name}.parts"


def _shard_name(config_index: int, problem_id: str) -> str:
    digest = hashlib.sha1(problem_id.encode("utf-8")).hexdigest()[:20]
    return f"c{config_index:03d}-{digest}.parquet"


class ShardStore:
    """The shard folder of one run (see the module docstring)."""

    def __init__(self, folder: Path, arguments: dict[str, Any]) -> None:
        self.folder, self.arguments = folder, arguments

    def open(self, *, restart: bool = False, create: bool = True) -> int:
        """Check or create the folder; returns the number of shards kept from an earlier
        run. InputError when it holds a run of other arguments (unless ``restart``)."""
        manifest = self.folder / MANIFEST
        if self.folder.exists() and restart:
            shutil.rmtree(self.folder)
        if manifest.is_file():
            try:
                earlier = json.loads(manifest.read_text(encoding="utf-8"))
            except ValueError:
                earlier = None
            if earlier != json.loads(json.dumps(self.arguments)):
                raise InputError("holds an unfinished run with other arguments; rerun with "
                                 "the same ones to resume it, or pass --restart to discard it",
                                 path=str(self.folder))
            return len(self.shards())
        if not create:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        self._atomic_write(MANIFEST, json.dumps(self.arguments, indent=2).encode("utf-8"))
        return 0

    def shards(self) -> list[Path]:
        return sorted(self.folder.glob("c*.parquet"))

    def has(self, config_index: int, problem_id: str) -> bool:
        return (self.folder / _shard_name(config_index, problem_id)).is_file()

    def write(self, config_index: int, problem_id: str, frame: pd.DataFrame) -> None:
        """Write one unit's rows atomically (a temporary file, then a rename)."""
        import io

        buffer = io.BytesIO()
        frame.assign(config_index=config_index).to_parquet(buffer, index=False)
        self._atomic_write(_shard_name(config_index, problem_id), buffer.getvalue())

    def _atomic_write(self, name: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read_all(self) -> pd.DataFrame:
        """Every shard's rows, concatenated (unordered)."""
        import pandas as pd

        frames = [pd.read_parquet(p) for p in self.shards()]
        if not frames:
            raise InputError("no finished samples to write", path=str(self.folder))
        return pd.concat(frames, ignore_index=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
