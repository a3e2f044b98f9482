"""Words for the Gopher filters: datatrove's spaCy word split, cached per whitespace-separated chunk.

datatrove's Gopher repetition and quality filters split every document into words with spaCy's blank English
tokenizer and keep the non-blank tokens. spaCy splits the text at whitespace first and then tokenizes each
run of non-whitespace characters on its own (prefixes, suffixes, infixes and exceptions never cross
whitespace), so the words of a document are the concatenated tokens of its chunks. `CachedSpacyWords` keeps
the tokens of every chunk it has seen, and calls spaCy only for new chunks: on web text most chunks repeat
(`the`, `of`, `data.`), so a document costs a few dictionary look-ups per word instead of building a spaCy
`Doc` with a `Token` object per word and running the sentencizer over it. The words are the same as datatrove's
`SpaCyTokenizer.word_tokenize` (tests/curate/test_words.py checks them token for token and the filters'
decisions on the bench corpus).

Pass an instance as the filters' `language`: datatrove accepts a `WordTokenizer` there, and instances for one
language compare equal, so the repetition and quality filters share datatrove's per-text word cache.
"""

from __future__ import annotations

import functools
import weakref

import spacy
from datatrove.utils.word_tokenizers import SpaCyTokenizer, WordTokenizer, load_word_tokenizer


@functools.cache
def _blank_pipeline(language: str):
    """spaCy's blank pipeline for `language`, built once per process (building one costs as much as splitting a
    few hundred pages) and shared by every `CachedSpacyWords`: the Gopher filters' and MinHash's.

    A pipeline of its own, not datatrove's, whose vocabulary computes no lexical attributes (shape, like_num, ...)
    for the strings it meets: tokenizing reads none of them, and they were most of the cost of a new string.
    Tokenizing inside `memory_zone` leaves it as it was, so sharing it changes no words.
    """
    nlp = spacy.blank(language)
    nlp.vocab.lex_attr_getters = {}
    return nlp


class CachedSpacyWords(SpaCyTokenizer):
    """datatrove's spaCy word tokenizer for `language`, with spaCy's tokens cached per whitespace-separated chunk.

    At most `max_chunks` chunks are kept; past that the cache starts again empty (a bound on memory for long
    runs, not a change in the words).
    """

    _live: weakref.WeakSet = weakref.WeakSet()  # every instance, so a stage can empty them all when it ends

    def __init__(self, language: str = "en", max_chunks: int = 200_000):
        super().__init__(language)
        CachedSpacyWords._live.add(self)
        self.max_chunks = max_chunks
        self._chunks: dict[str, tuple[str, ...]] = {}
        self._words = None  # spaCy pipeline whose tokenizer splits new chunks, made on first use

    def word_tokenize(self, text: str) -> list[str]:
        chunks = text.split()  # str.isspace() runs, as spaCy's tokenizer splits
        cache = self._chunks
        new = [c for c in set(chunks) if c not in cache] if len(cache) < self.max_chunks else None
        if new is None:  # the cache is full: start again
            self.clear()
            new = list(set(chunks))
        if new:
            try:
                self._tokenize_chunks(new)
            except Exception:  # noqa: BLE001 (whatever spaCy raises, datatrove's own path decides: same words or same error)
                return super().word_tokenize(text)
        words: list[str] = []
        for chunk in chunks:
            words += cache[chunk]
        return words

    def clear(self) -> None:
        """Forget every cached chunk (a stage calls this when a run ends, so the next one starts cold)."""
        self._chunks.clear()

    def _tokenize_chunks(self, chunks: list[str]) -> None:
        """Tokenize the new chunks in one spaCy call, joined by single spaces: a token followed by a space ends
        its chunk (a chunk holds no whitespace, so no token inside one is followed by a space)."""
        if self._words is None:
            self._words = _blank_pipeline(self.language)
        with self._words.memory_zone():  # as datatrove does: new strings are not kept in spaCy's vocab
            doc = self._words.tokenizer(" ".join(chunks))
            found, index, tokens = {}, 0, []
            for token in doc:
                text = token.text.strip()
                if text:
                    tokens.append(text)
                if token.whitespace_:
                    found[chunks[index]] = tuple(tokens)
                    index, tokens = index + 1, []
            found[chunks[index]] = tuple(tokens)
        if index != len(chunks) - 1:  # never expected: spaCy split the joined text other than at the spaces
            raise ValueError("chunk boundaries lost")
        self._chunks |= found

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.language == self.language

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.language))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tokenizer"], state["_words"], state["_chunks"] = None, None, {}  # rebuilt in the worker process
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        CachedSpacyWords._live.add(self)


def word_splitter(language: str) -> WordTokenizer | str:
    """What to pass a datatrove step as `language`: `CachedSpacyWords` where datatrove splits that language's words
    with spaCy, else the language code (datatrove's own tokenizer for it)."""
    try:
        tokenizer = load_word_tokenizer(language)
    except ValueError:
        return language
    return CachedSpacyWords(tokenizer.language) if type(tokenizer) is SpaCyTokenizer else language


def clear_word_caches() -> None:
    """Empty every `CachedSpacyWords` cache in this process (a stage run ends; the next one starts cold)."""
    for words in list(CachedSpacyWords._live):
        words.clear()
