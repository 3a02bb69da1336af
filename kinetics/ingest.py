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
* ``correct``: ``score > 0`` when a score is present, else the normalized boxed
  answer equals a normalized gold choice;
* ``query_id``: a hash of the query text (stable across files and models);
  ``trial``: the sample's index among the file's rows for that query.

The transforms (:func:`config_from_metadata`, :func:`last_boxed`,
:func:`trial_rows`, ...) are pure; :func:`raw_files` and :func:`read_raw_file`
are the I/O edge (HF ``datasets`` for JSONL, ``huggingface_hub`` for hub ids).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kinetics.cost import AttentionConfig
from kinetics.errors import InputError

_MODEL_RE = re.compile(r"qwen3[-_](\d+(?:\.\d+)?b(?:[-_]a\d+b)?)", re.IGNORECASE)
_BLOCK_RE = re.compile(r"local(\d+)_block(\d+)_blocktopk(\d+)", re.IGNORECASE)
_TOPK_RE = re.compile(r"local(\d+)_topk(\d+)", re.IGNORECASE)
_METADATA_MODEL_KEYS = ("model", "model_name", "model_path", "model_name_or_path", "model_id")
_BOXED = "\\boxed"


def model_from_name(text: str) -> str | None:
    """'qwen3-8b' from a file name or model path such as 'Qwen/Qwen3-8B'; None if absent."""
    match = _MODEL_RE.search(text)
    return None if match is None else f"qwen3-{match.group(1).lower().replace('_', '-')}"


def _opt_int(meta: dict, key: str) -> int | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise InputError(f"expected an integer or null, got {value!r}", field=key)
    return int(value)


def config_from_metadata(meta: dict) -> AttentionConfig | None:
    """AttentionConfig from the metadata line; None when it names no attention keys.

    Top-k with a local window W > 0 attends W + k tokens: it is priced as top-k with
    budget W + k (the cost model's top-k has no separate window).
    """
    keys = ("attn_local", "attn_topk", "attn_block_size", "attn_block_topk")
    if not any(k in meta for k in keys):
        return None
    local = _opt_int(meta, "attn_local") or 0
    topk = _opt_int(meta, "attn_topk")
    block = _opt_int(meta, "attn_block_size")
    blocks = _opt_int(meta, "attn_block_topk")
    if block is not None and blocks is not None:
        return AttentionConfig.blocktopk(block, topk_blocks=blocks, local=local)
    if topk is not None:
        return AttentionConfig.topk(topk + local)
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


def last_boxed(text: str) -> tuple[str, int] | None:
    """(content, end) of the last ``\\boxed{...}`` in ``text``; ``end`` is the index
    just past its closing brace. Nested braces are matched; None when there is no
    complete box."""
    start = text.rfind(_BOXED)
    while start >= 0:
        i = start + len(_BOXED)
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1:j], j + 1
        start = text.rfind(_BOXED, 0, start)
    return None


def normalize_answer(answer: str) -> str:
    """AIME-style normalization: strip TeX wrappers, spaces, '$', commas in numbers;
    integers lose leading zeros ('033' -> '33'), '5.0' -> '5'."""
    s = str(answer).strip()
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right|displaystyle|,|;|!|\s)", "", s)
    s = s.replace("$", "").replace(" ", "").replace("^\\circ", "").replace("^{\\circ}", "")
    s = s.rstrip(".")
    if re.fullmatch(r"[+-]?[\d,]+(\.\d*)?", s):
        try:
            value = float(s.replace(",", ""))
        except ValueError:
            return s
        return str(int(value)) if value == int(value) else repr(value)
    return s


def grade(answer: str | None, choices: Iterable[Any]) -> bool:
    """True when the normalized answer equals a normalized gold choice."""
    if answer is None:
        return False
    norm = normalize_answer(answer)
    return any(norm == normalize_answer(str(c)) for c in choices)


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


def trial_rows(meta: dict, rows: pd.DataFrame, tokenizer: Any, *, model: str,
               config: AttentionConfig, source: str = "<raw>") -> pd.DataFrame:
    """Canonical trial rows of one raw file (``rows``: its data lines as a DataFrame)."""
    for column in ("query", "prediction"):
        if column not in rows.columns:
            raise InputError("missing field in the trace rows", path=source, field=column)
    texts: list[str] = []
    for i, pred in enumerate(rows["prediction"].tolist()):
        if isinstance(pred, (list, tuple, np.ndarray)):
            pred = pred[0] if len(pred) else ""
        if not isinstance(pred, str):
            raise InputError(f"expected the generated text (a list of one string), got {pred!r}"
                             [:200], path=source, row=i + 1, field="prediction")
        texts.append(pred)
    queries = rows["query"].astype(str).tolist()
    boxed = [last_boxed(t) for t in texts]
    answers = [None if b is None else normalize_answer(b[0]) for b in boxed]
    gen, pos = _generation_tokens(tokenizer, texts, [None if b is None else b[1] for b in boxed])
    prompt = _prompt_lengths(tokenizer, queries)
    if "score" in rows.columns and rows["score"].notna().all():
        correct = (pd.to_numeric(rows["score"], errors="coerce").fillna(0).to_numpy() > 0)
    else:
        choices = rows["choices"] if "choices" in rows.columns else pd.Series([[]] * len(rows))
        correct = np.array([grade(a, c if c is not None else []) for a, c in
                            zip(answers, choices, strict=True)])
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
        "correct": correct.astype(np.int64),
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
        raise InputError(str(exc), path=str(path), field=exc.field) from None
    if config is None:
        raise InputError("cannot tell the attention config from the metadata or file name",
                         path=str(path))
    return model, config


# --- I/O edge ----------------------------------------------------------------------------

def raw_files(source: str, include: str = "**/*.jsonl") -> list[Path]:
    """JSONL files under a local folder (or the file itself), else a HF hub dataset
    id downloaded with ``huggingface_hub.snapshot_download`` (needs network)."""
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.exists():
        if source.count("/") != 1 or source.startswith((".", "/")):
            raise InputError("no such file or folder", path=source)
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(repo_id=source, repo_type="dataset",
                                          allow_patterns=[include.replace("**/", "*")]))
        except Exception as exc:  # offline, unknown repo, auth: one message
            raise InputError("not a local path, and fetching it as a HF hub dataset failed: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                             path=source) from None
    files = sorted(p for p in path.glob(include) if p.is_file())
    if not files:
        raise InputError(f"no files matching {include}", path=str(path))
    return files


def read_raw_file(path: Path) -> tuple[dict, pd.DataFrame]:
    """(metadata dict, data rows) of one raw JSONL file, rows loaded with HF datasets."""
    with path.open(encoding="utf-8") as handle:
        first = handle.readline()
    if not first.strip():
        raise InputError("empty file", path=str(path))
    try:
        head = json.loads(first)
    except json.JSONDecodeError as exc:
        raise InputError(f"line 1 is not JSON ({exc.msg})", path=str(path)) from None
    if not isinstance(head, dict):
        raise InputError("line 1 is not a JSON object", path=str(path))
    meta = {} if "prediction" in head else head
    try:
        import tempfile

        import datasets

        datasets.disable_progress_bars()
        with tempfile.TemporaryDirectory() as cache:
            frame = datasets.load_dataset("json", data_files=str(path), split="train",
                                          cache_dir=cache, keep_in_memory=True).to_pandas()
    except Exception:  # a schema datasets cannot unify: read it line by line instead
        try:
            frame = pd.read_json(path, lines=True, dtype=False)
        except ValueError as exc:
            raise InputError(f"not JSON lines ({str(exc).splitlines()[0]})", path=str(path)) from None
    if "prediction" not in frame.columns:
        raise InputError("no trace rows (no 'prediction' field)", path=str(path), field="prediction")
    frame = frame[frame["prediction"].notna()].reset_index(drop=True)
    if frame.empty:
        raise InputError("no trace rows after the metadata line", path=str(path))
    return meta, frame
