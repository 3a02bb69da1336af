"""Tiny random Llama- and Qwen3-shaped models with a small byte-level BPE tokenizer.

Built once per session, offline, in a few seconds: the Llama one is saved to a folder
(``--model FOLDER`` works through the CLI) and loaded back with
:func:`kinetics.quality.load.load_model`, as the command loads any model. Weights are
drawn with a fixed torch seed and a wide initializer, so the logits are peaked (arg-max
ties between two attention implementations' rounding would need a gap under 1e-5).
"""

from __future__ import annotations

from pathlib import Path

import pytest

VOCAB = 300
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")
SHAPE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
             initializer_range=0.2)


def training_text() -> list[str]:
    """What the tokenizer's merges are learnt from: the shipped problems and answers."""
    from kinetics.generation.problems import arithmetic_problems

    problems = arithmetic_problems(24)
    return [p.question for p in problems] + [
        f"So the answer is \\boxed{{{p.answer}}}." for p in problems]


def build_tokenizer():
    """A byte-level BPE (any text encodes; decoding inverts encoding) with EOS and a
    ChatML-like template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    raw.train_from_iterator(training_text(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=SPECIALS[0],
                                        pad_token=SPECIALS[0], eos_token=SPECIALS[2])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _ids(tokenizer) -> dict:
    return dict(eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                pad_token_id=tokenizer.pad_token_id)


@pytest.fixture(scope="session")
def one_thread():
    """Torch on one thread for the session: on a shared, loaded CPU two threads
    spin-wait on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved random Llama (2 layers, 4 query / 2 KV heads of 16) and its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE, **_ids(tiny_tokenizer))).to(torch.float32)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir, one_thread):
    """The saved Llama, loaded back as ``kinetics generate --model FOLDER`` loads it."""
    from kinetics.quality.load import load_model

    return load_model(str(tiny_llama_dir), progress=False)


@pytest.fixture(scope="session")
def tiny_qwen3(tiny_tokenizer, one_thread):
    """A random Qwen3 (q/k RMS norms before RoPE), same shape and tokenizer."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from kinetics.quality.load import LoadedModel

    torch.manual_seed(1)
    model = Qwen3ForCausalLM(Qwen3Config(**SHAPE, head_dim=16, **_ids(tiny_tokenizer)))
    return LoadedModel(model.to(torch.float32).eval(), tiny_tokenizer, "tiny-qwen3")


def _saved(tmp_path_factory, tokenizer, name, model):
    folder = tmp_path_factory.mktemp(name)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory, tiny_tokenizer, tiny_qwen3) -> Path:
    """The random Qwen3 saved as safetensors (the paged engine reads it lazily)."""
    return _saved(tmp_path_factory, tiny_tokenizer, "tiny-qwen3", tiny_qwen3.model)


@pytest.fixture(scope="session")
def tiny_llama_bias_dir(tmp_path_factory, tiny_tokenizer, one_thread) -> Path:
    """A random Llama with attention and MLP biases, tied embeddings, its own RoPE base
    and RMSNorm epsilon, saved."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    config = LlamaConfig(**SHAPE, attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
                         rope_theta=31_250.0, rms_norm_eps=1e-5, **_ids(tiny_tokenizer))
    model = LlamaForCausalLM(config).to(torch.float32)
    with torch.no_grad():  # biases start at zero: make them count
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.2)
    return _saved(tmp_path_factory, tiny_tokenizer, "tiny-llama-bias", model)
