"""Problems to sample answers for: the package's own arithmetic set, local files, datasets.

A :class:`Problem` is a question, its gold final answer and whether grading must be
an exact (normalized) string match rather than mathematical equivalence.

* :func:`arithmetic_problems`: seeded multi-step arithmetic word problems with exact
  integer answers, from one step with small numbers to five steps with larger ones,
  written by the package itself (no download);
* :func:`load_problems`: that set (``builtin:arithmetic``), a local ``.jsonl`` /
  ``.json`` / ``.parquet`` / ``.csv`` file, a local dataset folder (``save_to_disk``
  output, or data files that ``datasets.load_dataset`` reads) or a HF hub dataset id.

Problem ids are the id field's value when one is named, else a hash of the question
(:func:`kinetics.analysis.ingest.query_id`, the id ingested tables use). Bad input (no
such file, no rows, a missing or blank question or answer, a question that is not
text, duplicate ids, a line that is not JSON) raises InputError naming the file, the
1-based data row (the line, for JSONL) and the field.
"""

from __future__ import annotations

import json
import math
import numbers
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinetics.errors import InputError, install_hint

BUILTIN_SOURCES = ("builtin:arithmetic", "arithmetic")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
BOXED_INSTRUCTION = "Put the final answer in \\boxed{}."


@dataclass(frozen=True)
class Problem:
    """A question and its gold final answer; ``exact``: grade by normalized string
    equality only (no mathematical equivalence)."""

    id: str
    question: str
    answer: str
    exact: bool = False


# --- the package's own problem set ------------------------------------------------------

_PEOPLE = (("Ana", "She", "her"), ("Ben", "He", "his"), ("Cara", "She", "her"),
           ("Dev", "He", "his"), ("Eli", "He", "his"), ("Fay", "She", "her"),
           ("Gus", "He", "his"), ("Hana", "She", "her"), ("Ivo", "He", "his"),
           ("June", "She", "her"), ("Kai", "He", "his"), ("Lena", "She", "her"))
_ITEMS = ("apples", "marbles", "stickers", "coins", "cards", "pencils", "shells", "stamps")
_PARTS = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth", 10: "a tenth"}
# per difficulty level (0 easiest): start range, add/subtract range, largest factor
_LEVELS = (((2, 12), (1, 9), 3), ((5, 30), (2, 20), 4), ((10, 60), (5, 50), 5),
           ((20, 150), (10, 99), 6), ((50, 500), (20, 250), 9))
_MAX_VALUE = 20_000  # no multiplication past this


def _step(rng: random.Random, value: int, level: int, pronoun: str) -> tuple[int, str]:
    """One operation on ``value``: (new value, its sentence). Level 0 only adds or
    subtracts, level 1 also multiplies, higher levels also divide; a subtraction
    leaves at least 2 and a third of the value, a division at least 2."""
    _, (lo, hi), factor = _LEVELS[level]
    ops = ["add"]
    if value >= 4:
        ops.append("sub")
    if level >= 1 and value * 2 <= _MAX_VALUE:
        ops.append("mul")
    parts = [k for k in _PARTS if value % k == 0 and value > k]
    if level >= 2 and parts:
        ops.append("div")
    op = rng.choice(ops)
    if op == "add":
        n = rng.randint(lo, hi)
        return value + n, f"{pronoun} buys {n} more."
    if op == "sub":
        cap = min(hi, value - max(2, value // 3))
        n = rng.randint(min(lo, cap), cap)
        return value - n, f"{pronoun} gives away {n}."
    if op == "mul":
        k = rng.randint(2, max(2, min(factor, _MAX_VALUE // value)))
        return value * k, f"Then {pronoun.lower()} has {k} times as many."
    k = rng.choice(parts)
    return value // k, f"{pronoun} keeps {_PARTS[k]} of them."


def arithmetic_problems(count: int = 24, seed: int = 0) -> list[Problem]:
    """``count`` word problems, easy to hard, deterministic for ``(count, seed)``.

    Problem ``i`` has difficulty level ``5 i // count`` (0-4): ``level + 1`` steps
    (buy more, give away, then k times as many, keep half / a third / ...) on a start
    value and amounts that grow with the level (1-9 at level 0, up to 250 at level 4);
    every intermediate value is an integer of at least 2. Ids are ``arith-<i>-s<steps>``
    (``arith-000-s1``); each question ends with the instruction to box the answer.
    """
    if count < 1:
        raise InputError(f"must be at least 1, got {count}", field="count")
    rng = random.Random(seed)
    problems = []
    for i in range(count):
        level = i * len(_LEVELS) // count
        name, pronoun, _ = rng.choice(_PEOPLE)
        items = rng.choice(_ITEMS)
        value = rng.randint(*_LEVELS[level][0])
        sentences = [f"{name} has {value} {items}."]
        for _ in range(level + 1):
            value, sentence = _step(rng, value, level, pronoun)
            sentences.append(sentence)
        sentences.append(f"How many {items} does {name} have now? {BOXED_INSTRUCTION}")
        problems.append(Problem(id=f"arith-{i:03d}-s{level + 1}", question=" ".join(sentences),
                                answer=str(value)))
    return problems


# --- rows -> problems (pure) ----------------------------------------------------------

def _answer_text(value: Any) -> str | None:
    """A gold answer as text: strings stripped, numbers without a spurious '.0';
    None when missing or blank."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    if value is None:
        return None
    raise TypeError


def _exact_flag(value: Any) -> bool:
    if _missing(value):
        return False
    if isinstance(value, (bool, numbers.Integral)) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes",
                                                            "no", ""):
        return value.strip().lower() in ("true", "1", "yes")
    raise TypeError


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _shown(value: Any) -> str:
    return repr(value)[:80]


def problems_from_records(records: Iterable[tuple[int, dict]], *, source: str,
                          question_field: str = "question", answer_field: str = "answer",
                          id_field: str | None = None, exact_field: str | None = None,
                          by_line: bool = False) -> list[Problem]:
    """Problems from ``(position, record)`` pairs (position: the 1-based data row, or
    the file line when ``by_line``). InputError names ``source``, position and field of
    the first bad value; a field that no record has is named with the fields there are.
    """
    from kinetics.analysis.ingest import query_id  # pandas: imported when used

    records = list(records)
    if not records:
        raise InputError("no problems (no data rows)", path=source)
    present = set().union(*(r.keys() for _, r in records))
    for field in (question_field, answer_field, id_field, exact_field):
        if field is not None and field not in present:
            raise InputError(f"no such field; the rows have: {', '.join(sorted(present))}"[:300],
                             path=source, field=field)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    unit = "line" if by_line else "row"
    for pos, record in records:
        where = {"path": source, unit: pos}
        question = record.get(question_field)
        if not isinstance(question, str) or not question.strip():
            raise InputError("missing question" if _missing(question) or question == "" else
                             f"expected the question text, got {_shown(question)}",
                             field=question_field, **where)
        try:
            answer = _answer_text(record.get(answer_field))
        except TypeError:
            raise InputError(f"expected text or a number, got {_shown(record[answer_field])}",
                             field=answer_field, **where) from None
        if answer is None:
            raise InputError("missing answer", field=answer_field, **where)
        if id_field is None:
            pid = query_id(question)
        else:
            raw_id = record.get(id_field)
            if isinstance(raw_id, bool) or not isinstance(raw_id, (str, numbers.Integral)) \
                    or not str(raw_id).strip():
                raise InputError("missing id" if _missing(raw_id) or raw_id == "" else
                                 f"expected a string or integer id, got {_shown(raw_id)}",
                                 field=id_field, **where)
            pid = str(raw_id).strip()
        if pid in seen:
            what = f"duplicate id {pid!r}" if id_field else "duplicate question (same id)"
            raise InputError(f"{what}, first at {unit} {seen[pid]}",
                             field=id_field or question_field, **where)
        seen[pid] = pos
        try:
            exact = False if exact_field is None else _exact_flag(record.get(exact_field))
        except TypeError:
            raise InputError(f"expected true/false, got {_shown(record[exact_field])}",
                             field=exact_field, **where) from None
        problems.append(Problem(id=pid, question=question, answer=answer, exact=exact))
    return problems


# --- I/O edge ----------------------------------------------------------------------------

def load_problems(source: str, *, split: str = "test", question_field: str = "question",
                  answer_field: str = "answer", id_field: str | None = None,
                  exact_field: str | None = None, limit: int | None = None,
                  name: str | None = None) -> list[Problem]:
    """Problems from ``source``, in its order, the first ``limit`` of them (all when
    None; only those are checked).

    ``source``: ``builtin:arithmetic`` (or ``arithmetic``): :func:`arithmetic_problems`
    with its defaults; a local ``.jsonl`` / ``.json`` (an array of objects, or JSON
    lines) / ``.parquet`` / ``.csv`` file; a local dataset folder (``save_to_disk``
    output, or data files ``datasets.load_dataset`` reads, e.g. ``test.jsonl``); else a
    HF hub dataset id (``name``: its configuration) read with ``datasets.load_dataset``.
    ``split`` applies to dataset folders and hub ids. Needs ``datasets`` for those two
    only; an unreachable hub fails within seconds (:func:`require_hub`).
    """
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise InputError(f"must be at least 1, got {limit}", field="limit")
    if source.strip().lower() in BUILTIN_SOURCES:
        return arithmetic_problems()[:limit]
    from kinetics.analysis.ingest import looks_like_path, require_hub

    path = Path(source).expanduser()
    by_line = False
    if path.is_file():
        records, by_line = _file_records(path)
    elif path.is_dir():
        records = _dataset_records(str(path), split, name, local=True, limit=limit)
    else:
        if looks_like_path(source) or path.suffix.lower() in FILE_SUFFIXES:
            raise InputError("no such file or folder", path=source)
        require_hub(source, "problem file or dataset folder")
        records = _dataset_records(source, split, name, local=False, limit=limit)
    if limit is not None:
        records = records[:limit]
    return problems_from_records(records, source=str(source), question_field=question_field,
                                 answer_field=answer_field, id_field=id_field,
                                 exact_field=exact_field, by_line=by_line)


def _file_records(path: Path) -> tuple[list[tuple[int, dict]], bool]:
    """(records, by_line) of one local file; by_line for JSON lines."""
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise InputError(f"unknown file type '{suffix or '(none)'}' (expected "
                         f"{', '.join(FILE_SUFFIXES)}, or a dataset folder)", path=str(path))
    if path.stat().st_size == 0:
        raise InputError("empty file", path=str(path))
    if suffix in (".jsonl", ".json"):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError("not a UTF-8 text file", path=str(path)) from None
        if suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                if exc.msg != "Extra data":  # else: JSON lines in a .json file
                    raise InputError(f"not JSON ({exc.msg}, line {exc.lineno} column "
                                     f"{exc.colno})", path=str(path)) from None
            else:
                return _json_array_records(data, path), False
        return _jsonl_records(text, path), True
    import pandas as pd

    try:
        if suffix == ".csv":  # all text: '033' stays '033'; blank cells are missing
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:  # the parsers' errors: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot parse as {suffix[1:]}: {first}"[:300], path=str(path)) from None
    rows = [{k: None if _missing(v) or v == "" else v for k, v in r.items()}
            for r in frame.to_dict("records")]
    return list(enumerate(rows, start=1)), False


def _json_array_records(data: Any, path: Path) -> list[tuple[int, dict]]:
    if not isinstance(data, list):
        raise InputError("expected a JSON array of objects (or one object per line in a "
                         ".jsonl file)", path=str(path))
    for row, record in enumerate(data, start=1):
        if not isinstance(record, dict):
            raise InputError(f"expected a JSON object, got {_shown(record)}", path=str(path),
                             row=row)
    return list(enumerate(data, start=1))


def _jsonl_records(text: str, path: Path) -> list[tuple[int, dict]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON ({exc.msg}, column {exc.colno})", path=str(path),
                             line=number) from None
        if not isinstance(record, dict):
            raise InputError(f"expected a JSON object, got {_shown(record)}", path=str(path),
                             line=number)
        records.append((number, record))
    return records


@contextmanager
def _quiet_datasets(datasets: Any) -> Iterator[None]:
    """datasets' progress bars off while reading (restored after)."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def _dataset_records(source: str, split: str, name: str | None, *, local: bool,
                     limit: int | None) -> list[tuple[int, dict]]:
    """Rows of a dataset folder or hub dataset (split ``split``) via ``datasets``."""
    try:
        import datasets
    except ImportError:
        raise InputError("reading a dataset needs the `datasets` package "
                         f"({install_hint('generate')})", path=source) from None
    folder = Path(source)
    try:
        with _quiet_datasets(datasets):
            if local and ((folder / "dataset_dict.json").is_file()
                          or (folder / "state.json").is_file()):
                data = datasets.load_from_disk(str(folder))
                if isinstance(data, datasets.DatasetDict):
                    if split not in data:
                        raise InputError(f"no split '{split}' (splits: {', '.join(data)})",
                                         path=source)
                    data = data[split]
            else:
                data = datasets.load_dataset(source, name, split=split)
            if limit is not None:
                data = data.select(range(min(limit, len(data))))
            rows = [dict(r) for r in data]
    except InputError:
        raise
    except Exception as exc:  # unknown dataset, split or config, unreadable files: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load as a dataset: {first}"[:300], path=source) from None
    return list(enumerate(rows, start=1))
