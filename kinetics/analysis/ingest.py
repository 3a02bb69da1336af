"""Published raw traces (InfiniAILab/Kinetics-generations) -> a canonical trial table.

Raw format: one JSONL file per (task, model, attention config), e.g.
``aime24/topk/..._qwen3-8b_..._local0_topk1024.jsonl``. The first line is a
metadata dict (``attn_local``, ``attn_topk``, ``attn_block_size``,
``attn_block_topk``; null for dense); then one row per sampled answer with
``query``, ``choices`` (gold answers), ``prediction`` (a list holding the
generated text) and ``score`` (0.0 or 100.0).

Per row this module derives (lengths in tokens of the model's tokenizer):

* ``prompt_len``: tokens of the query, through the chat template when the
  tokenizer has one (user turn plus generation prompt), else plain;
* ``gen_len``: tokens of the generated text;
* ``answer``: the last ``\\boxed{...}`` value, normalized (AIME-style);
* ``answer_pos``: generated tokens up to and including the one holding that
  box's closing brace (empty when there is no box);
* ``correct``: ``score > 0`` when the row has a score, else the row's boxed answer
  matches one of its gold choices (``kinetics.analysis.answers.answers_match``:
  normalized equality, else math-verify equivalence);
* ``query_id``: a hash of the query text (stable across files and models);
  ``trial``: the sample's index among the file's rows for that query.

Every data row needs ``query`` and ``prediction``, and a ``score`` or gold
``choices``: grading is decided per row (the score when the row has one, else its
answer against its own choices). A row without them, or a line that is not JSON,
is an error naming the file, line and field; no row is dropped silently.

The transforms (:func:`config_from_metadata`, :func:`trial_rows`, ...) are pure
(answer extraction and grading: :mod:`kinetics.analysis.answers`); :func:`raw_files`
and :func:`read_raw_file` are the I/O edge (stdlib ``json`` line by line,
``huggingface_hub`` for hub ids).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kinetics.analysis.answers import answers_match, last_boxed, normalize_answer
from kinetics.cost import AttentionConfig
from kinetics.errors import InputError, install_hint
from kinetics.jsonfile import json_lines

_MODEL_RE = re.compile(r"qwen3[-_](\d+(?:\.\d+)?b(?:[-_]a\d+b)?)", re.IGNORECASE)
_BLOCK_RE = re.compile(r"local(\d+)_block(\d+)_blocktopk(\d+)", re.IGNORECASE)
_TOPK_RE = re.compile(r"local(\d+)_topk(\d+)", re.IGNORECASE)
_METADATA_MODEL_KEYS = ("model", "model_name", "model_path", "model_name_or_path", "model_id")


def model_from_name(text: str) -> str | None:
    """'qwen3-8b' from a file name or model path such as 'Qwen/Qwen3-8B'; None if absent."""
    match = _MODEL_RE.search(text)
    return None if match is None else f"qwen3-{match.group(1).lower().replace('_', '-')}"


def _opt_int(meta: dict, key: str, minimum: int) -> int | None:
    """An integer metadata field (null: None); InputError naming the field otherwise or
    below ``minimum``."""
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value != int(value):
        raise InputError(f"expected an integer or null, got {value!r}"[:200], field=key)
    if value < minimum:
        raise InputError(f"expected an integer >= {minimum} (tokens) or null, got {value!r}",
                         field=key)
    return int(value)


def config_from_metadata(meta: dict) -> AttentionConfig | None:
    """AttentionConfig from the metadata line; None when it names no attention keys.

    Top-k with a local window W > 0 attends W + k tokens: it is priced as top-k with
    budget W + k (the cost model's top-k has no separate window).
    """
    keys = ("attn_local", "attn_topk", "attn_block_size", "attn_block_topk")
    if not any(k in meta for k in keys):
        return None
    local = _opt_int(meta, "attn_local", 0) or 0
    topk = _opt_int(meta, "attn_topk", 1)
    block = _opt_int(meta, "attn_block_size", 1)
    blocks = _opt_int(meta, "attn_block_topk", 1)
    try:
        if block is not None and blocks is not None:
            return AttentionConfig.blocktopk(block, topk_blocks=blocks, local=local)
        if topk is not None:
            return AttentionConfig.topk(topk + local)
    except InputError as exc:  # e.g. over the 2**31-token cap
        raise exc.at(field="attn_block_size" if block is not None else "attn_topk") from None
    return AttentionConfig.dense()


def config_from_filename(name: str) -> AttentionConfig | None:
    """AttentionConfig from '..._local0_block16_blocktopk64', '..._local0_topk1024', '_dense'."""
    match = _BLOCK_RE.search(name)
    if match:
        local, block, blocks = (int(g) for g in match.groups())
        return AttentionConfig.blocktopk(block, topk_blocks=blocks, local=local)
    match = _TOPK_RE.search(name)
    if match:
        local, topk = (int(g) for g in match.groups())
        return AttentionConfig.topk(topk + local)
    if re.search(r"(^|[_/-])dense", name, re.IGNORECASE):
        return AttentionConfig.dense()
    return None


def grade(answer: str | None, choices: Iterable[Any]) -> bool:
    """True when the answer matches a gold choice (:func:`answers_match`: normalized
    equality, else math-verify equivalence)."""
    return any(answers_match(answer, str(c)) for c in choices)


def query_id(query: str) -> str:
    """A stable id for a query text (12 hex digits of its SHA-1)."""
    return hashlib.sha1(query.encode("utf-8")).hexdigest()[:12]


def _prompt_lengths(tokenizer: Any, queries: Sequence[str]) -> dict[str, int]:
    """Prompt tokens per distinct query: the rendered chat template (user turn plus
    generation prompt, its special tokens included) when there is one, else plain."""
    unique = list(dict.fromkeys(queries))
    if getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}],
                                               add_generation_prompt=True, tokenize=False)
                 for q in unique]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(unique, add_special_tokens=True)["input_ids"]
    return {q: len(i) for q, i in zip(unique, ids, strict=True)}


def _generation_tokens(tokenizer: Any, texts: list[str], ends: list[int | None]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(gen_len, answer_pos) per text; answer_pos = tokens starting before ``end``, or -1."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        gen = np.array([len(ids) for ids in enc["input_ids"]], dtype=np.int64)
        pos = np.array([-1 if end is None else int(np.searchsorted(
            np.array([o[0] for o in offs] or [0], dtype=np.int64), end, "left"))
            for offs, end in zip(enc["offset_mapping"], ends, strict=True)], dtype=np.int64)
        return gen, np.minimum(pos, gen)
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    gen = np.array([len(ids) for ids in enc], dtype=np.int64)
    heads = [t[:e] for t, e in zip(texts, ends, strict=True) if e is not None]
    head_ids = tokenizer(heads, add_special_tokens=False)["input_ids"] if heads else []
    it = iter(head_ids)
    pos = np.array([-1 if e is None else len(next(it)) for e in ends], dtype=np.int64)
    return gen, np.minimum(pos, gen)


def _row_texts(rows: pd.DataFrame, source: str, lines: Sequence[int]
               ) -> tuple[list[str], list[str]]:
    """(query, generated text) per row; InputError names file, line and field of a
    row without them."""
    queries, texts = [], []
    for i, (query, pred) in enumerate(zip(_column(rows, "query"), _column(rows, "prediction"),
                                          strict=True)):
        if not isinstance(query, str) or not query.strip():
            raise InputError("missing" if query is None else f"expected the query text, got "
                             f"{query!r}"[:200], path=source, line=lines[i], field="query")
        if isinstance(pred, (list, tuple, np.ndarray)):
            if len(pred) != 1:  # one row is one sample: nothing dropped, nothing invented
                raise InputError("an empty list (no generated text)" if not len(pred) else
                                 f"{len(pred)} generated texts in one row; a row holds one "
                                 "sample (a list of one string): write one row per sample",
                                 path=source, line=lines[i], field="prediction")
            pred = pred[0]
        if not isinstance(pred, str):
            raise InputError("missing" if pred is None else "expected the generated text (a list "
                             f"of one string), got {pred!r}"[:200], path=source, line=lines[i],
                             field="prediction")
        queries.append(query)
        texts.append(pred)
    return queries, texts


def _column(rows: pd.DataFrame, name: str) -> list[Any]:
    """Values of a column, None where absent or NaN (a JSON row without the key)."""
    if name not in rows.columns:
        return [None] * len(rows)
    return [None if _is_missing(v) else v for v in rows[name].tolist()]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def grade_rows(rows: pd.DataFrame, answers: Sequence[str | None], source: str,
               lines: Sequence[int]) -> np.ndarray:
    """``correct`` (0/1) per row, decided row by row: ``score > 0`` when the row has a
    score, else the answer against its gold ``choices`` (:func:`grade`). A row with
    neither (or a score that is not a number) raises InputError."""
    correct = np.zeros(len(rows), dtype=np.int64)
    for i, (score, choices) in enumerate(zip(_column(rows, "score"), _column(rows, "choices"),
                                             strict=True)):
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, (int, float)) \
                    or not np.isfinite(score):
                raise InputError(f"expected a number, got {score!r}"[:200], path=source,
                                 line=lines[i], field="score")
            correct[i] = score > 0
        elif choices is not None:
            gold = [choices] if isinstance(choices, (str, int, float)) else list(choices)
            correct[i] = grade(answers[i], gold)
        else:
            raise InputError("no score and no gold choices to grade the answer against",
                             path=source, line=lines[i], field="score")
    return correct


def trial_rows(meta: dict, rows: pd.DataFrame, tokenizer: Any, *, model: str,
               config: AttentionConfig, source: str = "<raw>") -> pd.DataFrame:
    """Canonical trial rows of one raw file (``rows``: its data lines as a DataFrame;
    an optional ``line`` column gives each row's line in the file for messages)."""
    lines = (rows["line"].tolist() if "line" in rows.columns
             else list(range(1, len(rows) + 1)))
    queries, texts = _row_texts(rows, source, lines)
    boxed = [last_boxed(t) for t in texts]
    answers = [None if b is None else normalize_answer(b[0]) for b in boxed]
    correct = grade_rows(rows, [None if b is None else b[0] for b in boxed], source, lines)
    gen, pos = _generation_tokens(tokenizer, texts, [None if b is None else b[1] for b in boxed])
    prompt = _prompt_lengths(tokenizer, queries)
    qid = [query_id(q) for q in queries]
    n = len(rows)
    return pd.DataFrame({
        "model": model, "method": config.method,
        "budget": pd.array([config.budget] * n, dtype="Int64"),
        "block_size": pd.array([config.block_size] * n, dtype="Int64"),
        "local": pd.array([config.local if config.method == "blocktopk" else None] * n,
                          dtype="Int64"),
        "query_id": qid,
        "trial": pd.Series(qid).groupby(qid, sort=False).cumcount().to_numpy(),
        "prompt_len": [prompt[q] for q in queries],
        "gen_len": gen,
        "correct": correct,
        "answer_pos": pd.Series(pos, dtype="Int64").where(pos >= 0, pd.NA).array,
        "answer": pd.array(answers, dtype="string"),
    })


def describe_file(path: Path, meta: dict, model_override: str | None = None
                  ) -> tuple[str, AttentionConfig]:
    """(model, config) of a raw file from its metadata, else its path."""
    model = model_override
    if model is None:
        for key in _METADATA_MODEL_KEYS:
            if isinstance(meta.get(key), str) and model_from_name(meta[key]):
                model = model_from_name(meta[key])
                break
    model = model or model_from_name(str(path))
    if model is None:
        raise InputError("cannot tell the model from the metadata or file name (pass --model)",
                         path=str(path))
    try:
        config = config_from_metadata(meta) or config_from_filename(path.name)
    except InputError as exc:
        raise exc.at(path=str(path)) from None
    if config is None:
        raise InputError("cannot tell the attention config from the metadata or file name",
                         path=str(path))
    return model, config


# --- I/O edge ----------------------------------------------------------------------------

def looks_like_path(text: str) -> bool:
    """True when ``text`` can only be a local path (not a hub id like 'Qwen/Qwen3-8B')."""
    return (text.startswith((".", "/", "~")) or text.count("/") > 1 or text.endswith("/")
            or "\\" in text or not text.strip())


def require_hub(source: str, what: str, timeout_s: float = 3.0) -> None:
    """Raise InputError within ``timeout_s`` seconds when the HF hub cannot be reached
    (offline mode, no DNS, no route), instead of the hub client's retries."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise InputError(f"no such local {what}, and HF_HUB_OFFLINE is set", path=source)
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(f"no such local {what}, and the HF hub ({host}) cannot be reached "
                         f"({exc.strerror or type(exc).__name__})", path=source) from None


def raw_files(source: str, include: str = "**/*.jsonl") -> list[Path]:
    """JSONL files under a local folder (or the file itself), else a HF hub dataset
    id downloaded with ``huggingface_hub.snapshot_download`` (needs network)."""
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.exists():
        if looks_like_path(source) or source.count("/") != 1:
            raise InputError("no such file or folder", path=source)
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise InputError("not a local path, and fetching a HF hub dataset needs "
                             f"huggingface_hub ({install_hint('ingest')})",
                             path=source) from None
        require_hub(source, "file or folder")
        try:
            path = Path(snapshot_download(repo_id=source, repo_type="dataset",
                                          allow_patterns=[include.replace("**/", "*")]))
        except Exception as exc:  # unknown repo, auth: one message
            raise InputError("not a local path, and fetching it as a HF hub dataset failed: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                             path=source) from None
    files = sorted(p for p in path.glob(include) if p.is_file())
    if not files:
        raise InputError(f"no files matching {include}", path=str(path))
    return files


def _is_metadata(record: dict) -> bool:
    """A first line without the trace fields is the file's metadata."""
    return not {"prediction", "query"} & set(record)


def read_metadata(path: Path) -> dict:
    """The metadata dict of a raw file (its first line; {} when that is a trace row or
    not JSON: :func:`read_raw_file` names the bad line)."""
    try:
        record = next((value for _, value in json_lines(path)), {})
    except InputError:
        return {}
    return record if isinstance(record, dict) and _is_metadata(record) else {}


def read_raw_file(path: Path) -> tuple[dict, pd.DataFrame]:
    """(metadata dict, data rows) of one raw JSONL file.

    Rows keep their 1-based line in the file in a ``line`` column; blank lines are
    skipped; a line that is not a JSON object (or not UTF-8) raises InputError naming it.
    """
    meta: dict | None = None
    records: list[dict] = []
    for number, record in json_lines(path):
        if not isinstance(record, dict):
            raise InputError("expected a JSON object", path=str(path), line=number)
        if meta is None and not records and _is_metadata(record):
            meta = record
            continue
        records.append({**record, "line": number})
    if not records:
        raise InputError("no trace rows (after the metadata line)" if meta else "empty file",
                         path=str(path))
    return meta or {}, pd.DataFrame.from_records(records)
