"""``kinetics ingest``: raw published traces -> a canonical trial table file."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from kinetics.errors import InputError


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Example: kinetics ingest ./Kinetics-generations/aime24 "
                     "--tokenizer Qwen/Qwen3-8B --out trials.parquet")
    parser.add_argument("source", metavar="RAW_DIR_OR_HF_ID",
                        help="folder (or file) of raw JSONL traces, or a HF hub dataset id")
    parser.add_argument("--tokenizer", required=True, metavar="PATH_OR_ID",
                        help="tokenizer folder or hub id (transformers AutoTokenizer)")
    parser.add_argument("--out", default="trials.parquet", metavar="PATH",
                        help="output trial table (.parquet, .csv or .jsonl)")
    parser.add_argument("--include", default="**/*.jsonl", metavar="GLOB",
                        help="which files under the folder to read")
    parser.add_argument("--model", metavar="NAME",
                        help="model name for every file (unset: from the metadata or the file name)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


INSTALL_HINT = "pip install 'kinetics-tts[ingest]'"


def _load_tokenizer(name: str):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InputError(f"kinetics ingest needs transformers and datasets ({INSTALL_HINT})") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # missing folder, offline hub id, bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load the tokenizer: {first}", path=name) from None
    if getattr(tokenizer, "chat_template", None):
        try:  # transformers renders chat templates with jinja2 but does not depend on it
            import jinja2  # noqa: F401
        except ImportError:
            raise InputError(f"the tokenizer's chat template needs jinja2 ({INSTALL_HINT})",
                             path=name) from None
    return tokenizer


def _write_table(frame, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv", ".jsonl"):
        raise InputError("output must end in .parquet, .csv or .jsonl", path=str(out))
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.absolute().parent, prefix=f".{out.name}.", suffix=suffix)
    os.close(fd)
    try:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    from kinetics.ingest import describe_file, raw_files, read_raw_file, trial_rows
    from kinetics.traces import REQUIRED_COLUMNS, validate_trials

    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".csv", ".jsonl"):
        raise InputError("output must end in .parquet, .csv or .jsonl", path=str(out))
    files = raw_files(args.source, args.include)
    tokenizer = _load_tokenizer(args.tokenizer)
    parts = []
    for path in tqdm(files, file=sys.stderr, disable=args.quiet, desc="kinetics ingest",
                     unit="file", leave=False):
        meta, rows = read_raw_file(path)
        model, config = describe_file(path, meta, args.model)
        parts.append(trial_rows(meta, rows, tokenizer, model=model, config=config,
                                source=str(path)))
    frame = pd.concat(parts, ignore_index=True)
    # number samples per (model, config, query) across files (a config may span several)
    key = ["model", "method", "budget", "block_size", "local", "query_id"]
    frame["trial"] = frame.groupby(key, dropna=False, sort=False).cumcount()
    columns = list(REQUIRED_COLUMNS) + ["answer"]
    validate_trials(frame, str(out))  # duplicates across files, bad lengths: fail before writing
    _write_table(frame[columns], out)
    summary = frame.groupby(["model", "method"]).size()
    print(f"wrote {out}: {len(frame)} trials from {len(files)} file(s), "
          f"{frame['query_id'].nunique()} queries, accuracy {frame['correct'].mean():.3f}")
    for (model, method), count in summary.items():
        print(f"  {model:16} {method:10} {count} trials")
    return 0
