"""Quality scoring for the curate stage: an ensemble of classifiers after Nemotron-CC.

Train once from labelled examples (reference-quality text vs synthetic junk), save a versioned artifact
folder, then score documents into 20 buckets and 5 tiers:

    from factory.curate.quality import QualityConfig, QualityEnsemble, train_ensemble
    from factory.curate.quality.reference_text import stdlib_docstrings
    from factory.curate.quality.junk import synthesize_junk
    positives = stdlib_docstrings()
    metrics = train_ensemble(QualityConfig(), positives, synthesize_junk(len(positives), positives), out_dir)
    QualityEnsemble.load(out_dir).score(docs)

In a pipeline this is the `quality` stage (`factory.stages.quality.stage`, artifact KIND "classifier"), whose
artifact curate takes as its optional input "quality".
"""

from factory.curate.quality.ensemble import (
    N_BUCKETS,
    N_TIERS,
    TIER_NAMES,
    QualityConfig,
    QualityEnsemble,
    fit_ensemble,
    train_ensemble,
)

__all__ = ["N_BUCKETS", "N_TIERS", "TIER_NAMES", "QualityConfig", "QualityEnsemble", "fit_ensemble", "train_ensemble"]
