"""Reading JSON that users hand us (configs, baselines, raw JSONL lines), with one-line errors.

A UTF-8 byte-order mark is accepted (as for CSV); invalid UTF-8, invalid JSON and JSON
nested too deeply for the parser are :class:`~kinetics.errors.InputError` naming the
file and, where the text has them, the line and column.

The JSON Schemas (draft 2020-12) of the JSON kinetics writes ship in the package
(:data:`SCHEMA_DIR`, :func:`schema_path`, :func:`load_schema`): ``summary``
(summary.json, ``report --json``, ``check --update``), ``gate-baseline``, ``bench-record``
and ``provenance``, which the others reference by its file name
(``"$ref": "provenance.schema.json"``), so ``check-jsonschema --schemafile PATH`` resolves
it beside them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kinetics.errors import InputError

BOM = "\ufeff"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMAS: tuple[str, ...] = ("provenance", "summary", "gate-baseline", "bench-record")


def schema_path(name: str) -> Path:
    """The shipped JSON Schema file of ``name`` (one of :data:`SCHEMAS`; ValueError else)."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r} (choose from {', '.join(SCHEMAS)})")
    return SCHEMA_DIR / f"{name}.schema.json"


def load_schema(name: str) -> dict[str, Any]:
    """The parsed JSON Schema of ``name`` (see :func:`schema_path`)."""
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


class _NotJSON(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJSON(name)  # NaN, Infinity, -Infinity: Python's json reads them, JSON has none


def parse_json(text: str, source: str, line: int | None = None) -> Any:
    """Parse JSON ``text`` read from ``source`` (at 1-based ``line`` of it, for one line of a
    JSONL file); InputError naming the source, line and column on invalid JSON (``NaN``
    and ``Infinity`` included, which JSON does not have), and on nesting deeper than the
    parser's recursion limit (never a RecursionError)."""
    try:
        return json.loads(text.rstrip("\r\n"), parse_constant=_no_constant)
    except _NotJSON as exc:
        raise InputError(f"not valid JSON ({exc} is no JSON number)", path=source,
                         line=line) from None
    except json.JSONDecodeError as exc:
        where = (f"column {exc.colno}" if line is not None
                 else f"line {exc.lineno}, column {exc.colno}")
        raise InputError(f"not valid JSON ({exc.msg}; {where})", path=source,
                         line=line) from None
    except RecursionError:
        raise InputError("not valid JSON here (nested too deeply to read)", path=source,
                         line=line) from None


def decode_utf8(data: bytes, source: str, line: int | None = None) -> str:
    """``data`` as text (a leading byte-order mark dropped); InputError naming the source,
    the line and the byte offset of invalid UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"byte {exc.start + 1}" + ("" if line is not None else " of the file")
        raise InputError(f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at {where})",
                         path=source, line=line) from None
    return text[1:] if text.startswith(BOM) else text


def json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(1-based line, parsed JSON) of each non-blank line of a JSONL file (a UTF-8 BOM is
    accepted); InputError naming the file and line for invalid UTF-8 and invalid or too
    deeply nested JSON, and naming the file when it cannot be read."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                text = decode_utf8(raw, str(path), number)
                if text.strip():
                    yield number, parse_json(text, str(path), number)
    except OSError as exc:
        raise InputError(f"cannot read it ({exc.strerror or exc})", path=str(path)) from None


def read_text_file(path: str | Path, missing_hint: str = "") -> str:
    """A UTF-8 text file's contents (BOM dropped); InputError naming the file when it is
    missing (plus ``missing_hint``), a folder, unreadable or not UTF-8 (with the line)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such file{missing_hint}", path=str(path)) from None
    except IsADirectoryError:
        raise InputError("is a folder, expected a file", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read it ({exc.strerror or exc})", path=str(path)) from None
    try:
        return decode_utf8(data, str(path))
    except InputError:
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, start=1):  # name the line of the bad byte
            decode_utf8(raw + b"\n" if number < len(lines) else raw, str(path), number)
        raise


def read_json_object(path: str | Path, missing_hint: str = "") -> dict[str, Any]:
    """Parse a JSON file that must hold an object.

    Raises InputError naming the file for a missing file (plus ``missing_hint``),
    invalid UTF-8 or JSON (with its line), JSON nested too deeply, or a top-level
    value that is not an object.
    """
    text = read_text_file(path, missing_hint)
    data = parse_json(text, str(path))
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=str(path))
    return data
