"""What G-Vendi measures: examples (token ids and a completion mask) from corpus text, chats and dataset artifacts."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.documents import document_files, read_records
from factory.errors import InputError
from factory.gvendi.config import DATASET_KINDS

__all__ = ["Example", "conversation_example", "read_examples", "reservoir_sample", "text_example"]

_MARKERS = ("<|im_start|>", "<|im_end|>")  # the chat markers conversations are rendered with


@dataclass(frozen=True)
class Example:
    """Token ids (T,) and a 0/1 mask (T,) of the tokens that are completion; the loss is on targets ids[1:]
    whose mask is 1."""

    ids: tuple[int, ...]
    mask: tuple[int, ...]


def text_example(text: str, encode: Callable[[str], list[int]], seq_len: int) -> Example | None:
    """Plain corpus text: the first window of seq_len + 1 tokens, every token a completion token (there is no
    prompt). None for a text of fewer than 2 tokens."""
    ids = encode(text)[: seq_len + 1]
    return Example(tuple(ids), (1,) * len(ids)) if len(ids) >= 2 else None


def conversation_example(messages: Sequence[Mapping[str, Any]], encode: Callable[[str], list[int]], seq_len: int) -> Example | None:
    """A chat, rendered ChatML-style (`<|im_start|>role\\ncontent<|im_end|>\\n`), with the assistant turns'
    content and end markers as completion tokens. Long chats keep a window that starts a quarter window before
    the first completion token. None when no assistant turn has content."""
    ids: list[int] = []
    mask: list[int] = []
    for message in messages:
        role, content = str(message.get("role", "")), message.get("content") or ""
        if message.get("tool_calls"):
            content = f"{content}{json.dumps(message['tool_calls'], sort_keys=True)}"
        completion = int(role == "assistant")
        for piece, is_completion in ((f"{_MARKERS[0]}{role}\n", 0), (str(content), completion), (f"{_MARKERS[1]}\n", completion)):
            tokens = encode(piece)
            ids += tokens
            mask += [is_completion] * len(tokens)
    if 1 not in mask[1:]:
        return None
    first = mask.index(1, 1)
    start = max(0, min(first - seq_len // 4, len(ids) - (seq_len + 1)))
    window = slice(start, start + seq_len + 1)
    return Example(tuple(ids[window]), tuple(mask[window]))


def reservoir_sample(items: Iterable[Any], k: int, seed: int) -> list[Any]:
    """A uniform sample of k items in one pass (reservoir sampling), in stream order."""
    rng = random.Random(seed)
    reservoir: list[tuple[int, Any]] = []
    for i, item in enumerate(items):
        if i < k:
            reservoir.append((i, item))
        elif (j := rng.randint(0, i)) < k:
            reservoir[j] = (i, item)
    return [item for _, item in sorted(reservoir, key=lambda pair: pair[0])]


def read_examples(path: str | Path, kind: str, encode: Callable[[str], list[int]], seq_len: int, sample: int,
                  seed: int, skipped: Counter | None = None) -> list[Example]:
    """A seeded sample of `sample` examples of a dataset artifact folder (one pass over its records).

    corpus: `documents/*.jsonl.gz` records' `text`; conversations: `train.jsonl` records' `messages`.
    Records without usable text count in `skipped`.
    """
    skipped = Counter() if skipped is None else skipped
    path = Path(path)
    if kind == "corpus":
        records: Iterable[Any] = read_records(document_files(path), skipped)
    elif kind == "conversations":
        records = _jsonl(path / "train.jsonl", skipped)
    else:
        raise InputError(f"{path}: G-Vendi measures dataset artifacts ({', '.join(DATASET_KINDS)}), not {kind!r}")
    examples = []
    for record in reservoir_sample(records, sample, seed):
        example = None
        if kind == "corpus" and isinstance(record, dict) and isinstance(record.get("text"), str):
            example = text_example(record["text"], encode, seq_len)
        elif kind == "conversations" and isinstance(record, dict) and isinstance(record.get("messages"), list):
            example = conversation_example([m for m in record["messages"] if isinstance(m, dict)], encode, seq_len)
        if example is None:
            skipped["gvendi_unusable_records"] += 1
        else:
            examples.append(example)
    return examples


def _jsonl(path: Path, skipped: Counter) -> Iterator[Any]:
    if not path.is_file():
        raise InputError(f"{path}: missing; a conversations artifact holds train.jsonl")
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                skipped["bad_json"] += 1
