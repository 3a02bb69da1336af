"""The trial table: one row per sampled answer, loaded and validated once, here.

The columns, their types and units, and what validation rejects are written down in
one place, docs/trials.md (:data:`REQUIRED_COLUMNS`, plus the optional ``answer``).
Lengths must be at most 2**31 tokens (``kinetics.cost.MAX_TOKENS``, the cost model's
exactness range); a larger one is an error naming its row and field.
CSV, JSONL and Parquet files are read. :func:`load_trials` is the one entry point;
everything downstream takes the validated DataFrame it returns and trusts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from kinetics.cost import MAX_TOKENS, METHODS, AttentionConfig
from kinetics.errors import InputError
from kinetics.jsonfile import json_lines, read_text_file
from kinetics.models import (
    ModelSpec,
    get_model,
    model_from_config,
    model_key,
    preset_key,
    with_param_count,
)

REQUIRED_COLUMNS: tuple[str, ...] = (
    "model", "method", "budget", "block_size", "local", "query_id", "trial",
    "prompt_len", "gen_len", "correct", "answer_pos",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("answer",)
INT_COLUMNS: tuple[str, ...] = ("trial", "prompt_len", "gen_len", "correct")
NULLABLE_INT_COLUMNS: tuple[str, ...] = ("budget", "block_size", "local", "answer_pos")
TOKEN_COLUMNS: tuple[str, ...] = ("prompt_len", "gen_len", "budget", "block_size", "local",
                                  "answer_pos")
MAX_INDEX = 2**53  # trial and correct: any larger integer is not exact in a float column

EMBEDDED_NAME = "synthetic_trials.parquet"
EMBEDDED_SOURCE = "embedded:kinetics/data/" + EMBEDDED_NAME
# Parquet key-value metadata marking a file as synthetic (the generator sets it).
SYNTHETIC_META_KEY = b"kinetics.synthetic"
MODEL_CONFIGS_META_KEY = b"kinetics.model_configs"  # {table model name: HF config}


def embedded_path() -> Path:
    """Path of the packaged synthetic trial table."""
    return Path(str(resources.files("kinetics") / "data" / EMBEDDED_NAME))


def _read_table(path: Path) -> tuple[pd.DataFrame, bool]:
    """Read CSV / JSONL / Parquet into a raw DataFrame; the bool: synthetic marker."""
    if not path.exists():
        raise InputError("no such file", path=str(path))
    if path.is_dir():
        raise InputError("is a directory, expected a .csv, .jsonl or .parquet trial table",
                         path=str(path))
    if path.stat().st_size == 0:
        raise InputError("empty file (no header, no rows)", path=str(path))
    suffix = "".join(path.suffixes[-1:]).lower()
    synthetic = False
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            meta = table.schema.metadata or {}
            synthetic = meta.get(SYNTHETIC_META_KEY, b"0") == b"1"
            frame = table.to_pandas()
        elif suffix == ".csv":
            frame = pd.read_csv(path, index_col=False,
                                dtype={"model": str, "method": str, "query_id": str, "answer": str})
        elif suffix in (".jsonl", ".json"):
            frame = _read_jsonl(path)
        else:
            raise InputError(f"unknown file type '{suffix or '(none)'}' "
                             "(expected .csv, .jsonl or .parquet)", path=str(path))
    except InputError:
        raise
    except UnicodeDecodeError:
        read_text_file(path)  # raises, naming the line of the first invalid byte
        raise
    except Exception as exc:  # parser errors of three libraries: one message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot parse as {suffix[1:]}: {first}", path=str(path)) from None
    if len(frame) == 0:
        raise InputError("no data rows", path=str(path))
    return frame, synthetic


def _read_jsonl(path: Path) -> pd.DataFrame:
    """A JSONL trial table (a UTF-8 BOM accepted); on a parse error, InputError naming
    the first line that is not a JSON object."""
    try:
        return pd.read_json(path, lines=True, dtype=False, encoding="utf-8-sig")
    except Exception:
        for number, record in json_lines(path):  # raises at a line that is not JSON
            if not isinstance(record, dict):
                raise InputError("expected a JSON object", path=str(path), line=number) from None
        raise


def _bad_row(mask: np.ndarray) -> int:
    """1-based data row of the first True in ``mask``."""
    return int(np.flatnonzero(mask)[0]) + 1


def _shown(value: object) -> object:
    """A cell as a person wrote it: numpy scalars as plain Python values."""
    return value.item() if isinstance(value, np.generic) else value


def _as_int(frame: pd.DataFrame, column: str, path: str, *, nullable: bool) -> pd.Series:
    raw = frame[column]
    empty = raw.isna() | (raw.astype(str).str.strip() == "")
    if raw.dtype == bool or str(raw.dtype) == "boolean":
        raw = raw.astype("Int64")
    values = pd.to_numeric(raw.where(~empty), errors="coerce")
    infinite = (values.abs() == np.inf).fillna(False)
    values = values.mask(infinite)  # 'inf' / 1e999 is no token count: reported below
    bad = (values.isna() & ~empty).to_numpy()
    if bad.any():
        row = _bad_row(bad)
        raise InputError(f"expected an integer, got {_shown(raw.iloc[row - 1])!r}", path=path, row=row,
                         field=column)
    nonint = (values.notna() & (values != np.floor(values.fillna(0)))).to_numpy()
    if nonint.any():
        row = _bad_row(nonint)
        raise InputError(f"expected an integer, got {_shown(raw.iloc[row - 1])!r}", path=path, row=row,
                         field=column)
    if not nullable and empty.any():
        row = _bad_row(empty.to_numpy())
        raise InputError("missing value", path=path, row=row, field=column)
    negative = (values < 0).fillna(False).to_numpy()
    if negative.any():
        row = _bad_row(negative)
        raise InputError(f"must be >= 0, got {values.iloc[row - 1]:g}", path=path, row=row,
                         field=column)
    maximum = MAX_TOKENS if column in TOKEN_COLUMNS else MAX_INDEX
    too_large = (values > maximum).fillna(False).to_numpy()
    if too_large.any():
        row = _bad_row(too_large)
        cap = "the 2**31-token cap" if column in TOKEN_COLUMNS else "2**53"
        raise InputError(f"{raw.iloc[row - 1]} is over {cap}", path=path, row=row, field=column)
    return values.astype("Int64") if nullable else values.astype(np.int64)


def validate_trials(frame: pd.DataFrame, path: str = "<trials>") -> pd.DataFrame:
    """Check and normalize a raw trial table; InputError names file, row and field.

    Returns a new DataFrame with the canonical columns and dtypes, plus ``config``
    (the attention config's label, e.g. ``topk1024``). A correct trial with an
    empty ``answer_pos`` is taken to complete its answer at its last token.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)} "
                         f"(required: {', '.join(REQUIRED_COLUMNS)})", path=path, field=missing[0])
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    for column in ("model", "method", "query_id"):
        raw = frame[column]
        empty = (raw.isna() | (raw.astype(str).str.strip() == "")).to_numpy()
        if empty.any():
            raise InputError("missing value", path=path, row=_bad_row(empty), field=column)
        out[column] = raw.astype(str).str.strip()
    out["method"] = out["method"].str.lower()
    # one name per model: 'Qwen/Qwen3-8B' and 'qwen3-8b' are the same preset
    names = pd.unique(out["model"])
    out["model"] = out["model"].map({n: model_key(n) for n in names})
    bad_method = ~out["method"].isin(METHODS).to_numpy()
    if bad_method.any():
        row = _bad_row(bad_method)
        raise InputError(f"unknown method {out['method'].iloc[row - 1]!r} "
                         f"(choose from {', '.join(METHODS)})", path=path, row=row, field="method")
    for column in INT_COLUMNS:
        out[column] = _as_int(frame, column, path, nullable=False)
    for column in NULLABLE_INT_COLUMNS:
        out[column] = _as_int(frame, column, path, nullable=True)
    bad_correct = ~out["correct"].isin((0, 1)).to_numpy()
    if bad_correct.any():
        row = _bad_row(bad_correct)
        raise InputError(f"must be 0 or 1, got {out['correct'].iloc[row - 1]}", path=path,
                         row=row, field="correct")
    late = (out["answer_pos"] > out["gen_len"]).fillna(False).to_numpy()
    if late.any():
        row = _bad_row(late)
        raise InputError(f"answer_pos {out['answer_pos'].iloc[row - 1]} is past gen_len "
                         f"{out['gen_len'].iloc[row - 1]}", path=path, row=row, field="answer_pos")
    fill = out["answer_pos"].isna() & (out["correct"] == 1)
    out.loc[fill, "answer_pos"] = out.loc[fill, "gen_len"]
    if "answer" in frame.columns:
        answer = frame["answer"].astype("string").str.strip()
        out["answer"] = answer.mask(answer == "")
    out["config"] = _config_labels(out, path)
    key = ["model", "config", "query_id", "trial"]
    dup = out.duplicated(key).to_numpy()
    if dup.any():
        row = _bad_row(dup)
        raise InputError("duplicate (model, config, query_id, trial)", path=path, row=row,
                         field="trial")
    if "answer" in out.columns and out["answer"].notna().any():
        _check_vote_sizes(out, path)
    return out


# The exact majority vote counts subsets in float64: C(n, N) stays finite up to
# n = 1,000 samples per query (C(1000, 500) ~ 2.7e299; C(1030, 515) overflows).
MAX_VOTE_SAMPLES = 1000


def _check_vote_sizes(out: pd.DataFrame, path: str) -> None:
    """Tables with answers (majority vote) hold at most MAX_VOTE_SAMPLES samples per
    (model, config, query_id); a larger group is an error at its first row."""
    sizes = out.groupby(["model", "config", "query_id"], sort=False)["trial"].transform("size")
    big = (sizes > MAX_VOTE_SAMPLES).to_numpy()
    if big.any():
        row = _bad_row(big)
        raise InputError(f"{int(sizes.iloc[row - 1])} samples for one (model, config, query_id); "
                         f"the exact majority vote takes at most {MAX_VOTE_SAMPLES} (drop the "
                         "answer column to skip majority vote)", path=path, row=row, field="answer")


def _config_labels(out: pd.DataFrame, path: str) -> pd.Series:
    """AttentionConfig label per row, validated once per distinct config."""
    text = {c: out[c].astype("string").fillna("") for c in ("budget", "block_size", "local")}
    key = out["method"] + "|" + text["budget"] + "|" + text["block_size"] + "|" + text["local"]
    codes, uniques = pd.factorize(key)
    first_rows = pd.Series(np.arange(len(codes))).groupby(codes).first().to_numpy()
    labels = []
    for index in first_rows:  # one iteration per distinct config, not per row
        method = out["method"].iat[index]
        budget, block, win = (out[c].iat[index] for c in ("budget", "block_size", "local"))
        budget, block, win = (None if pd.isna(v) else int(v) for v in (budget, block, win))
        field = "local"
        try:
            if method == "topk":
                field = "block_size" if block is not None else ("local" if win else "budget")
                if block is not None or win:
                    raise InputError("top-k takes no block_size or local window (use blocktopk)")
                win = None
            if method == "dense":
                win = None if win == 0 else win  # a 0 window is no window
                field = "budget" if budget is not None else ("block_size" if block is not None
                                                             else "local")
            if method == "blocktopk":
                field = "budget" if budget is None else ("block_size" if block is None else "budget")
            config = AttentionConfig(method, budget=budget, block_size=block, local=win or 0)
            if method == "dense" and win is not None:
                raise InputError("dense attention takes no local window")
        except InputError as exc:
            raise exc.at(path=path, row=int(index) + 1, field=field) from None
        labels.append(config.label)
    return pd.Series(np.asarray(labels, dtype=object)[codes], index=out.index, dtype=object)


def attention_of(row: Mapping[str, object]) -> AttentionConfig:
    """The AttentionConfig of a validated row (or any mapping with the four fields)."""
    method = str(row["method"])
    if method == "dense":
        return AttentionConfig.dense()
    budget = int(row["budget"])  # type: ignore[arg-type]
    if method == "topk":
        return AttentionConfig.topk(budget)
    local = row.get("local")
    return AttentionConfig("blocktopk", budget=budget, block_size=int(row["block_size"]),  # type: ignore[arg-type]
                           local=0 if local is None or pd.isna(local) else int(local))  # type: ignore[arg-type]


def resolve_models(trials: pd.DataFrame, model_configs: Mapping[str, str | Path] | None = None,
                   path: str = "<trials>", param_count: str = "published") -> dict[str, ModelSpec]:
    """ModelSpec for every model in the table: a preset, or ``model_configs[name]``,
    priced with ``param_count`` parameters (see :func:`kinetics.models.with_param_count`).

    Names match as :func:`kinetics.models.model_key` spells them. An unknown model with
    no config raises InputError naming the first row using it; so does a config for a
    model the table does not have (a typo would otherwise be ignored).
    """
    model_configs = {model_key(name): p for name, p in (model_configs or {}).items()}
    unused = sorted(set(model_configs) - set(pd.unique(trials["model"])))
    if unused:
        have = ", ".join(sorted(pd.unique(trials["model"])))
        raise InputError(f"--model-config {unused[0]}: the trial table has no model "
                         f"'{unused[0]}' (it has {have})", path=path)
    specs: dict[str, ModelSpec] = {}
    embedded = table_model_configs(path)
    for name in pd.unique(trials["model"]):
        config = model_configs.get(model_key(name))
        try:
            if config is None and preset_key(name) is None and name in embedded:
                specs[name] = model_from_config(embedded[name], model_key(name))
                continue
            specs[name] = get_model(name, config, config_flag=True)
        except InputError as exc:
            if config is not None:
                raise
            row = _bad_row((trials["model"] == name).to_numpy())
            raise exc.at(path=path, row=row, field="model") from None
    return {name: with_param_count(spec, param_count) for name, spec in specs.items()}


def table_model_configs(path: str | Path) -> dict[str, dict]:
    """The HF model configs a Parquet trial table carries in its metadata (key
    :data:`MODEL_CONFIGS_META_KEY`, written by ``kinetics generate``), by table model
    name; empty for any other file. A malformed entry is an InputError."""
    import json

    path = Path(path)
    if path.suffix.lower() != ".parquet" or not path.is_file():
        return {}
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:  # noqa: BLE001 - _read_table already reported an unreadable file
        return {}
    raw = meta.get(MODEL_CONFIGS_META_KEY)
    if raw is None:
        return {}
    try:
        configs = json.loads(raw)
    except ValueError:
        configs = None
    if not isinstance(configs, dict) or not all(isinstance(v, dict) for v in configs.values()):
        raise InputError("metadata 'kinetics.model_configs' is not a JSON object of configs",
                         path=str(path))
    return configs


def check_same_queries(trials: pd.DataFrame, path: str = "<trials>") -> None:
    """Every (model, config) of a validated table must have samples for the same
    queries (the analysis compares pairs query by query); InputError naming the first
    row of a pair that lacks a query some other pair has, and that query."""
    pairs = trials.groupby(["model", "config"], sort=False)["query_id"]
    every = set(trials["query_id"])
    for (model, config), queries in pairs:
        missing = every - set(queries)
        if missing:
            row = int(queries.index[0]) + 1
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InputError(f"{model} ({config}) has no sample of query {min(missing)!r}{more}, "
                             "which other (model, config) pairs have; every pair needs samples "
                             "of the same queries", path=path, row=row, field="query_id")


def load_trials(path: str | Path | None) -> tuple[pd.DataFrame, bool]:
    """Load and validate a trial table for the analysis; ``None`` loads the embedded
    synthetic default.

    Beyond :func:`validate_trials`, every (model, config) must cover the same queries
    (:func:`check_same_queries`). Returns (validated trials, synthetic). ``synthetic``
    is True for the embedded set and for any Parquet file the synthetic generator
    wrote (its metadata says so).
    """
    if path is None:
        frame, _ = _read_table(embedded_path())
        trials, source, synthetic = validate_trials(frame, EMBEDDED_SOURCE), EMBEDDED_SOURCE, True
    else:
        frame, synthetic = _read_table(Path(path))
        trials, source = validate_trials(frame, str(path)), str(path)
    check_same_queries(trials, source)
    return trials, synthetic
