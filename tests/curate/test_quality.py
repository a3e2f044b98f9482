"""Quality ensemble: reference text outscores junk on held-out data, per tier; the artifact round-trips."""

import json
import shutil

import numpy as np
import pytest
from datatrove.data import Document
from pydantic import ValidationError

from factory.embedding import EmbeddingConfig
from factory.curate.quality import QualityConfig, QualityEnsemble, fit_ensemble, train_ensemble
from factory.curate.quality.classifiers import EmbeddingClassifierConfig, FeaturesClassifierConfig, NgramClassifierConfig
from factory.curate.quality.ensemble import bucket_of, percentile_of, tier_of
from factory.curate.quality.junk import KINDS, synthesize_junk
from factory.curate.quality.reference_text import read_reference_texts, stdlib_docstrings
from factory.errors import InputError

# small and quick: shorter embedding window, fewer trees, fewer hash buckets
TINY = QualityConfig(
    ngram=NgramClassifierConfig(n_features=2**18),
    embedding=EmbeddingClassifierConfig(encoder=EmbeddingConfig(max_tokens=64)),
    features=FeaturesClassifierConfig(max_iter=50),
)


@pytest.fixture(scope="module")
def data():
    docs = stdlib_docstrings(min_words=60, max_words=150)
    train_pos, test_pos = docs[:80], docs[-30:]  # disjoint docstrings
    return {
        "train_pos": train_pos,
        "train_neg": synthesize_junk(80, train_pos, seed=1),
        "test_pos": test_pos,
        "test_neg": synthesize_junk(30, test_pos, seed=2),
    }


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    ensemble, metrics = fit_ensemble(TINY, data["train_pos"], data["train_neg"])
    out = tmp_path_factory.mktemp("quality-model")
    ensemble.save(out)
    return ensemble, metrics, out


def test_reference_text_scores_higher_than_junk_per_tier(data, trained):
    ensemble, metrics, _ = trained
    assert metrics["ensemble_auc"] > 0.8
    assert all(metrics[f"{name}_auc"] > 0.7 for name in TINY.classifiers)
    assert metrics["mean_tier_positives"] > metrics["mean_tier_negatives"]

    pos, neg = ensemble.score_texts(data["test_pos"]), ensemble.score_texts(data["test_neg"])
    pos_tiers = np.bincount(pos["quality_tier"], minlength=5)
    neg_tiers = np.bincount(neg["quality_tier"], minlength=5)
    print("\ntier  reference  junk")
    for t in range(5):
        print(f"{t:>4}  {pos_tiers[t]:>9}  {neg_tiers[t]:>4}")
    print(f"mean score {pos['quality_score'].mean():.3f} vs {neg['quality_score'].mean():.3f}; "
          f"mean tier {pos['quality_tier'].mean():.2f} vs {neg['quality_tier'].mean():.2f}")
    assert pos["quality_score"].mean() > neg["quality_score"].mean() + 0.2
    assert pos["quality_tier"].mean() > neg["quality_tier"].mean() + 1.0
    assert pos_tiers[4] > neg_tiers[4] and pos_tiers[:2].sum() < neg_tiers[:2].sum()
    for name in TINY.classifiers:  # every member alone also ranks reference above junk
        assert pos[f"quality_{name}"].mean() > neg[f"quality_{name}"].mean()


def test_artifact_round_trips(data, trained, tmp_path):
    ensemble, _, out = trained
    assert sorted(p.name for p in out.iterdir()) == ["embedding.skops", "ensemble.json", "features.skops", "ngram.skops"]
    manifest = json.loads((out / "ensemble.json").read_text())
    assert manifest["tiers"] == {"low": [0, 3], "medium-low": [4, 7], "medium": [8, 11], "medium-high": [12, 15], "high": [16, 19]}
    assert all(len(manifest["percentiles"][n]) == 101 for n in TINY.classifiers)

    texts = data["test_pos"][:3] + data["test_neg"][:3]
    before = ensemble.score_texts(texts)
    loaded = QualityEnsemble.load(out)
    assert loaded.config == TINY
    after = loaded.score_texts(texts)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)

    loaded.save(tmp_path / "again")  # and a second generation scores the same
    np.testing.assert_array_equal(QualityEnsemble.load(tmp_path / "again").score_texts(texts)["quality_score"], before["quality_score"])


def test_score_writes_document_metadata(data, trained):
    ensemble, _, _ = trained
    docs = [Document(text=t, id=str(i), metadata={"url": "x"}) for i, t in enumerate(data["test_pos"][:3] + data["test_neg"][:3])]
    assert ensemble.score(docs) == docs
    assert ensemble.score([("r1", data["test_pos"][0])])[0].metadata["quality_score"] == docs[0].metadata["quality_score"]
    for doc in docs:
        m = doc.metadata
        assert m["url"] == "x"
        assert isinstance(m["quality_bucket"], int) and 0 <= m["quality_bucket"] <= 19
        assert m["quality_tier"] == sum(m["quality_bucket"] >= b for b in TINY.tier_bounds)
        assert m["quality_bucket"] == max(m[f"quality_{n}_bucket"] for n in TINY.classifiers)
        assert 0.0 <= m["quality_score"] <= 1.0 and all(0.0 <= m[f"quality_{n}"] <= 1.0 for n in TINY.classifiers)


def test_train_ensemble_writes_a_loadable_folder(data, tmp_path):
    config = TINY.model_copy(update={"classifiers": ("features",)})
    metrics = train_ensemble(config, data["train_pos"], data["train_neg"], tmp_path / "m", reference=data["test_pos"] + data["test_neg"])
    manifest = json.loads((tmp_path / "m" / "ensemble.json").read_text())
    assert manifest["training"] == {"positives": 80, "negatives": 80, "reference": "given"}
    assert manifest["metrics"] == metrics and metrics["features_auc"] > 0.9
    assert QualityEnsemble.load(tmp_path / "m").config.classifiers == ("features",)


def test_percentile_buckets_and_tiers():
    grid = np.percentile(np.arange(1001) / 10, np.linspace(0, 100, 101))  # reference scores 0..100: grid[q] = q
    scores = np.array([-1.0, 0.0, 4.99, 5.0, 50.0, 94.9, 95.0, 100.0, 1e9])
    np.testing.assert_allclose(percentile_of(scores, grid), [0, 0, 0.04, 0.05, 0.5, 0.94, 0.95, 1.0, 1.0])
    np.testing.assert_array_equal(bucket_of(percentile_of(scores, grid)), [0, 0, 0, 1, 10, 18, 19, 19, 19])
    np.testing.assert_array_equal(tier_of(np.arange(20), (4, 8, 12, 16)), np.repeat(np.arange(5), 4))


def test_bad_config_and_bad_folder(tmp_path):
    with pytest.raises(ValidationError, match="tier_bounds"):
        QualityConfig(tier_bounds=(4, 4, 12, 16))
    with pytest.raises(ValidationError, match="classifiers"):
        QualityConfig(classifiers=("ngram", "ngram"))
    with pytest.raises(InputError, match="ensemble.json"):
        QualityEnsemble.load(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        read_reference_texts([tmp_path / "nowhere"])


def test_reference_reader_and_junk(tmp_path):
    para = "The quick brown fox jumps over the lazy dog near the river bank in the morning. " * 4
    (tmp_path / "a.txt").write_text("\n\n".join([para] * 6))
    (tmp_path / "b.html").write_text(f"<html><body><article><p>{para}</p><p>{para}</p></article></body></html>")
    (tmp_path / "c.bin").write_bytes(b"\x00\x01")
    docs = read_reference_texts([tmp_path], min_words=50, max_words=200)
    assert len(docs) == 3 and all(50 <= len(d.split()) <= 200 for d in docs)
    junk = synthesize_junk(10, ["alpha beta gamma delta " * 20], seed=0)
    assert len(junk) == 10 and len(set(junk)) == 10 and synthesize_junk(10, ["alpha beta gamma delta " * 20], seed=0) == junk
    assert len(KINDS) == 5


def test_an_ensemble_saved_with_the_old_enabled_switch_still_loads(trained, tmp_path):
    _, _, out = trained
    shutil.copytree(out, tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "ensemble.json").read_text())
    manifest["config"]["enabled"] = True  # QualityConfig had a switch that did nothing; saved folders carry it
    (tmp_path / "old" / "ensemble.json").write_text(json.dumps(manifest))
    assert QualityEnsemble.load(tmp_path / "old").config == TINY
