"""The numpy Gopher repetition counts equal datatrove's, and the stage's repetition filter decides as datatrove's
`GopherRepetitionFilter` does (same verdict, same reason) on the smoke corpus and on made-up repetitive pages."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter as DatatroveRepetition
from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate, find_top_duplicate, get_n_grams

from factory.curate import repetition
from factory.curate.filters import GopherRepetitionFilter, extract_main_text
from factory.curate.repetition import duplicate_ngram_chars, top_ngram_chars

SMOKE = Path(__file__).resolve().parents[2] / "examples" / "data" / "smoke-html"


def word_lists(count: int, seed: int) -> list[list[str]]:
    """Short lists over a tiny vocabulary whose words concatenate alike ("ab" + "c" == "a" + "bc"), so both
    n-gram kinds repeat often and the joined-without-spaces ones collide where the spaced ones do not."""
    rng = random.Random(seed)
    vocab = ["a", "b", "c", "ab", "bc", "abc", "the", "of"]
    return [[rng.choice(vocab) for _ in range(rng.randint(1, 120))] for _ in range(count)]


def reference_counts(words: list[str]) -> list[int]:
    top = [find_top_duplicate(get_n_grams(words, n)) if len(words) >= n else 0 for n in (2, 3, 4)]
    return top + [find_all_duplicate(words, n) for n in range(5, 11)]


def fast_counts(words: list[str]) -> list[int]:
    return [top_ngram_chars(words, n) for n in (2, 3, 4)] + [duplicate_ngram_chars(words, n) for n in range(5, 11)]


def test_counts_equal_datatrove():
    lists = word_lists(600, seed=0) + [[], ["one"], ["x"] * 40, ["ab", "c", "a", "bc"] * 6]
    assert [fast_counts(w) for w in lists] == [reference_counts(w) for w in lists]


def test_counts_equal_datatrove_when_every_key_collides(monkeypatch):
    # every n-gram given the same key: the texts must decide, as if each hash had collided
    monkeypatch.setattr(repetition._Slices, "keys", lambda self, starts, ends: np.zeros(len(starts), dtype=np.uint64))
    lists = word_lists(150, seed=1)
    assert [fast_counts(w) for w in lists] == [reference_counts(w) for w in lists]


def repetitive_pages() -> list[str]:
    """Pages made to trip each rule: repeated paragraphs, lines, a dominant 2-gram, long repeated passages."""
    rng = random.Random(2)
    words = "model data page line token text value curate filter stage rule count word field".split()

    def sentence(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n)) + "."

    pages = []
    for k in range(40):
        body = [sentence(rng.randint(6, 14)) for _ in range(rng.randint(3, 12))]
        if k % 4 == 0:
            body += body[: rng.randint(1, len(body))]  # repeated paragraphs
        if k % 4 == 1:
            body = [line for line in body for _ in range(rng.randint(1, 3))]  # repeated lines
        if k % 4 == 2:
            body.append("buy now " * rng.randint(5, 60))  # one 2-gram everywhere
        sep = "\n\n" if k % 2 else "\n"
        pages.append(sep.join(body))
    return pages


@pytest.mark.parametrize("settings", [{}, {"top_n_grams": [(2, 0.1), (3, 0.3)], "dup_n_grams": [(5, 0.05), (7, 0.2)],
                                           "dup_line_frac": 0.5, "dup_para_char_frac": None}])
def test_filter_decides_as_datatrove(settings):
    pages = [extract_main_text(p.read_text(encoding="utf-8"), "resiliparse_rules") for p in sorted(SMOKE.glob("*.htm*"))[:120]]
    pages += repetitive_pages()
    ours, theirs = GopherRepetitionFilter(**settings), DatatroveRepetition(**settings)
    verdicts = [(ours.filter(Document(text=t, id=str(i))), theirs.filter(Document(text=t, id=str(i))))
                for i, t in enumerate(pages)]
    assert [a for a, _ in verdicts] == [b for _, b in verdicts]
    reasons = Counter(str(b) for _, b in verdicts)
    assert reasons["True"] >= 20 and len(reasons) >= 4, reasons  # kept pages and several rules, not one verdict
