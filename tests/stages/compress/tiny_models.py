"""Names bench/quantize.py still imports, kept until that benchmark builds its inputs through the factory's own stages:
thin wrappers of the builders (tests/builders) the tests use."""

from __future__ import annotations

from pathlib import Path

from factory.stage import Artifact
from tests.builders import grammar_sentences, grammar_tokens, teacher

sentences = grammar_sentences


def tokens_artifact(root: Path, vocab_size: int = 384, train_docs: int = 600, valid_docs: int = 60) -> Artifact:
    return grammar_tokens(Path(root) / "tokens", vocab_size, train_docs, valid_docs)


def teacher_artifact(root: Path, tokens: Artifact, steps: int = 60, name: str = "teacher") -> Artifact:
    return teacher(Path(root) / name, tokens, steps)
