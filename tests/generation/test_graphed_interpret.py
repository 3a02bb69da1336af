"""The engine's GPU decode step (:mod:`kinetics.generation.graphed`) on the CPU under
``TRITON_INTERPRET=1`` (the step runs eagerly: no CUDA graph) against the torch
reference runner, dense and block top-k, on one script of admissions and releases:
slots with gaps, a prompt shared by two slots, page boundaries crossed, a slot prefilled
while the others decode (it must stay untouched), a released slot reused, and bucket
changes (4, 5 = all slots, 2). Logits within float32 rounding at every decode step, and
at the end the same K/V in every page a slot owns and (block top-k) the same page means;
the graphed runner is fed the reference runner's greedy tokens, so both stay in
lockstep."""

from __future__ import annotations

import importlib.util

import pytest

from tests.interpreted import run_interpreted

pytest.importorskip("torch")
pytest.importorskip("transformers")
if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

SCRIPT = """
import json
import torch, transformers
from kinetics.cost import AttentionConfig
from kinetics.generation.attention import decode_attention
from kinetics.generation.runner import ModelRunner
from kinetics.model.checkpoint import checkpoint_of_model
from kinetics.model.decoder import ShardedDecoderModel

torch.manual_seed(0)
config = transformers.Qwen3Config(vocab_size=97, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, head_dim=16)
hf = transformers.Qwen3ForCausalLM(config).float().eval()
model = ShardedDecoderModel(None, dtype=torch.float32, checkpoint=checkpoint_of_model(hf, "t"))
gen = torch.Generator().manual_seed(1)
prompt = {n: tuple(torch.randint(0, 97, (n,), generator=gen).tolist()) for n in (20, 35, 5)}
SLOTS, PAGES = 5, 8  # each slot owns PAGES pages of 16 tokens
out = {}
for name, attn in (("dense", AttentionConfig.dense()),
                   ("blocktopk", AttentionConfig.blocktopk(16, topk_blocks=2, local=16))):
    decode = decode_attention(attn)
    ref, fast = (ModelRunner(model, decode, SLOTS, PAGES * 16, SLOTS * PAGES, graphed=g)
                 for g in (False, True))
    assert fast.graphed is not None and ref.graphed is None
    last, errs, buckets = {}, [], []

    def admit(slots, n):
        for r in (ref, fast):
            for s in slots:
                r.map_pages(s, [(i, s * PAGES + i) for i in range(PAGES)])
            logits = r.prefill(slots, prompt[n])
        for s in slots:
            last[s] = int(logits.argmax())

    def step(slots, times=1):
        for _ in range(times):
            want = ref.decode(slots, [last[s] for s in slots])
            got = fast.decode(slots, [last[s] for s in slots])
            errs.append(float((got - want).abs().max() / want.abs().max()))
            buckets.append(fast.graphed.bucket(slots))
            for s, row in zip(slots, want):
                last[s] = int(row.argmax())

    def release(slots):
        for r in (ref, fast):
            for s in slots:
                r.release(s)

    admit([0], 20); admit([2, 3], 35)
    step([0, 2, 3], 14)               # 20 -> 34 and 35 -> 49 tokens: page boundaries
    admit([1], 35); step([0, 2, 3])   # slot 1 prefilled, not decoded: must stay intact
    release([0]); step([1, 2, 3], 4)
    admit([0], 5); admit([4], 20); step([0, 1, 2, 3, 4], 3)
    release([2, 3, 4]); step([0, 1], 3)
    same_lens = bool((ref.seq_lens == fast.seq_lens).all())
    owned = SLOTS * PAGES  # every page but the spare one
    store_err = max(float((getattr(a, f)[:owned] - getattr(b, f)[:owned]).abs().max())
                    for a, b in zip(ref.caches, fast.caches) for f in ("k_pages", "v_pages"))
    means_err = max(float((a.key_means - b.key_means).abs().max())
                    for a, b in zip(ref.caches, fast.caches))
    out[name] = dict(max_err=max(errs), buckets=sorted(set(buckets)), same_lens=same_lens,
                     store_err=store_err, means_err=means_err)
print(json.dumps(out))
"""


def test_graphed_step_matches_reference_runner_interpreted():
    results = run_interpreted(SCRIPT, timeout=900)
    for name in ("dense", "blocktopk"):
        r = results[name]
        assert r["max_err"] < 1e-4, (name, r)
        # the same K/V in every owned page (inactive rows untouched)
        assert r["store_err"] < 1e-5, (name, r)
        assert r["buckets"] == [2, 4, 5] and r["same_lens"], (name, r)
    # block top-k's page means too (dense decode neither reads nor keeps them)
    assert results["blocktopk"]["means_err"] < 1e-5, results["blocktopk"]
