"""Planted near-duplicates and exact-Jaccard ground truth: how the dedup test and benchmark measure MinHash.

A set of distinct documents gets copies edited at known word-edit rates; the ground truth is every pair whose
word n-gram sets (normalised exactly as MinHash normalises them) have Jaccard similarity >= a threshold, and a
dedup result is scored by pair precision and recall against it.
"""

from __future__ import annotations

import random
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations

from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

_FILLER = "data system value result method object file number process state table order".split()


def edit_words(text: str, rate: float, rng: random.Random) -> str:
    """`text` with about `rate` of its words edited: each edit replaces, deletes or inserts one word."""
    words = text.split()
    out: list[str] = []
    for w in words:
        if rng.random() >= rate:
            out.append(w)
            continue
        op = rng.randrange(3)
        if op == 0:
            out.append(rng.choice(_FILLER))  # replace
        elif op == 2:
            out.extend([w, rng.choice(_FILLER)])  # insert after
        # op == 1: delete
    return " ".join(out)


def plant_near_duplicates(
    originals: Sequence[str], rates: Sequence[float], copies_per_rate: int, seed: int = 0
) -> tuple[list[str], list[int]]:
    """Originals followed by edited copies: for each rate, `copies_per_rate` originals get one copy each.

    Each original is copied at most once (copies of copies would chain similarities), so
    `len(originals) >= len(rates) * copies_per_rate`. Returns the texts and, per text, its original's index.
    """
    if len(originals) < len(rates) * copies_per_rate:
        raise ValueError(f"need {len(rates) * copies_per_rate} originals, got {len(originals)}")
    rng = random.Random(seed)
    texts, source = list(originals), list(range(len(originals)))
    chosen = rng.sample(range(len(originals)), len(rates) * copies_per_rate)
    for k, i in enumerate(chosen):
        texts.append(edit_words(originals[i], rates[k // copies_per_rate], rng))
        source.append(i)
    return texts, source


def jaccard_pairs(texts: Sequence[str], n_grams: int, threshold: float) -> dict[tuple[int, int], float]:
    """Every pair `(i, j)`, `i < j`, whose shingle sets have Jaccard similarity >= `threshold`, with that similarity.

    Shingles are datatrove's (same normalisation and tokenizer as the MinHash signatures), so this is exactly the
    similarity MinHash estimates. Only pairs sharing a shingle are compared (an inverted index).
    """
    sig = MinhashDedupSignature(output_folder=tempfile.gettempdir(), config=MinhashConfig(n_grams=n_grams))
    shingles = [set(sig.get_shingles(t).ravel().tolist()) for t in texts]
    postings: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(shingles):
        for h in s:
            postings[h].append(i)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for docs in postings.values():
        for pair in combinations(docs, 2):
            shared[pair] += 1
    out = {}
    for i, j in shared:
        a, b = shingles[i], shingles[j]
        sim = len(a & b) / len(a | b)
        if sim >= threshold:
            out[(i, j)] = sim
    return out


def cluster_pairs(clusters: Mapping[str, int], ids: Sequence[str]) -> set[tuple[int, int]]:
    """Pairs `(i, j)` of positions in `ids` that a dedup result put in the same cluster."""
    by_cluster: dict[int, list[int]] = defaultdict(list)
    for pos, doc_id in enumerate(ids):
        if doc_id in clusters:
            by_cluster[clusters[doc_id]].append(pos)
    return {pair for members in by_cluster.values() for pair in combinations(sorted(members), 2)}


def precision_recall(predicted: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, float]:
    """Pair precision and recall (1.0 when there is nothing to find / nothing predicted)."""
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(truth) if truth else 1.0
    return precision, recall
