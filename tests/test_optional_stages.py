"""The quality and synth stages in the executor: their own steps, fingerprints, MLflow runs and lineage,
wired into curate and tokenize as optional inputs."""

from __future__ import annotations

import gzip
import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from factory.errors import SpecError
from factory.spec import load_spec, parse_spec
from factory.steps import Executor
from tests.spine import small_spec_data, write_spec
from tests.traced import assert_ran_inside_closures, run_traced
from tests.builders import generator

TINY_QUALITY = {"classifiers": ["ngram", "features"], "ngram": {"n_features": 2**16, "epochs": 5}, "features": {"max_iter": 30}}


def _spec_data(tmp, generator_dir):
    data = small_spec_data(tmp)
    data["stages"] = {
        "quality": {"max_reference_docs": 120, "train": TINY_QUALITY},
        "curate": {**data["stages"]["curate"], "quality": {"enabled": True}},
        # every tier gets the Wikipedia-style rewrite, so a small corpus surely yields synthetic documents
        "synth": {"max_docs": 4, "chunk_size": 300, "min_output_chars": 1, "tasks_by_tier": {t: ["wikipedia"] for t in range(5)},
                  "generation": {"max_new_tokens": 16}, "generator": {"model_dir": str(generator_dir)}},
        "tokenize": data["stages"]["tokenize"],
    }
    return data


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("optional")
    write_spec(tmp)  # the small HTML corpus
    model = generator(tmp / "generator")
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec_data(tmp, model)))
    spec = load_spec(path)
    executor = Executor(spec)
    executor.parent_run_id = executor.lineage.start_pipeline("optional", spec.to_yaml())
    manifests, executor.modules_ran = run_traced(executor)  # quality, curate, synth, tokenize: one step at a time
    executor.lineage.end_pipeline(executor.parent_run_id)
    return tmp, spec, executor, manifests


def test_quality_and_synth_run_only_modules_inside_their_closures(built):
    tmp, spec, executor, manifests = built
    assert set(executor.modules_ran) == {"quality", "curate", "synth", "tokenize"}
    assert_ran_inside_closures(spec, executor.modules_ran)


def test_quality_is_a_versioned_classifier_artifact_with_its_own_run(built):
    tmp, spec, executor, manifests = built
    assert list(manifests) == ["quality", "curate", "synth", "tokenize"]
    quality = manifests["quality"]
    assert quality["kind"] == "classifier"
    assert {"ensemble.json", "ngram.skops", "features.skops"} <= {f["path"] for f in quality["files"]}
    assert quality["metrics"]["ensemble_auc"] > 0.9
    client = MlflowClient(spec.tracking_uri())
    run = client.get_run(quality["producer"]["mlflow_run_id"])
    assert run.data.tags["factory.fingerprint"] == quality["fingerprint"]
    assert run.data.metrics["ensemble_auc"] == pytest.approx(quality["metrics"]["ensemble_auc"])
    versions = client.search_model_versions("name = 'spine-quality'")
    assert [v.source for v in versions] == [quality["uri"]]


def test_curate_scores_with_the_quality_artifact_and_records_it(built):
    tmp, spec, executor, manifests = built
    curate, quality = manifests["curate"], manifests["quality"]
    assert curate["inputs"]["quality"]["fingerprint"] == quality["fingerprint"]
    assert curate["recipe"]["inputs"] == {"quality": quality["fingerprint"]}
    assert [e["stage"] for e in curate["lineage"]] == ["quality"]
    folder = executor.store.materialize(f"curate/{curate['fingerprint'][:16]}")
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["quality_model"]["source"] == "input" and stats["quality_model"]["fingerprint"] == quality["fingerprint"]
    with gzip.open(folder / "documents" / "part-00000.jsonl.gz", "rt") as f:
        tiers = [json.loads(line)["metadata"]["quality_tier"] for line in f]
    assert tiers and all(0 <= t <= 4 for t in tiers)


def test_tokenize_takes_the_synthetic_corpus_as_its_own_dataset(built):
    tmp, spec, executor, manifests = built
    tok, synth = manifests["tokenize"], manifests["synth"]
    assert tok["inputs"]["synthetic"]["fingerprint"] == synth["fingerprint"]
    assert [e["stage"] for e in tok["lineage"]] == ["curate", "quality", "synth"]
    assert synth["metrics"]["docs_out"] >= 1
    paths = {f["path"] for f in tok["files"]}
    assert {"synthetic.bin", "synthetic.idx", "train.bin", "valid.bin"} <= paths
    assert tok["metrics"]["docs_synthetic"] + tok["metrics"]["synthetic_from_valid"] == synth["metrics"]["docs_out"]


def test_a_new_quality_model_reruns_curate_and_what_follows(built):
    tmp, spec, executor, manifests = built
    data = yaml.safe_load((tmp / "spec.yaml").read_text())
    data["stages"]["quality"]["train"]["seed"] = 1
    changed = Executor(parse_spec(data))
    explained = {e.name: e for e in changed.explain()}
    assert explained["quality"].action == "run" and explained["quality"].reasons == ["config train.seed: 0 -> 1"]
    assert explained["curate"].action == "run" and explained["curate"].reasons == ["input quality changed"]
    assert explained["synth"].reasons == ["input corpus changed"]
    assert explained["tokenize"].reasons == ["input corpus changed", "input synthetic changed"]


def test_optional_inputs_are_left_out_when_their_stage_is_absent(built):
    tmp, spec, executor, manifests = built
    data = yaml.safe_load((tmp / "spec.yaml").read_text())
    del data["stages"]["synth"]
    without = parse_spec(data)
    assert without.inputs_of("tokenize") == {"corpus": "curate"}
    plan = Executor(without).plan()
    assert plan["tokenize"].recipe["inputs"] == {"corpus": manifests["curate"]["fingerprint"]}
    assert plan["curate"].fingerprint == manifests["curate"]["fingerprint"]  # curate itself does not change


def test_quality_scoring_without_an_ensemble_names_what_to_add(built):
    tmp, spec, executor, manifests = built
    data = yaml.safe_load((tmp / "spec.yaml").read_text())
    del data["stages"]["quality"]
    with pytest.raises(SpecError, match=r"^stages\.curate: needs stage 'quality'"):
        parse_spec(data)
    data["stages"]["curate"]["quality"] = {"enabled": False}
    assert "quality" not in parse_spec(data).inputs_of("curate")
