"""A tiny, learnable tokens artifact: a word-level tokenizer and packed documents of repeated phrases."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from factory.stage import Artifact
from factory.tokens import write_indexed

VOCAB = 512


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|pad|>": 1, **{f"w{i}": i for i in range(2, VOCAB)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        pad_token="<|pad|>", unk_token="<|endoftext|>",
    )


def learnable_docs(n_docs: int, seed: int = 0) -> list[list[int]]:
    """Each document repeats one of 8 fixed 10-token phrases: after the first repeat, fully predictable."""
    rng = random.Random(seed)
    phrases = [[rng.randrange(2, VOCAB) for _ in range(10)] for _ in range(8)]
    return [rng.choice(phrases) * rng.randint(3, 8) + [0] for _ in range(n_docs)]


def make_tokens_artifact(folder: Path, n_docs: int = 200) -> Artifact:
    folder.mkdir(parents=True, exist_ok=True)
    make_tokenizer().save_pretrained(folder / "tokenizer")
    write_indexed(folder / "train", learnable_docs(n_docs, seed=0), VOCAB)
    write_indexed(folder / "valid", learnable_docs(20, seed=1), VOCAB)
    return Artifact(folder, {"fingerprint": "0" * 64, "kind": "tokens", "stage": "tokenize"})


@pytest.fixture(scope="session")
def tokens_artifact(tmp_path_factory) -> Artifact:
    return make_tokens_artifact(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls gain nothing from a second thread, and on a busy 2-core machine OpenMP spin-waiting
    costs 20x the CPU time; one intra-op thread keeps these tests fast and their timing stable."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trainer_inputs(tmp_path_factory):
    """Every trainer kind's tiny inputs (tests/train/trainer_kinds.py), built once for the session."""
    from tests.train.trainer_kinds import kind_inputs

    return kind_inputs(tmp_path_factory.mktemp("trainer_inputs"))
