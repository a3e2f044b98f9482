"""The checkpoint builder: a model folder saved with its tokenizer (`model/`, as the trainer kinds export it), a
NemotronH of any shape (or a tiny GPT-2, a causal LM of another family), freshly initialised under a seed and, when
asked, trained with the factory's trainer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from factory.model import PRESETS, ModelConfig, build_model
from factory.stage import Artifact
from factory.tokens import PackedSequences, load_tokenizer
from factory.train.config import TrainConfig
from factory.train.objectives.causal_lm import CausalLMObjective
from factory.train.trainer import Trainer
from tests.builders.manifests import publish
from tests.builders.text import PASSAGE
from tests.builders.tokenizers import ENDOFTEXT, tokenizer

GPT2 = "gpt2"  # a 2-layer GPT-2 of width 32
# The tiny preset with a 256-token context: a long prompt (a HumanEval problem) does not fit.
TINY_256 = PRESETS["tiny"]().model_copy(update={"max_position_embeddings": 256})
# The teacher of the compress, distill and quantize tests: two attention layers (so depth pruning may drop one and
# generation still has a KV cache) and two Mamba groups.
TEACHER = ModelConfig(pattern="M*-M*-", hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      intermediate_size=128, mamba_num_heads=8, mamba_head_dim=16, ssm_state_size=16, mamba_groups=2,
                      chunk_size=32, max_position_embeddings=512)


def model_folder(folder: Path, tok, model: ModelConfig | str = "tiny", seed: int = 0, vocab_size: int | None = None,
                 token_ids: Mapping[str, int | None] | None = None, train: TrainConfig | None = None,
                 samples: Sequence[Any] = ()) -> Path:
    """A `save_pretrained` folder at `folder` holding the model and the tokenizer `tok`.

    `model` is a ModelConfig, a preset name or GPT2; `vocab_size` defaults to the tokenizer's length and `token_ids`
    (bos/eos/pad_token_id) to its special tokens. With `train`, the model first trains on `samples` (token windows or
    dicts with labels) with a causal-LM objective.
    """
    ids = dict(token_ids) if token_ids is not None else {
        "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    vocab = vocab_size or len(tok)
    torch.manual_seed(seed)
    if model == GPT2:
        net = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=1024, n_embd=32, n_layer=2, n_head=2, **ids))
    else:
        net = build_model(PRESETS[model]() if isinstance(model, str) else model, vocab, **ids)
    if train is not None:
        torch.manual_seed(seed)
        Trainer(CausalLMObjective(net), list(samples), train).fit()
    net.eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return Path(folder)


def generator(folder: Path, model: ModelConfig | str = GPT2, chat_template: str | None = None) -> Path:
    """A model folder a local generator reads (`generator.model_dir`): `model`, random init, with a byte-level BPE of
    400 tokens (<|endoftext|>, <|pad|>) trained on PASSAGE, and `chat_template` when given."""
    return model_folder(folder, tokenizer("bpe", [PASSAGE], 400, ENDOFTEXT, chat_template), model)


def checkpoint(folder: Path, tok, model: ModelConfig | str = "tiny", seed: int = 0, *, step: str = "pretrain",
               inputs: Mapping[str, Artifact] | None = None, **build: Any) -> Artifact:
    """`folder/model/` (see `model_folder` for the model's arguments), published as step `step`'s checkpoint."""
    model_folder(Path(folder) / "model", tok, model, seed, **build)
    train = build.get("train")
    config = {"model": model if isinstance(model, str) else model.model_dump(mode="json"), "seed": seed,
              "vocab_size": build.get("vocab_size") or len(tok), "train": train.model_dump(mode="json") if train else None}
    return publish(folder, step, "checkpoint", inputs=inputs, config=config)


def teacher(folder: Path, tokens: Artifact, steps: int = 60) -> Artifact:
    """TEACHER trained `steps` steps on the train split of `tokens` (windows of 32 tokens), with its tokenizer."""
    windows = PackedSequences(Path(tokens.path) / "train", 32)
    train = TrainConfig(seq_len=32, micro_batch_size=8, steps=steps, lr=3e-3, warmup_steps=10, checkpoint_interval=0)
    return checkpoint(folder, load_tokenizer(tokens.path), TEACHER, train=train, inputs={"tokens": tokens},
                      samples=[windows[i].long() for i in range(len(windows))])
