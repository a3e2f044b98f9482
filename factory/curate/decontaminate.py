"""Decontamination: drop training documents that share a long word n-gram with an evaluation item.

GPT-3 (Brown et al., 2020, appendix C) and the Nemotron recipes remove any training document that shares a
13-gram with a benchmark item. Text is lower-cased and cut into words (`\\w+`); an item shorter than
`n_gram` words is matched on all its words (GPT-3's rule for short items), and one shorter than
`min_item_words` is ignored, since a few common words are no evidence of leakage. Besides the files the
user names, the curate stage matches the evaluate stage's built-in sets and prompts
(`factory.tasks.builtin_eval_items`) unless `builtin_sets` is off, so the factory does not train on what it
evaluates on; it hands them in, so this library knows nothing of the task sets.

    items = eval_items(["evals/"], builtin_eval_items())            # [(set name, text), ...]
    index = NgramIndex(items, n_gram=13, min_item_words=8)
    index.match(doc_text)                                            # the set name it leaks, or None
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import Field

from factory.errors import InputError
from factory.stage import StageConfig

EVAL_SUFFIXES = (".txt", ".jsonl", ".json")
_WORD = re.compile(r"\w+")


class DecontaminationConfig(StageConfig):
    """Which evaluation text to remove from the corpus, and how long a shared n-gram must be."""

    enabled: bool = Field(True, description="Remove documents that share an n-gram with an evaluation item.")
    n_gram: int = Field(13, ge=3, description="Words in a shared n-gram that marks a document as contaminated (GPT-3: 13).")
    min_item_words: int = Field(
        8, ge=1, description="Evaluation items with fewer words are ignored (too short to be evidence of leakage).")
    builtin_sets: bool = Field(True, description="Also decontaminate against the evaluate stage's built-in sets and prompts.")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _strings(value) -> Iterator[str]:
    """Every string inside a JSON value (question, answer, choices, ...), each one an item.

    A cloze item's "context" and "target" (the evaluate stage's set format) make one item, joined, since
    the passage is what a leaked document would hold whole.
    """
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        if isinstance(value.get("context"), str) and isinstance(value.get("target"), str):
            yield value["context"] + value["target"]
            value = {k: v for k, v in value.items() if k not in ("context", "target")}
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def read_eval_file(path: Path) -> list[str]:
    """Items of one evaluation file: `.txt` one per line, `.jsonl` every string of every line, `.json` every string."""
    suffix = path.suffix.lower()
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"evaluation set {path} cannot be read: {e}") from None
    if suffix == ".txt":
        return [line.strip() for line in raw.splitlines() if line.strip()]
    if suffix == ".jsonl":
        items: list[str] = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.extend(_strings(json.loads(line)))
            except ValueError:
                raise InputError(f"evaluation set {path}, line {number}: not valid JSON") from None
        return items
    try:
        return list(_strings(json.loads(raw)))
    except ValueError:
        raise InputError(f"evaluation set {path}: not valid JSON") from None


def eval_items(paths: Iterable[str], builtin: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """(set name, item text) from evaluation files and folders (.txt/.jsonl/.json), then the `builtin` items
    (the evaluate stage's built-in sets and prompts, when the curate stage asks for them)."""
    items: list[tuple[str, str]] = []
    for entry in paths:
        root = Path(entry).expanduser()
        if not root.exists():
            raise InputError(f"evaluation set {entry!r} does not exist (config field `decontamination_sets`)")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EVAL_SUFFIXES) if root.is_dir() else [root]
        for file in files:
            items += [(file.stem, text) for text in read_eval_file(file)]
    return items + list(builtin)


class NgramIndex:
    """Hashes of every evaluation item's word n-grams, grouped by n (items shorter than `n_gram` use their length)."""

    def __init__(self, items: Iterable[tuple[str, str]], n_gram: int = 13, min_item_words: int = 8):
        self.by_n: dict[int, dict[int, str]] = {}  # n -> hash of an n-gram -> the set it came from
        self.items = self.ignored = 0
        for name, text in items:
            w = words(text)
            if len(w) < min_item_words:
                self.ignored += 1
                continue
            self.items += 1
            n = min(n_gram, len(w))
            grams = self.by_n.setdefault(n, {})
            for i in range(len(w) - n + 1):
                grams.setdefault(hash(" ".join(w[i:i + n])), name)

    def match(self, text: str) -> str | None:
        """The evaluation set `text` shares an n-gram with, or None when it is clean."""
        if not self.by_n:
            return None
        w = words(text)
        for n, grams in self.by_n.items():
            for i in range(len(w) - n + 1):
                name = grams.get(hash(" ".join(w[i:i + n])))
                if name is not None:
                    return name
        return None
