"""``kinetics ingest``: raw published traces -> a canonical trial table file."""

from __future__ import annotations

import argparse
from pathlib import Path

from kinetics.cli._args import (
    add_model_config,
    model_configs,
    progress,
    run_provenance,
    show_progress,
)
from kinetics.cli._output import (
    check_output_file,
    output_lock,
    refuse_output_over_inputs,
    staged_file,
)
from kinetics.errors import InputError, install_hint
from kinetics.quiet import third_party_output

TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Example: kinetics ingest ./Kinetics-generations/aime24 "
                     "--tokenizer Qwen/Qwen3-8B --out trials.parquet")
    parser.add_argument("source", metavar="RAW_DIR_OR_HF_ID",
                        help="folder (or file) of raw JSONL traces, or a HF hub dataset id")
    parser.add_argument("--tokenizer", required=True, metavar="PATH_OR_ID",
                        help="tokenizer folder or hub id (transformers AutoTokenizer)")
    parser.add_argument("--out", default="trials.parquet", metavar="PATH",
                        help="output trial table (.parquet, .csv or .jsonl); an existing file "
                        "is refused unless --force")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    parser.add_argument("--include", default="**/*.jsonl", metavar="GLOB",
                        help="which files under the folder to read")
    parser.add_argument("--model", metavar="NAME",
                        help="model name for every file (unset: from the metadata or the file "
                        "name); a preset, or a name given a --model-config")
    add_model_config(parser, "; pass the same to kinetics report")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (there is none anyway when stderr is not a terminal)")
    parser.add_argument("--verbose", action="store_true",
                        help="show the warnings of transformers and other libraries (hidden "
                        "otherwise)")


INSTALL_HINT = install_hint("ingest")


def _load_tokenizer(name: str):
    """A local tokenizer folder, else a hub id (from the local cache first, and fetched
    only when the hub answers within seconds)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InputError(f"kinetics ingest needs transformers ({INSTALL_HINT})") from None
    from kinetics.analysis.ingest import looks_like_path, require_hub

    path = Path(name).expanduser()
    local = path.exists()
    if local and not path.is_dir():
        raise InputError("expected a tokenizer folder, got a file", path=name)
    if not local and looks_like_path(name):
        raise InputError("no such tokenizer folder", path=name)
    try:
        if local:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        else:
            try:
                tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)  # cache
            except Exception:  # not cached: fetch it when the hub answers
                require_hub(name, "tokenizer folder")
                tokenizer = AutoTokenizer.from_pretrained(name)
    except InputError:
        raise
    except Exception as exc:  # bad files, unknown repo, auth
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load the tokenizer: {first}", path=name) from None
    if getattr(tokenizer, "chat_template", None):
        try:  # transformers renders chat templates with jinja2 but does not depend on it
            import jinja2  # noqa: F401
        except ImportError:
            raise InputError(f"the tokenizer's chat template needs jinja2 ({INSTALL_HINT})",
                             path=name) from None
    return tokenizer


def _check_model(model: str, model_configs: dict[str, str], path: Path) -> str:
    """The model's name in the table (a preset's key); InputError, as ``kinetics report``
    would give, for a name that is neither a preset nor given a --model-config."""
    from kinetics.models import get_model, model_key

    key = model_key(model)
    if key in model_configs:
        get_model(key, model_configs[key])  # a bad config fails now, not in report
        return key
    try:
        get_model(model, config_flag=True)
    except InputError as exc:  # the message report would give
        raise exc.at(path=str(path), field="model") from None
    return key


def _write_table(frame, out: Path, provenance: dict) -> None:
    """The trial table ``frame`` to ``out`` (.parquet, .csv or .jsonl), atomically; a
    Parquet file carries ``provenance`` in its metadata (key ``kinetics.provenance``)."""
    suffix = out.suffix.lower()
    with staged_file(out) as tmp:
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            from kinetics.cli._output import dumps_json
            from kinetics.provenance import PROVENANCE_META_KEY

            table = pa.Table.from_pandas(frame, preserve_index=False)
            meta = {**(table.schema.metadata or {}),
                    PROVENANCE_META_KEY: dumps_json(provenance).encode()}
            pq.write_table(table.replace_schema_metadata(meta), tmp)
        elif suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True)


def run(args: argparse.Namespace) -> int:
    from kinetics.analysis.ingest import raw_files

    if Path(args.out).suffix.lower() not in TABLE_SUFFIXES:
        raise InputError("output must end in .parquet, .csv or .jsonl", path=args.out)
    out = check_output_file(args.out, replace=args.force)
    configs = model_configs(args.model_config)
    files = raw_files(args.source, args.include)
    refuse_output_over_inputs(args.out, [args.source, *files, *configs.values(), args.tokenizer])
    with output_lock(out):  # one writer of --out for the whole run
        return _ingest(args, out, configs, files)


def _ingest(args: argparse.Namespace, out: Path, configs: dict[str, str], files: list[Path]
            ) -> int:
    import pandas as pd

    from kinetics.analysis.ingest import describe_file, read_metadata, read_raw_file, trial_rows
    from kinetics.analysis.trials import REQUIRED_COLUMNS, check_same_queries, validate_trials

    described = []
    for path in files:  # every file's model and config before the slow tokenizing
        model, config = describe_file(path, read_metadata(path), args.model)
        described.append((path, _check_model(model, configs, path), config))
    with third_party_output(progress=show_progress(args.quiet), verbose=args.verbose):
        tokenizer = _load_tokenizer(args.tokenizer)
    parts = []
    for path, model, config in progress(described, desc="kinetics ingest", unit="file",
                                        quiet=args.quiet):
        meta, rows = read_raw_file(path)
        parts.append(trial_rows(meta, rows, tokenizer, model=model, config=config,
                                source=str(path)))
    frame = pd.concat(parts, ignore_index=True)
    # number samples per (model, config, query) across files (a config may span several)
    key = ["model", "method", "budget", "block_size", "local", "query_id"]
    frame["trial"] = frame.groupby(key, dropna=False, sort=False).cumcount()
    columns = list(REQUIRED_COLUMNS) + ["answer"]
    validated = validate_trials(frame, str(out))  # duplicates, bad lengths: fail before writing
    _write_table(frame[columns], out, run_provenance(args))
    summary = frame.groupby(["model", "method"]).size()
    print(f"wrote {args.out}: {len(frame)} trials from {len(files)} file(s), "
          f"{frame['query_id'].nunique()} queries, accuracy {frame['correct'].mean():.3f}")
    for (model, method), count in summary.items():
        print(f"  {model:16} {method:10} {count} trials")
    try:
        check_same_queries(validated)
    except InputError as exc:  # the table is what the files hold; the analysis needs more
        print(f"note: kinetics report refuses this table: {exc.detail}")
    return 0
