"""The token sequence a quality sweep runs on: a text file, or a model's greedy continuation.

Positions ``decode_start..`` are the decode positions (sparse attention applies there);
a prompt before them is prefilled densely, as a serving engine does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from kinetics.errors import InputError

if TYPE_CHECKING:
    import torch

    from kinetics.quality.load import LoadedModel


def default_prompt() -> str:
    """The math word problem shipped with the package (kinetics/data/quality_prompt.txt)."""
    return resources.files("kinetics").joinpath("data/quality_prompt.txt").read_text().strip()


@dataclass
class TokenSequence:
    """Token ids ``[1, T]`` (int64), the first decode position, and where they came from."""

    ids: torch.Tensor
    decode_start: int
    source: str

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])


def text_sequence(tokenizer: Any, text: str, source: str, tokens: int | None,
                  min_tokens: int) -> TokenSequence:
    """The first ``tokens`` tokens (all if ``None``) of ``text``, every position a decode
    position; InputError naming ``source`` if it holds fewer than ``min_tokens``."""
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :tokens]
    if ids.shape[1] < min_tokens:
        raise InputError(f"the text holds {ids.shape[1]} tokens, fewer than the largest budget "
                         f"({min_tokens} tokens)", path=source)
    return TokenSequence(ids, 0, source)


class _Ticker:
    """A logits processor that only reports progress (one call per generated token)."""

    def __init__(self, tick: Callable[[], None]) -> None:
        self.tick = tick

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.tick()
        return scores


def prompt_ids(tokenizer: Any, prompt: str) -> torch.Tensor:
    """``[1, P]`` ids of ``prompt`` as a user turn (chat template, where the tokenizer has one)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True)
        return tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    return tokenizer(prompt, return_tensors="pt").input_ids


def greedy_sequence(lm: LoadedModel, prompt: str, tokens: int, min_tokens: int,
                    tick: Callable[[], None] | None = None) -> TokenSequence:
    """``tokens`` tokens in all: the prompt, then the model's greedy continuation with
    end-of-sequence suppressed (so the reasoning runs on past the model's usual stop)."""
    import torch
    from transformers import LogitsProcessorList

    if tokens < min_tokens:
        raise InputError(f"--tokens {tokens} is below the largest budget ({min_tokens} tokens)")
    ids = prompt_ids(lm.tokenizer, prompt)
    new = tokens - ids.shape[1]
    if new < 2:
        raise InputError(f"the prompt takes {ids.shape[1]} tokens, leaving fewer than 2 of "
                         f"--tokens {tokens} to generate")
    processors = LogitsProcessorList([_Ticker(tick)] if tick else [])
    with torch.no_grad():
        out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=new, min_new_tokens=new,
                                logits_processor=processors,
                                pad_token_id=lm.tokenizer.eos_token_id)
    return TokenSequence(out[:, :tokens], int(ids.shape[1]), "greedy continuation of the prompt")
