"""The executor on the real stages: fingerprints, reuse, reruns for the right reasons, lineage in MLflow."""

from __future__ import annotations

import json

import pytest

from factory.spec import load_spec
from factory.steps import Executor, diff_recipes, fingerprint_of
from tests.spine import write_spec


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One full run of the small spec, shared by the tests below (they only read or add to it)."""
    tmp = tmp_path_factory.mktemp("spine")
    spec = load_spec(write_spec(tmp))
    executor = Executor(spec)
    executor.parent_run_id = executor.lineage.start_pipeline("spine", spec.to_yaml())
    manifests = executor.run()
    executor.lineage.end_pipeline(executor.parent_run_id)
    return tmp, spec, executor, manifests


def test_every_step_is_published_with_a_self_describing_manifest(built):
    tmp, spec, executor, manifests = built
    assert list(manifests) == ["curate", "tokenize", "pretrain", "evaluate", "release"]
    for name, m in manifests.items():
        assert m["stage"] == name
        assert m["fingerprint"] == executor.plan()[name].fingerprint
        assert executor.store.complete(f"{name}/{m['fingerprint'][:16]}") is not None
        assert m["files"] and all(len(f["sha256"]) == 64 for f in m["files"])
        assert m["producer"]["mlflow_run_id"]
    release = manifests["release"]
    # Every ancestor once, nearest first in input order (model, tokens, evaluation).
    assert [e["stage"] for e in release["lineage"]] == ["pretrain", "tokenize", "curate", "evaluate"]
    curate = next(e for e in release["lineage"] if e["stage"] == "curate")
    assert curate["sources"][0]["uri"].endswith("html") and curate["sources"][0]["digest"].startswith("sha256:")
    assert release["inputs"]["model"]["fingerprint"] == manifests["pretrain"]["fingerprint"]


def test_second_run_reuses_every_step(built):
    tmp, spec, _, manifests = built
    again = Executor(load_spec(tmp / "spec.yaml"))
    assert [e.action for e in again.explain()] == ["reuse"] * 5
    second = again.run()
    for name in manifests:
        # Same artifact, produced by the first run's MLflow run: nothing was rebuilt.
        assert second[name]["producer"]["mlflow_run_id"] == manifests[name]["producer"]["mlflow_run_id"]


def test_no_effect_field_keeps_fingerprint(built):
    tmp, _, executor, _ = built
    changed = Executor(load_spec(write_spec(tmp, pretrain={"log_interval": 1})))
    assert changed.plan()["pretrain"].fingerprint == executor.plan()["pretrain"].fingerprint
    write_spec(tmp)  # restore


def test_config_change_reruns_that_stage_and_dependents_only(built):
    tmp, _, executor, _ = built
    changed = Executor(load_spec(write_spec(tmp, evaluate={"max_new_tokens": 4})))
    explained = {e.name: e for e in changed.explain()}
    assert [explained[n].action for n in ("curate", "tokenize", "pretrain")] == ["reuse"] * 3
    assert explained["evaluate"].action == "run"
    assert "config max_new_tokens: 8 -> 4" in explained["evaluate"].reasons
    assert explained["release"].action == "run"
    assert explained["release"].reasons == ["input evaluation changed"]
    write_spec(tmp)


def test_lineage_in_mlflow(built):
    _, spec, executor, manifests = built
    client = executor.lineage.client
    parent = client.get_run(executor.parent_run_id)
    children = client.search_runs([executor.lineage.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{executor.parent_run_id}'")
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.tags["factory.stage"] for r in children) == sorted(manifests)
    pre = next(r for r in children if r.data.tags["factory.stage"] == "pretrain")
    assert pre.data.tags["factory.fingerprint"] == manifests["pretrain"]["fingerprint"]
    assert pre.data.tags["factory.artifact_uri"] == manifests["pretrain"]["uri"]
    assert pre.data.params["steps"] == "12"
    assert "final_loss" in pre.data.metrics
    datasets = {d.dataset.name: d for d in pre.inputs.dataset_inputs}
    assert "tokens:tokenize" in datasets  # logged by the executor for every input
    assert datasets["tokens:tokenize"].dataset.digest == manifests["tokenize"]["fingerprint"][:36]
    versions = client.search_model_versions("name = 'spine-pretrain'")
    assert versions and versions[0].source == manifests["pretrain"]["uri"]


def test_recipe_diff_and_fingerprint_are_stable():
    a = {"stage": "x", "config": {"lr": 1, "opt": {"b": 2}}, "inputs": {"i": "f1"}, "sources": {}, "code": "c"}
    b = {**a, "config": {"lr": 1, "opt": {"b": 3}}, "inputs": {"i": "f2"}}
    assert diff_recipes(a, b) == ["config opt.b: 2 -> 3", "input i changed"]
    assert fingerprint_of(a) == fingerprint_of(json.loads(json.dumps(a)))
    assert fingerprint_of(a) != fingerprint_of(b)


def test_fingerprints_survive_a_json_round_trip_of_the_spec(tmp_path):
    """KFP steps get the spec as JSON: every stage must plan the same fingerprint from it."""
    from factory.spec import parse_spec

    spec = load_spec(write_spec(tmp_path))  # paths in this spec are absolute already
    again = parse_spec(json.loads(spec.model_dump_json()))
    assert {n: s.fingerprint for n, s in Executor(spec).plan().items()} == {n: s.fingerprint for n, s in Executor(again).plan().items()}
