"""The quality stage: train the Nemotron-CC quality-classifier ensemble as its own versioned artifact.

Reference-quality text (the files in `reference`, plus the Python standard library's docstrings) is the
positive class; synthetic junk cut from the same words (`junk.synthesize_junk`) is the negative class. The
classifiers in `train` are fitted on both, scored on a held-out split, and each classifier's percentile grid
is taken over that held-out split (curate re-bases it on its own corpus, see `QualityStep.calibrate_on_corpus`).

Output layout (the contract with curate's optional input "quality"; the folder root IS the ensemble):

    ensemble.json         classifiers, config, percentile grids, tier ranges, package versions, held-out metrics
    <classifier>.skops    one fitted scikit-learn estimator per classifier (ngram, embedding, features)
    tiers.png             held-out reference vs junk documents per quality tier
    math/                 the math quality classifier curate scores math pages with (`factory.curate.math.classifier`)

Runs on its own as

    from factory.stages.quality.stage import Config, run
    run(Config(reference=["docs/"]), {}, Path("quality-model"), StepContext("quality"))
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

from factory.curate.math.classifier import FOLDER, train_math_classifier
from factory.curate.quality.ensemble import N_TIERS, TIER_NAMES, train_ensemble
from factory.curate.quality.junk import synthesize_junk
from factory.curate.quality.reference_text import read_reference_texts, stdlib_docstrings
from factory.errors import InputError
from factory.stage import Artifact, StepContext
from factory.stages.quality.config import MIN_REFERENCE_DOCS, Config


def reference_texts(config: Config) -> list[str]:
    """The positive documents: `reference` files first, then stdlib docstrings, at most `max_reference_docs`."""
    try:
        positives = read_reference_texts(config.reference)
    except InputError as e:
        raise InputError(f"stages.quality.reference: {e}") from None
    if config.stdlib_reference:
        positives += stdlib_docstrings()
    positives = positives[: config.max_reference_docs]
    if len(positives) < MIN_REFERENCE_DOCS:
        raise InputError(
            f"stages.quality.reference: only {len(positives)} reference documents of 50+ words, at least "
            f"{MIN_REFERENCE_DOCS} needed (give more text files, or set stages.quality.stdlib_reference: true)")
    return positives


def plot_heldout_tiers(metrics: Mapping[str, float], path: Path) -> None:
    """Grouped bars: held-out reference (positive) and junk (negative) documents per quality tier."""
    x = np.arange(N_TIERS)
    fig = Figure(figsize=(6.5, 3.5))  # no pyplot: no global figure state, no display
    ax = fig.subplots()
    for offset, label, name, color in ((-0.2, "positives", "reference", "#4c72b0"), (0.2, "negatives", "junk", "#dd8452")):
        counts = [metrics[f"tier{t}_{label}"] for t in range(N_TIERS)]
        ax.bar(x + offset, counts, width=0.4, label=f"{name} (held out)", color=color)
    ax.set_xticks(x, [f"{t}\n{TIER_NAMES[t]}" for t in range(N_TIERS)])
    ax.set_ylabel("documents")
    ax.set_title(f"Held-out documents by quality tier (ensemble AUC {metrics['ensemble_auc']:.3f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: same counts, same bytes


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Train the ensemble into `output` (ensemble.json + <classifier>.skops) and return held-out metrics."""
    positives = reference_texts(config)
    negatives = synthesize_junk(len(positives), positives, seed=config.train.seed)
    sources = [*config.reference, *([f"python-stdlib-docstrings:{sys.version_info.major}.{sys.version_info.minor}"]
                                    if config.stdlib_reference else [])]
    # the digest is of the texts trained on, so it covers the stdlib part and the max_reference_docs cut too
    digest = hashlib.sha256("\0".join(positives).encode("utf-8")).hexdigest()
    ctx.log_dataset(name="reference", uri=",".join(sources), digest=f"sha256:{digest}", context="training",
                    profile={"documents": len(positives), "words": sum(len(t.split()) for t in positives),
                             "negatives": len(negatives), "sources": len(sources)})
    ctx.log.info("quality_reference", positives=len(positives), negatives=len(negatives), sources=sources)

    with threadpool_limits(limits=config.threads, user_api="openmp"):
        metrics = train_ensemble(config.train, positives, negatives, output)
        if config.math.enabled:
            metrics |= train_math_classifier(config.math, output / FOLDER)
    metrics = {"reference_docs": float(len(positives)), "junk_docs": float(len(negatives)), **metrics}
    plot_heldout_tiers(metrics, output / "tiers.png")
    ctx.log_artifact(output / "tiers.png")
    ctx.log.info("quality_done", ensemble_auc=round(metrics["ensemble_auc"], 4),
                 mean_tier_positives=round(metrics["mean_tier_positives"], 3),
                 mean_tier_negatives=round(metrics["mean_tier_negatives"], 3))
    return metrics
