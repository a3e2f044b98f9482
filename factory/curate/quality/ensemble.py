"""Quality-classifier ensemble after Nemotron-CC: several classifiers, percentile buckets, max, tiers.

Nemotron-CC scores every document with several quality classifiers, turns each classifier's score into an
integer 0-19 by its percentile in the corpus' score distribution, and takes the maximum over classifiers as
the document's quality bucket: a document any one classifier rates highly survives, which raises recall of
high-quality text over a single classifier. Buckets are grouped into 5 quality tiers for blending.

Here (per document, from classifier raw scores s_c):
    p_c      = the largest reference percentile (0.00, 0.01, ..., 1.00) whose score is <= s_c
    bucket_c = min(19, floor(20 * p_c))                    # 0..19; bucket b holds percentiles [5b, 5b+5)
    quality_score  = max_c p_c                             # in [0, 1]
    quality_bucket = max_c bucket_c = min(19, floor(20 * quality_score))
    quality_tier   = number of `tier_bounds` <= quality_bucket   # 0..4
With the default `tier_bounds=(4, 8, 12, 16)` the tiers are equal bucket ranges:
    tier 0 "low" 0-3, tier 1 "medium-low" 4-7, tier 2 "medium" 8-11, tier 3 "medium-high" 12-15, tier 4 "high" 16-19.

The reference distribution is the held-out split of the labelled examples unless `train_ensemble` is given
`reference` texts; `QualityEnsemble.recalibrated(corpus_texts)` re-bases a trained ensemble on the corpus it
scores (as Nemotron-CC buckets its own crawl), which the curate stage does by default.

    metrics = train_ensemble(QualityConfig(), positives, negatives, Path("quality-model"))
    ensemble = QualityEnsemble.load(Path("quality-model"))
    ensemble.score(docs)   # writes quality_score, quality_bucket, quality_tier, quality_<classifier> metadata
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document
from pydantic import Field, field_validator

from factory.curate.dedup import Record, as_documents
from factory.curate.estimators import load_estimator, package_version, save_estimator
from factory.curate.quality.classifiers import (
    ClassifierName,
    EmbeddingClassifierConfig,
    FeaturesClassifierConfig,
    Inputs,
    NgramClassifierConfig,
    build,
    raw_scores,
)
from factory.errors import InputError
from factory.logs import get_logger
from factory.stage import StageConfig
from factory.tiers import N_TIERS, TIER_NAMES

log = get_logger("factory.curate.quality")

FORMAT = 1
N_BUCKETS = 20
PERCENTILES = np.linspace(0.0, 100.0, 101)  # the reference quantiles kept per classifier
MANIFEST = "ensemble.json"
# what a saved classifier may contain: scikit-learn estimators and the numpy/scipy values inside them


class QualityConfig(StageConfig):
    """The quality-classifier ensemble: which classifiers, their settings, and how buckets map to tiers."""

    classifiers: tuple[ClassifierName, ...] = Field(
        ("ngram", "embedding", "features"), min_length=1, description="Classifiers in the ensemble (max of their buckets)."
    )
    ngram: NgramClassifierConfig = Field(default_factory=NgramClassifierConfig, description="Hashed n-gram linear model.")
    embedding: EmbeddingClassifierConfig = Field(
        default_factory=EmbeddingClassifierConfig, description="Embedding + logistic-regression model."
    )
    features: FeaturesClassifierConfig = Field(
        default_factory=FeaturesClassifierConfig, description="Gradient boosting on hand features."
    )
    heldout_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of labelled examples held out for metrics.")
    tier_bounds: tuple[int, int, int, int] = Field(
        (4, 8, 12, 16), description="Lowest bucket of tiers 1-4 (tier 0 starts at bucket 0), increasing within 1-19."
    )
    seed: int = Field(0, description="Seed of the train/held-out split and of the classifiers.")

    @field_validator("tier_bounds")
    @classmethod
    def _increasing(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not all(0 < a < b < N_BUCKETS for a, b in zip(v, v[1:])) or not 0 < v[0]:
            raise ValueError(f"must increase strictly within 1..{N_BUCKETS - 1}, got {list(v)}")
        return v

    @field_validator("classifiers")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"lists a classifier twice: {list(v)}")
        return v


def _expit(x: np.ndarray) -> np.ndarray:
    """The logistic function (scipy.special.expit), imported lazily: scipy costs ~0.1 s at spec load."""
    from scipy.special import expit

    return expit(x)


def percentile_of(scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The largest reference percentile (as a fraction) whose score is <= each score: (n,) in [0, 1]."""
    idx = np.searchsorted(grid, scores, side="right") - 1  # -1 when below the reference minimum
    return np.clip(idx, 0, len(grid) - 1) / (len(grid) - 1)


def bucket_of(percentile: np.ndarray) -> np.ndarray:
    """Integer buckets 0..19 of percentiles in [0, 1]."""
    return np.minimum(N_BUCKETS - 1, np.floor(percentile * N_BUCKETS + 1e-9)).astype(np.int64)


def tier_of(bucket: np.ndarray, tier_bounds: Sequence[int]) -> np.ndarray:
    """Tiers 0..4 of buckets: how many tier bounds each bucket reaches."""
    return np.searchsorted(np.asarray(tier_bounds), bucket, side="right").astype(np.int64)


@dataclass
class QualityEnsemble:
    """Fitted classifiers plus each one's reference score quantiles: scores texts and documents."""

    config: QualityConfig
    estimators: dict[str, Any]
    grids: dict[str, np.ndarray]  # classifier -> (101,) raw-score quantiles of the reference distribution

    def score_texts(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Per text: `quality_<name>` (probability) and `quality_<name>_bucket` per classifier, and the
        ensemble's `quality_score`, `quality_bucket`, `quality_tier`; every value a (n,) array."""
        return self.score_inputs(Inputs(texts, self.config.embedding.encoder))

    def score_inputs(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """`score_texts` on classifier inputs already computed (training reuses its held-out embeddings)."""
        out: dict[str, np.ndarray] = {}
        best = np.zeros(len(inputs.texts))
        for name in self.config.classifiers:
            raw = raw_scores(self.estimators[name], inputs[name]) if inputs.texts else np.zeros(0)
            p = percentile_of(raw, self.grids[name])
            out[f"quality_{name}"] = _expit(raw)  # log-odds -> probability
            out[f"quality_{name}_bucket"] = bucket_of(p)
            best = np.maximum(best, p)
        out["quality_score"] = best
        out["quality_bucket"] = bucket_of(best)
        out["quality_tier"] = tier_of(out["quality_bucket"], self.config.tier_bounds)
        return out

    def recalibrated(self, texts: Sequence[str] | Inputs) -> QualityEnsemble:
        """A copy whose percentile grids are each classifier's raw-score quantiles over `texts`.

        Nemotron-CC buckets a crawl by percentiles of that crawl's own scores; an ensemble trained on one
        distribution is re-based on the corpus it scores this way. The classifiers are shared, not copied.
        `texts` may be classifier `Inputs` already computed, so scoring the same texts afterwards reuses them.
        """
        inputs = texts if isinstance(texts, Inputs) else Inputs(texts, self.config.embedding.encoder)
        if not inputs.texts:
            raise ValueError("recalibrated: no texts to take percentiles over")
        grids = {name: np.percentile(raw_scores(self.estimators[name], inputs[name]), PERCENTILES)  # (101,)
                 for name in self.config.classifiers}
        return replace(self, grids=grids)

    def score(self, records: Iterable[Record], inputs: Inputs | None = None) -> list[Document]:
        """Write the scores of `score_texts` into each document's metadata (in place); returns the documents.

        `(id, text)` pairs become new Documents. `inputs`, when given, are the classifier inputs of exactly
        these documents' texts in order (computed once for `recalibrated` and scoring)."""
        docs = as_documents(records)
        if inputs is not None and len(inputs.texts) != len(docs):
            raise ValueError(f"score: {len(inputs.texts)} precomputed inputs for {len(docs)} documents")
        scores = self.score_inputs(inputs) if inputs is not None else self.score_texts([d.text for d in docs])
        for i, doc in enumerate(docs):
            for key, values in scores.items():
                value = values[i]
                doc.metadata[key] = int(value) if np.issubdtype(values.dtype, np.integer) else round(float(value), 6)
        return docs

    def save(self, out_dir: Path, extra: dict[str, Any] | None = None) -> None:
        """Write the artifact folder: one `<classifier>.skops` per classifier and `ensemble.json`."""
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in self.config.classifiers:
            save_estimator(self.estimators[name], out_dir / f"{name}.skops")
        manifest = {
            "format": FORMAT,
            "classifiers": list(self.config.classifiers),
            "config": self.config.model_dump(mode="json"),
            "percentiles": {name: self.grids[name].tolist() for name in self.config.classifiers},
            "tiers": {
                TIER_NAMES[t]: [lo, hi - 1]
                for t, (lo, hi) in enumerate(zip((0, *self.config.tier_bounds), (*self.config.tier_bounds, N_BUCKETS)))
            },
            "versions": {pkg: package_version(pkg) for pkg in ("scikit-learn", "skops", self.config.embedding.encoder.model)},
            **(extra or {}),
        }
        (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> QualityEnsemble:
        """Load an artifact folder written by `save` / `train_ensemble`."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise InputError(f"{manifest_path} not found: not a quality-ensemble folder (train one with train_ensemble)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise InputError(f"{manifest_path}: format {manifest.get('format')!r}, this factory reads {FORMAT}")
        # ensembles saved before the `enabled` switch left QualityConfig (it never did anything) still load
        config = QualityConfig.model_validate({k: v for k, v in manifest["config"].items() if k != "enabled"})
        encoder = config.embedding.encoder.model
        if "embedding" in config.classifiers and manifest.get("versions", {}).get(encoder) != package_version(encoder):
            # the embedding head only makes sense on the encoder it was trained with
            log.warning("quality_encoder_changed", model=encoder, trained_with=manifest.get("versions", {}).get(encoder), installed=package_version(encoder))
        estimators = {name: load_estimator(path / f"{name}.skops", f"the quality-ensemble folder {path}")
                      for name in config.classifiers}
        grids = {name: np.asarray(manifest["percentiles"][name], dtype=np.float64) for name in config.classifiers}
        return cls(config=config, estimators=estimators, grids=grids)



def train_ensemble(
    config: QualityConfig,
    positives: Sequence[str],
    negatives: Sequence[str],
    out_dir: Path,
    reference: Sequence[str] | None = None,
) -> dict[str, float]:
    """Train the ensemble (`fit_ensemble`) and save it as an artifact folder `out_dir`; returns held-out metrics."""
    ensemble, metrics = fit_ensemble(config, positives, negatives, reference)
    ensemble.save(
        out_dir,
        extra={
            "training": {
                "positives": len(positives),
                "negatives": len(negatives),
                "reference": "given" if reference is not None else "heldout",
            },
            "metrics": metrics,
        },
    )
    log.info("quality_ensemble_trained", out_dir=str(out_dir), **{k: round(v, 4) for k, v in metrics.items() if "tier" in k})
    return metrics


def fit_ensemble(
    config: QualityConfig,
    positives: Sequence[str],
    negatives: Sequence[str],
    reference: Sequence[str] | None = None,
) -> tuple[QualityEnsemble, dict[str, float]]:
    """Train every classifier on reference-quality `positives` vs junk `negatives`.

    A stratified `heldout_fraction` of the examples is held out; each classifier's reference score quantiles
    come from `reference` texts when given, else from the held-out texts. Returns flat held-out metrics:
    per-classifier AUC and accuracy, the ensemble's AUC, the mean bucket and tier of each class, and how many
    held-out positives and negatives land in each tier.
    """
    # scikit-learn takes seconds to import, and loading a spec imports this module (the curate and quality configs)
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    if min(len(positives), len(negatives)) < 5:
        raise InputError(f"quality training needs at least 5 positives and 5 negatives, got {len(positives)} and {len(negatives)}")
    texts = list(positives) + list(negatives)
    labels = np.array([1] * len(positives) + [0] * len(negatives))
    train_x, test_x, train_y, test_y = train_test_split(
        texts, labels, test_size=config.heldout_fraction, stratify=labels, random_state=config.seed
    )
    encoder = config.embedding.encoder
    train_in, test_in = Inputs(train_x, encoder), Inputs(test_x, encoder)
    ref_in = test_in if reference is None else Inputs(reference, encoder)

    metrics: dict[str, float] = {}
    estimators = {}
    for name in config.classifiers:
        estimator = build(name, getattr(config, name), config.seed).fit(train_in[name], train_y)
        raw = raw_scores(estimator, test_in[name])
        metrics[f"{name}_auc"] = float(roc_auc_score(test_y, raw))
        metrics[f"{name}_accuracy"] = float(np.mean((raw > 0) == test_y))
        estimators[name] = estimator
        log.info("quality_classifier", classifier=name, auc=round(metrics[f"{name}_auc"], 4))

    # percentile grids over the reference texts: the same re-basing curate applies to its corpus
    ensemble = QualityEnsemble(config=config, estimators=estimators, grids={}).recalibrated(ref_in)
    scored = ensemble.score_inputs(test_in)
    metrics["ensemble_auc"] = float(roc_auc_score(test_y, scored["quality_score"]))
    for label, cls in (("positives", 1), ("negatives", 0)):
        metrics[f"heldout_{label}"] = float(np.sum(test_y == cls))
        metrics[f"mean_bucket_{label}"] = float(np.mean(scored["quality_bucket"][test_y == cls]))
        metrics[f"mean_tier_{label}"] = float(np.mean(scored["quality_tier"][test_y == cls]))
        for t in range(N_TIERS):
            metrics[f"tier{t}_{label}"] = float(np.sum(scored["quality_tier"][test_y == cls] == t))
    return ensemble, metrics

