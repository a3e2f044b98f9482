"""Reading the corpus for tokenization: its usable records, the held-out split (a stable hash of each id)
and the tokenizer's training sample."""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from factory.documents import read_records
from factory.stages.tokenize.config import Config

__all__ = ["corpus_texts", "usable_records", "survey_corpus", "unit_hash"]


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) for `parts` (sha256, so it depends on neither order nor process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def survey_corpus(files: list[Path], config: Config) -> dict:
    """Pass 1 over the corpus: counts, the validation rule, and the tokenizer's training sample.

    A document is held out when its id hashes below `valid_fraction`. Both splits are kept non-empty
    when the corpus allows it (a tiny corpus could otherwise hash every id to one side): the id with
    the smallest hash is forced into valid, the largest into train; which ids those are depends only
    on the set of ids, never on their order. The tokenizer sample is the `max_docs_for_training`
    training documents with the smallest second hash. Only ids of the sample are held in memory.
    """
    skipped: Counter = Counter()
    documents = n_bytes = hashed_valid = 0
    lowest: tuple[float, str] | None = None
    highest: tuple[float, str] | None = None
    heap: list[tuple[float, str]] = []  # max-heap (negated hashes) of the smallest sample hashes
    for doc_id, text in corpus_texts(files, skipped, config.max_error_fraction):
        documents += 1
        n_bytes += len(text.encode("utf-8"))
        u = unit_hash(config.seed, "split", doc_id)
        lowest = min(lowest or (u, doc_id), (u, doc_id))
        highest = max(highest or (u, doc_id), (u, doc_id))
        if u < config.valid_fraction:
            hashed_valid += 1
            continue
        item = (-unit_hash(config.seed, "tokenizer", doc_id), doc_id)
        if len(heap) < config.max_docs_for_training:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)

    force_valid: set[str] = set()
    force_train: set[str] = set()
    if lowest and highest and lowest[1] == highest[1]:  # a single distinct id: it must train
        force_train.add(lowest[1])
    elif config.valid_fraction > 0 and lowest and highest:
        if lowest[0] >= config.valid_fraction:
            force_valid.add(lowest[1])
        if highest[0] < config.valid_fraction:
            force_train.add(highest[1])
    sample = {doc_id for _, doc_id in heap} - force_valid

    def is_valid(doc_id: str) -> bool:
        if doc_id in force_valid or doc_id in force_train:
            return doc_id in force_valid
        return unit_hash(config.seed, "split", doc_id) < config.valid_fraction

    valid = hashed_valid
    if force_valid or force_train:  # only tiny corpora get here; recount, since an id may repeat
        valid = sum(is_valid(doc_id) for doc_id, _ in corpus_texts(files))
    return {"documents": documents, "bytes": n_bytes, "valid": valid, "skipped": skipped,
            "is_valid": is_valid, "sample": sample}


def usable_records(files: list[Path], skipped: Counter, max_error_fraction: float | None = None,
                   what: str = "tokenize: corpus") -> Iterator[dict]:
    """Every usable record (a dict with a string id and a non-empty text), in file then line order; bad
    records and unreadable files are counted in `skipped`, and past `max_error_fraction` of the lines the
    read fails with one line naming `what` and the first bad file and line."""
    for record in read_records(files, skipped, max_error_fraction=max_error_fraction, what=what):
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            skipped["no_id"] += 1
        elif not isinstance(record.get("text"), str) or not record["text"]:
            skipped["no_text"] += 1
        else:
            yield record


def corpus_texts(files: list[Path], skipped: Counter | None = None,
                 max_error_fraction: float | None = None) -> Iterator[tuple[str, str]]:
    """(id, text) of every usable record, in file then line order; bad records are counted in `skipped`
    (and checked against `max_error_fraction`, see `usable_records`)."""
    for record in usable_records(files, Counter() if skipped is None else skipped, max_error_fraction):
        yield record["id"], record["text"]
