"""Write the model examples/base-model.yaml imports: a tiny Qwen3 (random weights) with a byte-level BPE tokenizer and
Qwen's ChatML chat template, saved as `save_pretrained` writes any Hugging Face model. It stands in for the model you
bring (Llama, Qwen, Mistral, Nemotron); nothing is downloaded.

    .venv/bin/python examples/base_model/make_model.py runs/base-model/source/tiny-qwen3
"""

from __future__ import annotations

import argparse
import html
import re
from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from factory.chat.template import CHAT_TOKENS
from factory.stages.tokenize.bpe import as_transformers, train_bpe
from factory.stages.tokenize.config import Config as TokenizerConfig

# Qwen's chat format (ChatML); like published templates it marks no assistant span: the factory finds it by rendering
QWEN_CHATML = ("{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endfor %}"
          "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}")


def texts(pages: Path) -> list[str]:
    """The smoke pages' visible text and some arithmetic chat turns: what the tokenizer learns its merges from."""
    out = [html.unescape(re.sub(r"<[^>]+>", " ", p.read_text(errors="replace"))) for p in sorted(pages.glob("*.html"))]
    out += [f"user\nWhat is {a} + {b}?\nassistant\nThe sum is {a + b}." for a in range(10) for b in range(10)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--pages", type=Path, default=Path("examples/data/smoke-html"))
    args = parser.parse_args()
    corpus = texts(args.pages)
    config = TokenizerConfig(vocab_size=2048, extra_special_tokens=CHAT_TOKENS, chat_template=False)
    tokenizer = as_transformers(train_bpe(iter(corpus), len(corpus), config), config)
    tokenizer.chat_template = QWEN_CHATML
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=1024, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"{args.out}: Qwen3ForCausalLM, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"vocabulary {len(tokenizer)}")


if __name__ == "__main__":
    main()
