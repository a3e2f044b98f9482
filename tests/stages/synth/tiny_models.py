"""Tiny randomly initialised causal LMs saved to folders, with a byte-level BPE tokenizer trained here."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

TEXT = (
    "The river runs under the old stone bridge. Students read books in the quiet garden. "
    "A teacher walks slowly through the village market every morning. Green light falls on blue water. "
    "Question: where is the bridge? Answer: over the river. "
) * 20

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tokenizer(chat_template: str | None = None) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([TEXT], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                  pad_token="<|pad|>", unk_token="<|endoftext|>")
    if chat_template:
        tok.chat_template = chat_template
    return tok


def save_gpt2(folder: Path, chat_template: str | None = None) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tokenizer(chat_template)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_nemotron_h(folder: Path) -> Path:
    from factory.model.build import build_model
    from factory.model.presets import tiny

    tok = tokenizer()
    torch.manual_seed(0)
    model = build_model(tiny(), len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
