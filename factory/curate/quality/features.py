"""Hand-made document features for the gradient-boosting quality classifier.

Each is a ratio or a length that Gopher-style heuristic filters threshold by hand; here a model learns the
thresholds and their interactions from labelled examples instead.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

# the most frequent English function words (Gopher's quality filter uses a handful of the same kind)
STOP_WORDS = frozenset(
    "the of and to a in is that for it as was with be by on not he i this are or his from at which but have an "
    "they you were her she there one all we can has their been if more when will would who so no what also "
    "into than then these its may such only other some".split()
)
_PUNCT = set(string.punctuation)
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_BULLET = re.compile(r"^\s*([-*•»|>#]|\d+[.)])\s")
_URL = re.compile(r"https?://|www\.|\.(com|net|org|html?)\b")

FEATURE_NAMES = (
    "log_words",
    "mean_word_length",
    "stopword_ratio",
    "punctuation_ratio",
    "digit_ratio",
    "uppercase_ratio",
    "non_ascii_ratio",
    "duplicate_line_ratio",
    "terminal_punctuation_line_ratio",
    "bullet_line_ratio",
    "mean_line_words",
    "mean_sentence_words",
    "alpha_word_ratio",
    "type_token_ratio",
    "top_word_ratio",
    "url_ratio",
)


def document_features(text: str) -> list[float]:
    """The `FEATURE_NAMES` values of one document (0.0 where a ratio has no denominator)."""
    words = text.split()
    n_words = len(words)
    chars = [c for c in text if not c.isspace()]
    n_chars = max(1, len(chars))
    letters = [c for c in chars if c.isalpha()]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    n_lines = max(1, len(lines))
    lower = [w.lower().strip(string.punctuation) for w in words]
    counts = Counter(w for w in lower if w)
    sentences = max(1, len(_SENTENCE_END.findall(text)))
    # type-token ratio falls with length; measure it on a fixed-size prefix so long documents are comparable
    head = [w for w in lower[:200] if w]
    return [
        math.log1p(n_words),
        sum(len(w) for w in words) / max(1, n_words),
        sum(w in STOP_WORDS for w in lower) / max(1, n_words),
        sum(c in _PUNCT for c in chars) / n_chars,
        sum(c.isdigit() for c in chars) / n_chars,
        sum(c.isupper() for c in letters) / max(1, len(letters)),
        sum(ord(c) > 127 for c in chars) / n_chars,
        1.0 - len(set(lines)) / n_lines,
        sum(ln[-1] in ".!?:\"')" for ln in lines) / n_lines,
        sum(bool(_BULLET.match(ln)) for ln in lines) / n_lines,
        n_words / n_lines,
        n_words / sentences,
        sum(any(c.isalpha() for c in w) for w in words) / max(1, n_words),
        len(set(head)) / max(1, len(head)),
        (counts.most_common(1)[0][1] / max(1, n_words)) if counts else 0.0,
        len(_URL.findall(text)) / max(1, n_words),
    ]


def feature_matrix(texts: Sequence[str]) -> np.ndarray:
    """(len(texts), len(FEATURE_NAMES)) float64."""
    return np.array([document_features(t) for t in texts], dtype=np.float64).reshape(len(texts), len(FEATURE_NAMES))
