"""The three kinds of quality classifier in the ensemble, each a scikit-learn estimator on its own input.

- `ngram`: fastText-style linear model: hashed word 1-2-grams and character 3-5-grams (within words), a
  logistic-loss `SGDClassifier` on top. Sees wording.
- `embedding`: logistic regression on MiniLM sentence embeddings (`factory.embedding`). Sees meaning.
- `features`: `HistGradientBoostingClassifier` on hand features (`factory.curate.quality.features`). Sees form.

Different inputs make different mistakes, which is why Nemotron-CC ensembles them (max of their buckets).
A classifier's raw score is its decision function (log-odds of "reference quality"): it does not saturate at
1.0 the way probabilities do, so percentiles over it stay fine-grained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from factory.embedding import EmbeddingConfig, embed
from factory.curate.quality.features import feature_matrix
from factory.stage import StageConfig

ClassifierName = Literal["ngram", "embedding", "features"]


class NgramClassifierConfig(StageConfig):
    """Hashed n-gram logistic model (fastText-like)."""

    n_features: int = Field(2**20, ge=2**10, description="Hash buckets per vectorizer (word and char).")
    word_ngrams: tuple[int, int] = Field((1, 2), description="Word n-gram range.")
    char_ngrams: tuple[int, int] = Field((3, 5), description="Character n-gram range, within word boundaries.")
    alpha: float = Field(1e-5, gt=0, description="SGD L2 regularisation strength.")
    epochs: int = Field(20, ge=1, description="SGD passes over the training set.")


class EmbeddingClassifierConfig(StageConfig):
    """Logistic regression on sentence embeddings."""

    encoder: EmbeddingConfig = Field(default_factory=EmbeddingConfig, description="The sentence-embedding model.")
    C: float = Field(1.0, gt=0, description="Inverse L2 regularisation strength of the logistic regression.")


class FeaturesClassifierConfig(StageConfig):
    """Gradient boosting on hand features."""

    max_iter: int = Field(200, ge=1, description="Boosting iterations (trees).")
    learning_rate: float = Field(0.1, gt=0, description="Shrinkage per tree.")
    max_leaf_nodes: int = Field(15, ge=2, description="Leaves per tree.")


def build(name: ClassifierName, config: Any, seed: int):
    """An unfitted estimator for classifier `name` with its sub-config."""
    if name == "ngram":
        # scikit-learn takes seconds to import, and loading a spec imports this module (the quality configs)
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.linear_model import SGDClassifier
        from sklearn.pipeline import make_pipeline, make_union

        def vec(analyzer: str, ngrams: tuple[int, int]) -> HashingVectorizer:
            return HashingVectorizer(analyzer=analyzer, ngram_range=ngrams, n_features=config.n_features, alternate_sign=False)

        return make_pipeline(
            make_union(vec("word", config.word_ngrams), vec("char_wb", config.char_ngrams)),
            SGDClassifier(loss="log_loss", alpha=config.alpha, max_iter=config.epochs, tol=None, random_state=seed),
        )
    if name == "embedding":
        from sklearn.linear_model import LogisticRegression  # see "ngram"

        return LogisticRegression(C=config.C, max_iter=1000)
    if name == "features":
        from sklearn.ensemble import HistGradientBoostingClassifier  # see "ngram"

        return HistGradientBoostingClassifier(
            max_iter=config.max_iter, learning_rate=config.learning_rate, max_leaf_nodes=config.max_leaf_nodes, random_state=seed
        )
    raise ValueError(f"unknown classifier {name!r}")


class Inputs:
    """Each classifier's input for one list of texts, computed once (embeddings are the expensive one)."""

    def __init__(self, texts: Sequence[str], encoder: EmbeddingConfig):
        self.texts = list(texts)
        self._encoder = encoder
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: ClassifierName) -> Any:
        if name not in self._cache:
            if name == "ngram":
                self._cache[name] = self.texts
            elif name == "embedding":
                self._cache[name] = embed(self.texts, self._encoder)  # (n, 384)
            elif name == "features":
                self._cache[name] = feature_matrix(self.texts)  # (n, n_features)
            else:
                raise ValueError(f"unknown classifier {name!r}")
        return self._cache[name]


def raw_scores(estimator: Any, x: Any) -> np.ndarray:
    """Log-odds that each input is reference quality: (n,) float64."""
    return np.asarray(estimator.decision_function(x), dtype=np.float64).reshape(-1)
