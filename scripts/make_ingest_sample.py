"""A tiny raw-trace folder and a local tokenizer with a chat template, for trying
`kinetics ingest` offline (used by `nox -s wheel` on the installed wheel).

    python scripts/make_ingest_sample.py OUT_DIR
    kinetics ingest OUT_DIR/raw --tokenizer OUT_DIR/tokenizer --out trials.parquet

The raw file has the published layout (a metadata line, then rows with ``query``,
``choices``, ``prediction``, ``score``); the tokenizer is word-level over the sample's
words, and its chat template (rendered with jinja2) wraps the query in a user turn.
Needs the ``ingest`` extra (transformers, tokenizers, jinja2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROWS = [  # (query, prediction, score, gold)
    ("What is 2 + 3 ?", "adding gives \\boxed{5} done", 100.0, "5"),
    ("What is 2 + 3 ?", "maybe \\boxed{6} then stop", 0.0, "5"),
    ("How many sides has a cube ?", "a cube has \\boxed{6} faces", 100.0, "6"),
    ("How many sides has a cube ?", "this goes on and never ends", 0.0, "6"),
]
CHAT_TEMPLATE = ("{% for m in messages %}user : {{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %} assistant :{% endif %}")


def write_sample(out: Path) -> None:
    """OUT/raw/aime24/aime24_qwen3-8b_t4_dense.jsonl and OUT/tokenizer/."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = out / "raw" / "aime24" / "aime24_qwen3-8b_t4_dense.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"model": "qwen3-8b", "attn_topk": None, "attn_local": None})]
    lines += [json.dumps({"query": q, "choices": [gold], "prediction": [text], "score": score})
              for q, text, score, gold in ROWS]
    raw.write_text("\n".join(lines) + "\n")

    split = pre_tokenizers.Whitespace()
    words = {piece for q, text, _, _ in ROWS for piece, _ in
             split.pre_tokenize_str(f"{q} {text} user : assistant :")}
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(sorted(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = split
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out / "tokenizer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write raw/ and tokenizer/ into")
    write_sample(parser.parse_args().out)


if __name__ == "__main__":
    main()
