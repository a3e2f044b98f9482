"""Tiny real inputs for the compress, distill and quantize tests: a tokens artifact (byte-level BPE tokenizer,
train and valid splits) and a *trained* teacher checkpoint (a NemotronH with two attention layers and two
Mamba groups, trained on the train split with the factory's trainer), each with a manifest."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from factory.model import ModelConfig
from factory.stage import Artifact

WORDS = (
    "the a river city market people morning light water stone bridge garden teacher student book "
    "road house village quiet small large old new green blue walks reads builds finds carries opens "
    "near under over through before after slowly often always never and but because while"
).split()


def sentences(n: int, seed: int) -> list[str]:
    """Sentences with a learnable structure: subject, verb, object, often a place phrase."""
    rng = random.Random(seed)
    nouns, verbs, adj = WORDS[2:16], WORDS[26:32], WORDS[16:26]
    out = []
    for _ in range(n):
        s = f"the {rng.choice(adj)} {rng.choice(nouns)} {rng.choice(verbs)} a {rng.choice(nouns)}"
        if rng.random() < 0.5:
            s += f" {rng.choice(WORDS[32:39])} the {rng.choice(nouns)}"
        out.append(s.capitalize() + ".")
    return out


def _manifest(stage: str, kind: str) -> dict:
    return {"format": 1, "kind": kind, "stage": stage, "fingerprint": f"{stage}-fp", "uri": f"file://{stage}", "lineage": []}


def tokens_artifact(root: Path, vocab_size: int = 384, train_docs: int = 600, valid_docs: int = 60) -> Artifact:
    """tokenizer/ (byte-level BPE, <pad>=0 <s>=1 </s>=2), train.bin/.idx and valid.bin/.idx."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from factory.tokens import write_indexed

    folder = root / "tokens"
    folder.mkdir(parents=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(sentences(400, seed=0), trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.save_pretrained(folder / "tokenizer")
    for split, n, seed in (("train", train_docs, 1), ("valid", valid_docs, 2)):
        docs = [" ".join(sentences(3, seed=seed * 100_000 + i)) for i in range(n)]
        write_indexed(folder / split, [tok(d).input_ids + [tok.eos_token_id] for d in docs], len(tok))
    m = _manifest("tokenize", "tokens")
    (folder / "manifest.json").write_text(json.dumps(m))
    return Artifact(folder, m)


def teacher_config() -> ModelConfig:
    """Two attention layers (so depth pruning may drop one and generation still has a KV cache), two Mamba groups."""
    return ModelConfig(pattern="M*-M*-", hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                       intermediate_size=128, mamba_num_heads=8, mamba_head_dim=16, ssm_state_size=16, mamba_groups=2,
                       chunk_size=32, max_position_embeddings=512)


def train_windows(tokens: Artifact, split: str = "train", seq_len: int = 32) -> list[torch.Tensor]:
    from factory.tokens import PackedSequences

    data = PackedSequences(Path(tokens.path) / split, seq_len)
    return [data[i].long() for i in range(len(data))]


def teacher_artifact(root: Path, tokens: Artifact, steps: int = 60, name: str = "teacher") -> Artifact:
    """model/ + tokenizer files: `teacher_config()` trained `steps` steps on the train split."""
    from transformers import PreTrainedTokenizerFast

    from factory.model import build_model
    from factory.train.config import TrainConfig
    from factory.train.objectives.causal_lm import CausalLMObjective
    from factory.train.trainer import Trainer

    tok = PreTrainedTokenizerFast.from_pretrained(Path(tokens.path) / "tokenizer")
    torch.manual_seed(0)
    model = build_model(teacher_config(), len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    cfg = TrainConfig(seq_len=32, micro_batch_size=8, steps=steps, lr=3e-3, warmup_steps=10, checkpoint_interval=0)
    Trainer(CausalLMObjective(model), train_windows(tokens), cfg).fit()
    folder = root / name
    model.eval().save_pretrained(folder / "model")
    tok.save_pretrained(folder / "model")
    m = _manifest("pretrain", "checkpoint")
    (folder / "manifest.json").write_text(json.dumps(m))
    return Artifact(folder, m)
