"""`CachedSpacyWords` gives datatrove's spaCy words token for token, on the smoke corpus and on strings that
exercise spaCy's prefix, suffix, infix and exception rules; the Gopher filters share one instance."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from datatrove.utils.word_tokenizers import SpaCyTokenizer, load_word_tokenizer

from factory.curate.filters import GopherQualityFilter, GopherRepetitionFilter, extract_main_text
from factory.curate.words import CachedSpacyWords

SMOKE = Path(__file__).resolve().parents[2] / "examples" / "data" / "smoke-html"

TRICKY = [
    "", "   \n\t ", "don't can't won't I'm y'all o'clock", "U.S. a.m. p.m. e.g. i.e. etc. Mr. Dr. St.",
    "(hello), [world]; {x}: \"quoted\" 'single' «guillemets» — dash – en-dash ... …",
    "https://example.org/a/b?c=1&d=2 www.example.com user@example.org #hashtag @handle",
    "3.14 -2 +7 1,000,000 $5 5$ 10% 20°C 3x4 1/2 2nd 1990s '90s",
    "non\u00a0breaking\u2003em\u3000ideographic\u2028line\u2029para\x1ctabs\there",
    ":) :-( <3 ^_^ :D =) ;)", "well-known state-of-the-art e-mail re-use x-ray",
    "$\\frac{a}{b} + \\sum_{i=1}^{n} x_i^2$ and $$E = mc^2$$ \\(x\\)",
    "ＦＵＬＬｗｉｄｔｈ 日本語のテキスト Ελληνικά русский текст عربى",
    "a" * 300, "word\n\nword\r\nword\x0bword\x0cword\x85word",
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    # ("IS_ALPHA" is left out: spaCy itself splits that string differently from one call to the next)
    pages = sorted(SMOKE.glob("*.htm*"))[:80]
    return [extract_main_text(p.read_text(encoding="utf-8"), "resiliparse_rules") for p in pages] + TRICKY


def test_words_equal_datatrove_spacy_words(texts):
    reference, fast = SpaCyTokenizer("en"), CachedSpacyWords("en")
    mismatched = [t[:60] for t in texts if fast.word_tokenize(t) != reference.word_tokenize(t)]
    assert mismatched == []
    assert len(fast._chunks) > 1000  # the cache is in use
    # warm (every chunk cached), after a clear, and with a cache so small that it starts again often: same words
    assert [fast.word_tokenize(t) for t in texts] == [reference.word_tokenize(t) for t in texts]
    fast.clear()
    assert fast._chunks == {} and fast.word_tokenize(texts[0]) == reference.word_tokenize(texts[0])
    small = CachedSpacyWords("en", max_chunks=200)
    assert all(small.word_tokenize(t) == reference.word_tokenize(t) for t in texts[:6])
    assert len(small._chunks) < 200 + max(len(set(t.split())) for t in texts[:6])


def test_pickles_empty_and_filters_share_one_instance():
    words = CachedSpacyWords("en")
    words.word_tokenize("the cat sat on the mat.")
    copy = pickle.loads(pickle.dumps(words))
    assert copy._chunks == {} and copy == words and copy.word_tokenize("the mat.") == ["the", "mat", "."]
    # datatrove looks tokenizers up by value: both Gopher filters land on one instance, so the quality filter gets
    # the words the repetition filter split from datatrove's per-text cache
    rep, qual = GopherRepetitionFilter(), GopherQualityFilter()
    assert load_word_tokenizer(rep.language) is load_word_tokenizer(qual.language)
    assert isinstance(load_word_tokenizer(rep.language), CachedSpacyWords)
