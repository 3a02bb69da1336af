"""The paged engine against the hf backend on the CPU, SmolLM2-135M (float32), in one
process, interleaved A/B/A/B: tokens/s of each and whether their greedy tokens agree.

    python benchmarks/explore/explore_paged_cpu.py [--problems 8] [--samples 4]
        [--new 96] [--batch 16] [--threads 2] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kinetics.cost import AttentionConfig
from kinetics.generation.backend import Request, SamplingParams, sample_seed
from kinetics.generation.hf import HFBackend
from kinetics.generation.paged import EngineOptions, PagedBackend
from kinetics.generation.problems import arithmetic_problems
from kinetics.generation.run import prompt_ids
from kinetics.model.checkpoint import checkpoint_of_model
from kinetics.model.decoder import ShardedDecoderModel
from kinetics.provenance import provenance
from kinetics.quality.load import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--new", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json-out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(progress=False)
    tok = loaded.tokenizer
    hf = HFBackend(loaded.model, tok, loaded.name, max_batch=args.batch)
    ckpt = checkpoint_of_model(loaded.model, loaded.name)
    shard = ShardedDecoderModel(None, dtype=torch.float32, checkpoint=ckpt)
    paged = PagedBackend(shard, tok, loaded.name, hf.eos_token_ids, {},
                         EngineOptions(max_batch=args.batch))
    reqs = []
    for p in arithmetic_problems(24)[:args.problems]:
        prompt = prompt_ids(tok, p.question)
        reqs += [Request((p.id, s), prompt, sample_seed(0, p.id, s)) for s in range(args.samples)]
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=args.new)
    rows, outputs = [], {}
    for config in (AttentionConfig.dense(), AttentionConfig.blocktopk(16, topk_blocks=4, local=16)):
        for r in range(args.rounds):
            for name, backend in (("hf", hf), ("paged", paged)):
                backend.stats.generated_tokens = 0
                start = time.perf_counter()
                out = {c.key: c.token_ids for c in backend.generate(reqs, params, config)}
                seconds = time.perf_counter() - start
                tokens = sum(len(t) for t in out.values())
                outputs[(name, config.method)] = out
                rows.append({"backend": name, "method": config.method, "round": r,
                             "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds})
                print(f"{config.method:<10} round {r} {name:<6} {tokens:>6} tokens "
                      f"{seconds:7.2f} s {tokens / seconds:7.1f} tok/s", flush=True)
    same = {m: outputs[("hf", m)] == outputs[("paged", m)] for m in ("dense", "blocktopk")}
    ratios = {}
    for m in ("dense", "blocktopk"):
        h = [x["tokens_per_s"] for x in rows if x["backend"] == "hf" and x["method"] == m]
        p = [x["tokens_per_s"] for x in rows if x["backend"] == "paged" and x["method"] == m]
        ratios[m] = sum(p) / len(p) / (sum(h) / len(h))
    print("greedy tokens identical:", same)
    print("paged / hf tokens/s:", {k: round(v, 3) for k, v in ratios.items()})
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "identical": same, "ratios": ratios,
                       "provenance": provenance().to_dict()}, f, indent=1)


if __name__ == "__main__":
    main()
