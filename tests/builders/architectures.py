"""Tiny random-weight models of the architectures users bring (Llama, Qwen2, Qwen3, Mistral, NemotronH dense and MoE),
saved with `save_pretrained` as a model folder with a chat tokenizer, for the import tests: nothing is downloaded.

    folder = model_folder_of("qwen3", root / "qwen3", seed=0)          # config.json, model.safetensors, tokenizer
    hub_cache(root / "hf", "acme/tiny-qwen3", folder, revision="main")  # the same files in a Hugging Face cache layout

Every architecture gets the same byte-level BPE (the chat markers as special tokens) with a ChatML chat template that,
like the published templates, has no generation markers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, \
    Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from factory.chat.template import CHAT_TOKENS
from factory.model import PRESETS, build_model
from tests.builders.chats import additions
from tests.builders.tokenizers import ENDOFTEXT, tokenizer

# ChatML as Qwen's templates write it, without `{% generation %}` markers (so assistant masks come from prefixes)
CHATML = ("{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endfor %}"
          "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}")
ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral", "nemotron_h", "nemotron_h_moe")
_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512)
_HF = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
       "qwen3": (Qwen3Config, Qwen3ForCausalLM), "mistral": (MistralConfig, MistralForCausalLM)}


def chat_tokenizer():
    """A byte-level BPE of 512 tokens trained on arithmetic chats, the chat markers special, with CHATML."""
    texts = [f"{m.role}\n{m.content}" for c in additions(150, seed=7) for m in c.messages]
    tok = tokenizer("bpe", texts, 512, ENDOFTEXT, CHATML)
    tok.add_tokens(list(CHAT_TOKENS), special_tokens=True)
    return tok


def model_folder_of(architecture: str, folder: Path, seed: int = 0) -> Path:
    """A random-weight causal LM of `architecture` (one of ARCHITECTURES) with `chat_tokenizer()`, at `folder`."""
    tok = chat_tokenizer()
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    torch.manual_seed(seed)
    if architecture in _HF:
        config_cls, model_cls = _HF[architecture]
        extra = {"head_dim": 16} if architecture == "qwen3" else {}
        model = model_cls(config_cls(vocab_size=len(tok), tie_word_embeddings=False, **_SHAPE, **extra, **ids))
    else:
        model = build_model(PRESETS["tiny_moe" if architecture == "nemotron_h_moe" else "tiny"](), len(tok), **ids)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return Path(folder)


def hub_cache(cache: Path, repo_id: str, folder: Path, revision: str = "main") -> str:
    """`folder`'s files laid out as the Hugging Face cache holds a download of `repo_id` at `revision`
    (`models--ORG--NAME/blobs/<sha>`, `snapshots/<commit>/<file>` links to them, `refs/<revision>` naming the commit);
    the commit."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    commit = hashlib.sha1(b"".join(p.read_bytes() for p in files)).hexdigest()
    for path in files:
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = repo / "snapshots" / commit / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return commit
