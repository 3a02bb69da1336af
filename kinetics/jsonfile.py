"""Reading JSON files that users hand us (configs, baselines), with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kinetics.errors import InputError


def read_json_object(path: str | Path, missing_hint: str = "") -> dict[str, Any]:
    """Parse a JSON file that must hold an object.

    Raises InputError naming the file for a missing file (plus ``missing_hint``),
    invalid JSON (with its line) or a top-level value that is not an object.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no such file{missing_hint}", path=str(path)) from None
    except IsADirectoryError:
        raise InputError("is a folder, expected a JSON file", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno})", path=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", path=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=str(path))
    return data
