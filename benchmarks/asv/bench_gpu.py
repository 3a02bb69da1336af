"""asv: GPU decode attention throughput, dense vs block top-k (Qwen3-8B shapes, tp 8).

Size: 16k context, batch 64, page size 16, 64 selected pages (budget 1024 tokens),
4 query heads over 1 KV head per GPU, d = 128, bf16. Skipped (NotImplementedError in
setup) where there is no CUDA GPU, triton or flashinfer. Run on a GPU machine with
`asv run --environment existing:python3 --set-commit-hash $(git rev-parse HEAD)`.
"""

SHAPE = dict(model="qwen3-8b", context=16384, batch_size=64, page_size=16, topk_pages=64,
             tp=8, attention_only=True)


class DecodeAttention:
    timeout = 600
    unit = "tokens/s"

    def setup_cache(self):
        try:
            from kinetics.bench.decode import gpu_available, measure_decode
        except ImportError as exc:  # torch missing
            return {"skip": str(exc)}
        ok, reason = gpu_available()
        if not ok:
            return {"skip": reason}
        return {m: measure_decode(method=m, **SHAPE) for m in ("dense", "blocktopk")}

    def setup(self, results):
        if "skip" in results:
            raise NotImplementedError(results["skip"])

    def track_dense_tokens_per_s(self, results):
        return results["dense"].tokens_per_s

    def track_blocktopk_tokens_per_s(self, results):
        return results["blocktopk"].tokens_per_s

    def track_blocktopk_speedup(self, results):
        return results["dense"].ms_per_step / results["blocktopk"].ms_per_step

    track_blocktopk_speedup.unit = "x"

    def track_dense_fraction_of_copy_bandwidth(self, results):
        return results["dense"].fraction_of_copy

    track_dense_fraction_of_copy_bandwidth.unit = "fraction"
