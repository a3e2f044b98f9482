"""`factory.curate.language` gives py3langid's own results: the same automaton states, feature counts in the same
order, the same (language, probability) floats, on the smoke corpus's pages (raw HTML and extracted text) and on
strings that exercise the walk's edges (short, empty, multi-byte, non-Latin, one byte repeated)."""

from __future__ import annotations

from pathlib import Path

import pytest
from py3langid.langid import MODEL_FILE
from py3langid.langid import LanguageIdentifier as Py3LangId

from factory.curate.filters import extract_main_text
from factory.curate.language import (
    MIN_VECTOR_BYTES,
    WINDOW,
    counts_in_first_occurrence_order,
    language_identifier,
    reference_counts,
)

SMOKE = Path(__file__).resolve().parents[2] / "examples" / "data" / "smoke-html"

EDGES = [
    "", " ", "a", "hello", "x" * (MIN_VECTOR_BYTES - 1), "x" * MIN_VECTOR_BYTES, "ab" * 5000,
    "Der schnelle braune Fuchs springt über den faulen Hund. " * 12,
    "日本語のテキストはここにあります。" * 20, "Ελληνικά κείμενα για δοκιμή. " * 15, "русский текст для проверки " * 15,
    "ALL CAPITALS SHOUTING TEXT FOR THE LOWER-CASING RULE " * 8, "\x00\x01\x02 binary-ish \ufffd\ufffd " * 30,
    "e\u0301t\u00e9 caf\u00e9 NFC and NFD forms mixed " * 12,
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    pages = [p.read_text(encoding="utf-8") for p in sorted(SMOKE.glob("*.htm*"))[:60]]
    return pages + [extract_main_text(p, "resiliparse_rules") for p in pages] + EDGES


@pytest.fixture(scope="module")
def reference() -> Py3LangId:
    return Py3LangId.from_model_file(MODEL_FILE, norm_probs=True)


def test_classify_equals_py3langid(texts, reference):
    fast = language_identifier()
    assert fast is language_identifier()  # read once per process
    got = [fast.classify(t) for t in texts]
    assert got == [reference.classify(t) for t in texts]  # exact floats, not approximately
    assert {language for language, _ in got} >= {"en", "de", "ja", "el", "ru"}
    assert [fast.rank(t) for t in texts[-6:]] == [reference.rank(t) for t in texts[-6:]]


def test_states_and_feature_counts_equal_the_byte_walk(texts, reference):
    fast = language_identifier()
    for text in texts:
        data = reference._encode(text)
        if len(data) < WINDOW:
            continue
        state = fast.states(data)
        assert state is not None and len(state) == len(data)
        walked, s = [], 0  # py3langid's walk, state by state
        for byte in data[:300]:
            s = reference.tk_nextmove[reference._rowbase[s] + byte]
            walked.append(s)
        assert state[:300].tolist() == walked
        counts = reference_counts(reference, data)
        features = fast._features[state]
        features = features[features >= 0]
        if counts is None:
            assert len(features) == 0
            continue
        found, n = counts_in_first_occurrence_order(features)
        assert list(zip(found.tolist(), n.tolist())) == list(counts.items())  # same order too


def test_a_walk_that_does_not_check_out_falls_back_to_py3langid(reference, monkeypatch):
    fast = language_identifier()
    text = "The quick brown fox jumps over the lazy dog, again and again. " * 10
    monkeypatch.setattr(type(fast), "states", lambda self, data: None)
    assert fast.classify(text) == reference.classify(text)
