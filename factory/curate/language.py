"""Language id for the curate stage: py3langid's model and decisions, its byte walk done with numpy.

py3langid scores a text by walking its UTF-8 bytes through an Aho-Corasick automaton over byte n-grams, one
Python step per byte, and counting the features the visited states emit; that loop was most of the language
step's time. `LanguageIdentifier` here computes the same visited states with numpy: the automaton's state after
byte i is the longest suffix of the bytes so far that is an n-gram prefix, which the last `window` bytes alone
decide as long as no prefix is longer than `window`. Every position is walked from the start state over its last
`window` bytes at once, and the result is then checked against the automaton itself (state i must be the move
from state i - 1 on byte i, and state 0 the move from the start state): with that check passing, the states are
py3langid's by induction, whatever the model; if it ever fails, the text is walked byte by byte as py3langid
does. The feature counts go to py3langid's own scoring in py3langid's order (first occurrence), so the scores
are the same floats (tests/curate/test_language.py compares them on the bench corpus).

    from factory.curate.language import language_identifier
    language, probability = language_identifier().classify(text)
"""

from __future__ import annotations

import functools

import numpy as np
from py3langid.langid import MODEL_FILE, visit_counts
from py3langid.langid import LanguageIdentifier as _LanguageIdentifier

# bytes each state is walked over: the longest n-gram prefix of py3langid's model (0.4) is 6 bytes
WINDOW = 6
# below this many bytes, py3langid's Python loop is as fast as the numpy set-up
MIN_VECTOR_BYTES = 256


class LanguageIdentifier(_LanguageIdentifier):
    """py3langid's identifier whose byte walk is vectorised; `classify` returns what py3langid's returns."""

    __slots__ = ("_moves", "_rows", "_features")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the feature x language table as float32: numpy casts py3langid's float16 rows to float32 before every
        # product anyway (same values, same product), and the cast was most of the scoring time
        self.nb_ptc = np.asarray(self.nb_ptc, dtype=np.float32)
        self._full_model = (self.nb_ptc, self.nb_pc, self.nb_classes)
        # py3langid keeps the automaton as stdlib arrays: state -> row, row * 256 + byte -> next state
        self._moves = np.frombuffer(self.tk_nextmove, dtype=np.dtype(self.tk_nextmove.typecode))
        self._rows = np.frombuffer(self.tk_row, dtype=np.dtype(self.tk_row.typecode)).astype(self._moves.dtype) << 8
        self._features = np.asarray(self.tk_output, dtype=np.int64)  # state -> feature, or -1

    def states(self, data: bytes) -> np.ndarray | None:
        """The automaton's state after each byte of `data` (at least `WINDOW` bytes), as py3langid's walk visits
        them; None when the windowed walk does not reproduce the sequential one (never seen with py3langid's
        model; the caller then walks byte by byte)."""
        text = np.frombuffer(data, dtype=np.uint8).astype(self._moves.dtype)
        n, moves, rows = len(text), self._moves, self._rows
        head, state = [], 0  # the first WINDOW - 1 states, walked as py3langid does
        for byte in data[:WINDOW - 1]:
            state = int(moves[int(rows[state]) + byte])
            head.append(state)
        # state i >= WINDOW - 1: walked from the start state over bytes i - WINDOW + 1 .. i, all positions at once
        tail = moves[rows[0] + text[:n - WINDOW + 1]]
        for k in range(1, WINDOW):
            tail = moves[rows[tail] + text[k:n - WINDOW + 1 + k]]
        # the check that makes them exact: each state is the automaton's move from the one before
        previous = np.concatenate((np.asarray(head[-1:], dtype=tail.dtype), tail[:-1]))
        if not np.array_equal(moves[rows[previous] + text[WINDOW - 1:]], tail):
            return None
        return np.concatenate((np.asarray(head, dtype=tail.dtype), tail))

    def _raw_score(self, text):
        if len(text) < MIN_VECTOR_BYTES or (state := self.states(text)) is None:
            return super()._raw_score(text)
        features = self._features[state]
        features = features[features >= 0]
        if not len(features):
            return super()._raw_score(b"")  # py3langid's score of a featureless text
        found, counts = counts_in_first_occurrence_order(features)
        return self._sparse_score(dict(zip(found.tolist(), counts.tolist())), self.nb_ptc)


def counts_in_first_occurrence_order(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, how often each occurs), in order of first occurrence, as `collections.Counter` lists them
    (py3langid sums the features' scores in that order; another order would change the floats' last bits).

    One sort of value * n + position (every key distinct, so any sort gives the same order): each value's run
    starts at its first position."""
    n = len(values)
    keys = values.astype(np.int64) * n + np.arange(n)
    keys.sort()
    found = keys // n
    starts = np.flatnonzero(np.concatenate(([True], found[1:] != found[:-1])))
    counts = np.diff(np.append(starts, n))
    order = np.argsort(keys[starts] % n)
    return found[starts][order], counts[order]


def reference_counts(identifier: _LanguageIdentifier, data: bytes):
    """py3langid's own feature counts of `data` (its byte-by-byte walk), for tests to compare against."""
    return visit_counts(identifier.tk_nextmove, identifier._rowbase, identifier.tk_output, data)


@functools.cache
def language_identifier() -> LanguageIdentifier:
    """py3langid's bundled model with normalised probabilities, read once per process (reading it costs about
    as much as classifying 300 pages); the prose and the math paths share it."""
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
