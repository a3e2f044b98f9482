"""Gopher repetition rules (Rae et al. 2021) with datatrove's decisions, n-grams counted with numpy.

datatrove's `GopherRepetitionFilter` builds every n-gram of a document as a Python string, nine times (top 2-,
3-, 4-grams, duplicated 5- to 10-grams). Here an n-gram is a slice of one joined string (`" ".join(words)` for the
top n-grams, `"".join(words)` for the duplicated ones, as datatrove compares them), identified by a polynomial
hash of its characters computed for all slices at once; the slices whose hash repeats are compared as strings,
so a hash collision never merges two different n-grams. Only the n-grams that occur more than once go through
Python: the top n-gram is the first of the most frequent ones, the duplicated characters follow datatrove's
walk (a repeat of an n-gram seen at a visited position adds its characters and jumps past it).

tests/curate/test_repetition.py checks `top_ngram_chars` and `duplicate_ngram_chars` against datatrove's
`find_top_duplicate` and `find_all_duplicate`, and the filter's decisions against datatrove's filter.
"""

from __future__ import annotations

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters.gopher_repetition_filter import GopherRepetitionFilter
from datatrove.utils.text import split_into_words

_BASE = np.uint64(0x100000001B3)  # odd, so it has an inverse modulo 2**64
_BASE_INV = np.uint64(pow(int(_BASE), -1, 2**64))
_LENGTH_MIX = np.uint64(0x9E3779B97F4A7C15)


class _Powers:
    """BASE**k and BASE**-k modulo 2**64 for k < len, grown on demand (uint64 arithmetic wraps modulo 2**64)."""

    def __init__(self):
        self.up = np.ones(1, dtype=np.uint64)
        self.down = np.ones(1, dtype=np.uint64)

    def get(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < size:
            size = max(size, 2 * len(self.up))
            with np.errstate(over="ignore"):
                self.up = np.concatenate([[np.uint64(1)], np.cumprod(np.full(size - 1, _BASE, dtype=np.uint64))])
                self.down = np.concatenate([[np.uint64(1)], np.cumprod(np.full(size - 1, _BASE_INV, dtype=np.uint64))])
        return self.up, self.down


_POWERS = _Powers()


class _Slices:
    """One joined string and the prefix sums that hash any slice of it in O(1): for a slice [a, b),
    (Q[b] - Q[a]) * BASE**(b-1) = sum c[j] * BASE**(b-1-j), the same value wherever equal text sits."""

    def __init__(self, text: str):
        self.text = text
        chars = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
        self.up, down = _POWERS.get(len(chars) + 1)
        with np.errstate(over="ignore"):
            self.prefix = np.concatenate([[np.uint64(0)], np.cumsum(chars * down[: len(chars)], dtype=np.uint64)])

    def keys(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """A uint64 key per slice [start, end): equal texts have equal keys (unequal ones almost never do)."""
        with np.errstate(over="ignore"):
            key = (self.prefix[ends] - self.prefix[starts]) * self.up[np.maximum(ends - 1, 0)]
            return key + (ends - starts).astype(np.uint64) * _LENGTH_MIX


def word_offsets(words: list[str]) -> np.ndarray:
    """Start of each word, and the end, in `"".join(words)`."""
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    return np.concatenate([[0], np.cumsum(lengths)])


def top_ngram_chars(words: list[str], n: int, spaced: _Slices | None = None, cuts: np.ndarray | None = None) -> int:
    """datatrove's `find_top_duplicate(get_n_grams(words, n))`: characters of the most frequent n-gram
    (`" ".join` of n words; the first one seen among equally frequent ones) times its count; 0 without n-grams."""
    m = len(words) - n + 1
    if m <= 0:
        return 0
    spaced = spaced or _Slices(" ".join(words))
    cuts = word_offsets(words) if cuts is None else cuts
    i = np.arange(m)
    starts, ends = cuts[:m] + i, cuts[n:] + i + n - 1
    _, first, inverse, counts = np.unique(spaced.keys(starts, ends), return_index=True, return_inverse=True,
                                          return_counts=True)
    best = int(counts.max())
    group = int(np.argmin(np.where(counts == best, first, m)))  # the first n-gram seen among the most frequent
    a, b = int(starts[first[group]]), int(ends[first[group]])
    if best > 1:
        # a key count can only be too high (two texts sharing a key), so the top key is right when its slices agree
        members = np.flatnonzero(inverse.reshape(-1) == group)
        text = spaced.text[a:b]
        if any(spaced.text[x:y] != text for x, y in zip(starts[members].tolist(), ends[members].tolist())):
            return _top_ngram_chars_exact(spaced.text, starts, ends)
    return (b - a) * best


def _top_ngram_chars_exact(text: str, starts: np.ndarray, ends: np.ndarray) -> int:
    """`top_ngram_chars` by the slices' texts, for the (never seen) case of two n-grams sharing a key."""
    counts: dict[str, int] = {}
    for a, b in zip(starts.tolist(), ends.tolist()):
        key = text[a:b]
        counts[key] = counts.get(key, 0) + 1
    best = max(counts.values())
    top = next(k for k, v in counts.items() if v == best)  # dicts keep first-seen order, as datatrove's Counter
    return len(top) * best


def duplicate_ngram_chars(words: list[str], n: int, joined: _Slices | None = None, cuts: np.ndarray | None = None) -> int:
    """datatrove's `find_all_duplicate(words, n)`: characters of the n-grams (`"".join` of n words) that repeat
    one seen at an earlier visited position; after a repeat the walk jumps n words ahead."""
    m = len(words) - n + 1
    if m <= 0:
        return 0
    joined = joined or _Slices("".join(words))
    cuts = word_offsets(words) if cuts is None else cuts
    starts, ends = cuts[:m], cuts[n:]
    _, inverse, counts = np.unique(joined.keys(starts, ends), return_inverse=True, return_counts=True)
    repeated = np.flatnonzero(counts[inverse.reshape(-1)] > 1)
    # an n-gram whose key occurs once occurs once: visited or jumped over, it changes nothing. The others are
    # walked in order, compared by their texts (so sharing a key is never taken for a repeat)
    text, seen = joined.text, set()
    total, position = 0, 0
    for p, a, b in zip(repeated.tolist(), starts[repeated].tolist(), ends[repeated].tolist()):
        if p < position:
            continue
        gram = text[a:b]
        if gram in seen:
            total += b - a
            position = p + n
        else:
            seen.add(gram)
            position = p + 1
    return total


class FastGopherRepetition(GopherRepetitionFilter):
    """datatrove's `GopherRepetitionFilter`, the same rules, thresholds, order and reasons: datatrove's own filter
    runs the paragraph and line checks, then the n-gram checks run here with `top_ngram_chars` and
    `duplicate_ngram_chars` (datatrove's per-text word cache hands over the words it split)."""

    def __init__(self, top_n_grams=((2, 0.2), (3, 0.18), (4, 0.16)),
                 dup_n_grams=((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)), **kwargs):
        super().__init__(top_n_grams=(), dup_n_grams=(), **kwargs)
        self.ngram_rules = (tuple(map(tuple, top_n_grams)), tuple(map(tuple, dup_n_grams)))

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        verdict = super().filter(doc)  # empty text, paragraphs, lines (its n-gram rules are left empty)
        if verdict is not True:
            return verdict
        text = doc.text
        words = split_into_words(text, self.language)
        top, dup = self.ngram_rules
        if not words:
            return True
        cuts = word_offsets(words)
        spaced = _Slices(" ".join(words))
        for n, n_frac in top:
            if len(words) >= n and top_ngram_chars(words, n, spaced, cuts) / len(text) > n_frac:
                return False, f"top_{n}_gram"
        joined = _Slices("".join(words))
        for n, n_frac in dup:
            if duplicate_ngram_chars(words, n, joined, cuts) / len(text) > n_frac:
                return False, f"duplicated_{n}_n_grams"
        return True
