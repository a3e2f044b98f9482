"""Typed readers, one per artifact kind: where each kind keeps its parts, read in one place.

    from factory.artifacts import Checkpoint, Conversations, Corpus, Tokens

    files = Corpus.of(inputs, "corpus").files()                  # documents/part-*.jsonl.gz
    tokens = Tokens.of(inputs, "tokens")
    tokenizer, train = tokens.tokenizer(), tokens.packed("train", seq_len=128)
    model_dir = Checkpoint.of(inputs, "model").model_dir         # model/: a save_pretrained folder
    conversations = Conversations.of(inputs, "data").train()     # train.jsonl as Conversation records

`of` takes a stage's inputs and the input's name and checks the layout at once, so a stage fails with one
line naming the input and the missing part rather than deep inside a reader. The executor runs the same
check (`check_layout`) on every input before a stage starts, from the artifact kind the registry declares.
Importing this module loads no torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from factory.chat.records import read_conversations, read_prompts, read_stats
from factory.documents import document_files
from factory.errors import InputError


@dataclass(frozen=True)
class TypedArtifact:
    """An artifact folder read as its kind; `name` is the input name errors give."""

    KIND: ClassVar[str] = ""
    REQUIRED: ClassVar[tuple[str, ...]] = ()  # parts that every artifact of the kind holds

    path: Path
    name: str = "input"

    @classmethod
    def of(cls, inputs: Mapping[str, Any], name: str):
        """Input `name` of a stage's `inputs` (`factory.stage.Artifact`s), read as this kind and checked."""
        if name not in inputs or inputs[name] is None:
            raise InputError(f"needs an input named {name!r} (a {cls.KIND} artifact); got inputs {sorted(inputs)}")
        return cls(Path(inputs[name].path), name).checked()

    def checked(self):
        for part in self.REQUIRED:
            if not (self.path / part).exists():
                raise InputError(f"{self.path / part}: missing; input {self.name!r} must be a {self.KIND} artifact, "
                                 f"which holds {', '.join(self.REQUIRED)}")
        return self


@dataclass(frozen=True)
class Corpus(TypedArtifact):
    """Documents as gzipped JSONL parts (`factory.documents` writes and reads them)."""

    KIND: ClassVar[str] = "corpus"
    REQUIRED: ClassVar[tuple[str, ...]] = ("documents",)

    def files(self) -> list[Path]:
        return document_files(self.path)


@dataclass(frozen=True)
class Tokens(TypedArtifact):
    """A tokenizer (`tokenizer/`) and Megatron indexed datasets (`SPLIT.bin` + `SPLIT.idx`)."""

    KIND: ClassVar[str] = "tokens"
    REQUIRED: ClassVar[tuple[str, ...]] = ("tokenizer/tokenizer.json",)

    def tokenizer(self):
        # factory.tokens loads torch, transformers and megatron-core; the executor imports this module for every step
        from factory.tokens import load_tokenizer

        return load_tokenizer(self.path)

    def split(self, split: str) -> Path:
        """The `PREFIX` of dataset `split` (`PREFIX.bin` + `PREFIX.idx`), checked."""
        prefix = self.path / split
        for suffix in (".bin", ".idx"):
            if not prefix.with_name(split + suffix).is_file():
                raise InputError(f"{prefix.with_name(split + suffix)}: missing from input {self.name!r} "
                                 f"(expected {split}.bin and {split}.idx)")
        return prefix

    def packed(self, split: str, seq_len: int):
        """`split` as packed windows of seq_len + 1 tokens (`factory.tokens.PackedSequences`)."""
        from factory.tokens import PackedSequences  # torch: see tokenizer()

        return PackedSequences(self.split(split), seq_len)

    def windows(self, split: str, seq_len: int, limit: int | None = None):
        """The first `limit` (default all) windows of `split`, stacked: (N, seq_len + 1) int64."""
        import torch  # see tokenizer()

        data = self.packed(split, seq_len)
        n = len(data) if limit is None else min(len(data), limit)
        if n == 0:
            return torch.zeros((0, seq_len + 1), dtype=torch.int64)
        return torch.stack([data[i] for i in range(n)]).long()


@dataclass(frozen=True)
class Checkpoint(TypedArtifact):
    """A model as a transformers `save_pretrained` folder, `model/`."""

    KIND: ClassVar[str] = "checkpoint"
    REQUIRED: ClassVar[tuple[str, ...]] = ("model/config.json",)

    @property
    def model_dir(self) -> Path:
        return self.path / "model"


@dataclass(frozen=True)
class Evaluation(TypedArtifact):
    """An evaluation's results, `eval.json`."""

    KIND: ClassVar[str] = "evaluation"
    REQUIRED: ClassVar[tuple[str, ...]] = ("eval.json",)

    def results(self) -> dict[str, Any]:
        path = self.path / "eval.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: not readable as JSON ({e}); input {self.name!r} must be an evaluation artifact") from None


@dataclass(frozen=True)
class Quantized(TypedArtifact):
    """Quantized variants of a checkpoint (`factory.stages.quantize`): one loadable folder per variant and their report,
    `quantize.json` ({"bf16_perplexity", "bf16_tasks", "variants": {folder name: {...}}})."""

    KIND: ClassVar[str] = "quantized"
    REQUIRED: ClassVar[tuple[str, ...]] = ("quantize.json",)

    def report(self) -> dict[str, Any]:
        """quantize.json, with every variant it names checked to be a folder holding config.json and weights."""
        path = self.path / "quantize.json"
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: not readable as JSON ({e}); input {self.name!r} must be a quantized artifact") from None
        if not isinstance(report, dict) or not isinstance(report.get("variants"), dict):
            raise InputError(f"{path}: no 'variants' object; input {self.name!r} must be a quantized artifact")
        for variant in report["variants"]:
            folder = self.path / variant
            if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
                raise InputError(f"{folder}: variant {variant!r} of {path.name} needs config.json and *.safetensors")
        return report


@dataclass(frozen=True)
class Conversations(TypedArtifact):
    """Post-training data (`factory.chat.records`): verified conversations `train.jsonl`, training prompts
    with references `prompts.jsonl`, held-out prompts `heldout.jsonl`, counts `stats.json`."""

    KIND: ClassVar[str] = "conversations"
    REQUIRED: ClassVar[tuple[str, ...]] = ("train.jsonl", "prompts.jsonl", "heldout.jsonl", "stats.json")

    def train(self):
        """The verified conversations (`factory.chat.records.Conversation`s)."""
        return read_conversations(self.path / "train.jsonl")

    def prompts(self):
        """Every training prompt with its reference (`factory.chat.records.Prompt`s)."""
        return read_prompts(self.path / "prompts.jsonl")

    def heldout(self):
        """The held-out prompts: seeds and parameters the training files never hold."""
        return read_prompts(self.path / "heldout.jsonl")

    def stats(self):
        """The counts (`factory.chat.records.DataStats`)."""
        return read_stats(self.path / "stats.json")


READERS: dict[str, type[TypedArtifact]] = {r.KIND: r for r in (Corpus, Tokens, Checkpoint, Evaluation, Quantized, Conversations)}


def check_layout(kind: str, path: Path, name: str) -> None:
    """Check that the folder of input `name` holds what artifact kind `kind` always holds (no-op for kinds
    without a typed reader)."""
    reader = READERS.get(kind)
    if reader is not None:
        reader(Path(path), name).checked()
