"""The quality stage (the classifier ensemble as its own artifact) run for real on a tiny config, and curate
scoring with it: as the optional input "quality", recalibrated on the corpus, or missing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from factory.stages.curate import Config as CurateConfig
from factory.stages.curate import run as curate
from factory.curate.quality import QualityConfig, QualityEnsemble
from factory.curate.quality.ensemble import PERCENTILES
from factory.curate.quality.reference_text import stdlib_docstrings
from factory.stages.quality.stage import Config, run
from factory.errors import InputError
from factory.stage import Artifact, NullTracker, StepContext

# fast settings: the two cheap classifiers, few hash buckets, few epochs and trees
TINY = {"classifiers": ["ngram", "features"], "ngram": {"n_features": 2**16, "epochs": 5}, "features": {"max_iter": 30}}
CONFIG = Config(train=TINY, max_reference_docs=120, math={"sympy_docs": 40, "generated_docs": 30})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    ctx = StepContext("quality", tracker=NullTracker())
    metrics = run(CONFIG, {}, out, ctx)
    return {"out": out, "metrics": metrics, "tracker": ctx.tracker}


def test_artifact_is_a_loadable_ensemble_with_sane_metrics(trained):
    out, metrics, tracker = trained["out"], trained["metrics"], trained["tracker"]
    assert sorted(p.name for p in out.iterdir()) == ["ensemble.json", "features.skops", "math", "ngram.skops", "tiers.png"]
    ensemble = QualityEnsemble.load(out)
    assert ensemble.config == QualityConfig.model_validate(TINY)
    assert json.loads((out / "ensemble.json").read_text())["training"] == {"positives": 120, "negatives": 120, "reference": "heldout"}

    # stdlib docstrings against synthetic junk: easy to tell apart, and tiers order them
    assert metrics["ensemble_auc"] > 0.9 and metrics["features_auc"] > 0.9 and metrics["ngram_auc"] > 0.8
    assert metrics["mean_tier_positives"] > metrics["mean_tier_negatives"] + 1.0
    assert metrics["reference_docs"] == metrics["junk_docs"] == 120
    for label in ("positives", "negatives"):  # 20% of 120 held out per class, every one in some tier
        assert sum(metrics[f"tier{t}_{label}"] for t in range(5)) == metrics[f"heldout_{label}"] == 24
    assert all(isinstance(v, float) for v in metrics.values())

    assert tracker.metrics == []  # the stage returns its metrics; the executor logs them, once
    assert tracker.artifacts == [out / "tiers.png"] and (out / "tiers.png").read_bytes()[:4] == b"\x89PNG"
    [dataset] = tracker.datasets
    assert dataset["name"] == "reference" and dataset["context"] == "training"
    assert dataset["uri"].startswith("python-stdlib-docstrings:") and dataset["digest"].startswith("sha256:")
    assert dataset["profile"]["documents"] == 120


def test_same_config_same_ensemble(trained, tmp_path):
    for seed, same in ((0, True), (1, False)):
        out = tmp_path / f"seed{seed}"
        out.mkdir()
        run(CONFIG.model_copy(update={"train": CONFIG.train.model_copy(update={"seed": seed})}), {}, out, StepContext("quality"))
        assert ((out / "ensemble.json").read_bytes() == (trained["out"] / "ensemble.json").read_bytes()) is same


def test_reference_problems_name_the_field(tmp_path):
    with pytest.raises(InputError, match=r"stages\.quality\.reference: .*nowhere.* does not exist"):
        run(Config(reference=[str(tmp_path / "nowhere")]), {}, tmp_path, StepContext("quality"))
    (tmp_path / "one.txt").write_text("A single paragraph of reference text that is long enough to count. " * 8)
    with pytest.raises(InputError, match=r"stages\.quality\.reference: only 1 reference documents"):
        run(Config(reference=[str(tmp_path / "one.txt")], stdlib_reference=False), {}, tmp_path, StepContext("quality"))
    assert Config.external_fields() == ["reference"]
    assert "threads" not in Config().result_fields()


class _Length:
    """A stand-in classifier whose raw score is the text's length, so percentiles are known exactly."""

    def decision_function(self, texts):
        return np.array([len(t) for t in texts], dtype=np.float64)


def test_recalibrated_puts_corpus_percentiles_in_the_grids():
    config = QualityConfig(classifiers=("ngram",))
    ensemble = QualityEnsemble(config, {"ngram": _Length()}, {"ngram": np.arange(101) * 10.0})
    corpus = ["x" * n for n in range(101)]  # raw scores 0..100: the q-th percentile is q
    again = ensemble.recalibrated(corpus)
    np.testing.assert_allclose(again.grids["ngram"], np.arange(101.0), rtol=1e-12)  # (101,), up to float rounding
    np.testing.assert_array_equal(ensemble.grids["ngram"], np.arange(101) * 10.0)  # the original is untouched
    assert again.estimators["ngram"] is ensemble.estimators["ngram"]
    # a 50-character text: the 5th percentile of the trained grid, the 50th of the corpus (bucket 10, tier 2)
    before, after = ensemble.score_texts(["x" * 50]), again.score_texts(["x" * 50])
    assert (before["quality_score"][0], before["quality_bucket"][0]) == (0.05, 1)
    assert (after["quality_score"][0], after["quality_bucket"][0], after["quality_tier"][0]) == (0.5, 10, 2)
    # quantiles interpolate between corpus scores, as np.percentile does
    np.testing.assert_allclose(ensemble.recalibrated(["", "xxxx"]).grids["ngram"], PERCENTILES * 4 / 100)
    with pytest.raises(ValueError, match="no texts"):
        ensemble.recalibrated([])


def _corpus(folder: Path, n: int = 12) -> Path:
    """A JSONL source of plain prose (no extraction step) that curate keeps whole with its filters off."""
    folder.mkdir()
    with gzip.open(folder / "docs.jsonl.gz", "wt") as f:
        for i, text in enumerate(stdlib_docstrings(n_docs=n, min_words=60, seed=7)):
            f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    return folder


def _curate(sources: Path, out: Path, inputs: dict, **quality) -> tuple[dict, list[dict]]:
    config = CurateConfig(sources=[str(sources)], gopher_quality={"enabled": False}, gopher_repetition={"enabled": False},
                          fuzzy_dedup={"enabled": False}, decontamination={"enabled": False}, min_language_score=0.0,
                          quality={"enabled": True, **quality})
    out.mkdir()
    curate(config, inputs, out, StepContext("curate"))
    with gzip.open(out / "documents" / "part-00000.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    return json.loads((out / "stats.json").read_text()), rows


def test_curate_scores_with_the_quality_input(trained, tmp_path, monkeypatch):
    from factory.stages.curate import stage as pipeline

    sources = _corpus(tmp_path / "in")
    art = Artifact(trained["out"], {"fingerprint": "f" * 64, "uri": "store://quality/ffff"})
    stats, rows = _curate(sources, tmp_path / "kept", {"quality": art})
    assert stats["removed"] == {"extraction": 0, "math_filters": 0, "language": 0, "exact_dedup": 0, "math_classifier": 0,
                                "quality": 0}, stats["removed"]
    assert len(rows) == 12 and stats["tiers"] == {str(t): sum(r["metadata"]["quality_tier"] == t for r in rows) for t in range(5)}
    assert stats["quality_model"] == {"source": "input", "uri": "store://quality/ffff", "fingerprint": "f" * 64,
                                      "calibration": "ensemble"}  # 12 documents: too few to recalibrate on
    # the ensemble's own grids: the same scores as the artifact gives on its own
    expected = QualityEnsemble.load(trained["out"]).score_texts([r["text"] for r in rows])
    assert [r["metadata"]["quality_bucket"] for r in rows] == expected["quality_bucket"].tolist()
    assert [r["metadata"]["quality_tier"] for r in rows] == expected["quality_tier"].tolist()

    # on a corpus big enough, each classifier's buckets are the corpus' own percentiles: they span 0..19
    monkeypatch.setattr(pipeline, "MIN_CALIBRATION_DOCS", 10)
    stats, rows = _curate(sources, tmp_path / "calibrated", {"quality": art})
    assert stats["quality_model"]["calibration"] == "corpus"
    for name in ("ngram", "features"):
        buckets = [r["metadata"][f"quality_{name}_bucket"] for r in rows]
        assert (min(buckets), max(buckets)) == (0, 19), name
    stats, _ = _curate(sources, tmp_path / "off", {"quality": art}, calibrate_on_corpus=False)
    assert stats["quality_model"]["calibration"] == "ensemble"


def test_quality_without_an_ensemble_names_both_ways(tmp_path):
    sources, out = _corpus(tmp_path / "in", n=1), tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match=r"stages\.curate\.quality: enabled, but there is no ensemble: add a `quality` "
                                         r"stage to the spec or set stages\.curate\.quality_model"):
        curate(CurateConfig(sources=[str(sources)], quality={"enabled": True}), {}, out, StepContext("curate"))
    assert not any(out.iterdir())  # failed before the per-page work, nothing written


def test_curate_validator_rejects_settings_that_would_do_nothing():
    with pytest.raises(ValueError, match="min_tier .* needs quality.enabled"):
        CurateConfig(sources=["x"], quality={"min_tier": 2})
    with pytest.raises(ValueError, match="quality_model is set but quality.enabled is false"):
        CurateConfig(sources=["x"], quality_model="m")
    CurateConfig(sources=["x"], quality={"enabled": True})  # the ensemble may come from the spec's quality stage
