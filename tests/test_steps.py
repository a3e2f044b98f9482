"""The executor on the real stages: fingerprints, reuse, reruns for the right reasons, lineage in MLflow."""

from __future__ import annotations

import json

import pytest

from factory.errors import UserError
from factory.kinds import KINDS
from factory.lineage import chain
from factory.spec import load_spec, parse_spec
from factory.steps import Executor, diff_recipes, fingerprint_of
from tests.spine import small_spec_data, write_spec
from tests.traced import assert_ran_inside_closures, run_traced


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One full run of the small spec, shared by the tests below (they only read or add to it)."""
    tmp = tmp_path_factory.mktemp("spine")
    spec = load_spec(write_spec(tmp))
    executor = Executor(spec)
    executor.parent_run_id = executor.lineage.start_pipeline("spine", spec.to_yaml())
    manifests, ran = run_traced(executor)
    executor.lineage.end_pipeline(executor.parent_run_id)
    executor.modules_ran = ran
    return tmp, spec, executor, manifests


def test_every_module_a_stage_runs_is_in_its_kinds_import_closure(built):
    """The code version hashes the kind's static import closure: whatever the stage really ran must be in it,
    or an edit to that module would reuse a stale artifact."""
    _, spec, executor, _ = built
    assert set(executor.modules_ran) == {"curate", "tokenize", "pretrain", "evaluate", "release"}
    assert_ran_inside_closures(spec, executor.modules_ran)


def test_every_step_is_published_with_a_self_describing_manifest(built):
    tmp, spec, executor, manifests = built
    assert list(manifests) == ["curate", "tokenize", "pretrain", "evaluate", "release"]
    for name, m in manifests.items():
        assert m["stage"] == name and m["stage_kind"] == name and m["kind"] == KINDS[name].output
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


def test_a_library_version_change_reruns_exactly_the_steps_that_call_it(built, monkeypatch):
    """Nothing is upgraded: the version lookup answers 5.25.0 for transformers, as a fresh install would have."""
    from factory import code_version

    tmp, spec, executor, _ = built
    real = code_version.installed_version
    monkeypatch.setattr(code_version, "installed_version", lambda d: "5.25.0" if d == "transformers" else real(d))
    explained = {e.name: e for e in Executor(spec).explain()}
    uses = {name for name in explained
            if "transformers" in code_version.libraries(KINDS[spec.kind_of(name)].run_module)}
    assert {"pretrain", "evaluate", "release"} <= uses
    assert {n for n, e in explained.items() if e.action == "run"} == uses  # exactly the steps that call it
    assert f"transformers {real('transformers')} -> 5.25.0" in explained["pretrain"].reasons
    manifest = executor.store.complete(executor.plan()["pretrain"].key)
    assert manifest["recipe"]["libraries"]["transformers"] == real("transformers")  # the manifest says what made it
    # a library only curation calls reruns curate and what is downstream of it, not a step that never calls it
    monkeypatch.setattr(code_version, "installed_version", lambda d: "0.99.0" if d == "datatrove" else real(d))
    explained = {e.name: e for e in Executor(spec).explain()}
    assert "datatrove" not in code_version.libraries(KINDS["pretrain"].run_module)
    assert explained["curate"].action == "run" and f"datatrove {real('datatrove')} -> 0.99.0" in explained["curate"].reasons
    assert not any("datatrove" in r for r in explained["pretrain"].reasons)  # pretrain reruns only for its input
    # a spec can relax it: major.minor only, or not at all
    relaxed = parse_spec({**spec.model_dump(mode="json", exclude_none=True), "fingerprint": {"libraries": "none"}})
    assert all(e.action == "run" for e in Executor(relaxed).explain())  # other fingerprints than the published ones
    assert Executor(relaxed).plan()["pretrain"].recipe["libraries"] == {}


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
    # no metric is logged twice: a summary once, a curve once per step
    for run in children:
        for key in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert len(steps) == len(set(steps)), (run.data.tags["factory.stage"], key, steps)
    # what ran, library by library, on every step run
    assert pre.data.tags["lib.transformers"] and "lib.torch" in pre.data.tags


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


def test_the_plan_travels_as_json_and_a_step_uses_it_without_reading_raw_inputs(built, monkeypatch):
    tmp, spec, executor, manifests = built
    text = executor.plan_json()
    import factory.steps

    def no_reading(*a, **k):
        raise AssertionError("a step re-read raw inputs although the pipeline carried the plan")

    monkeypatch.setattr(factory.steps, "source_digests", no_reading)
    step = Executor(spec, plan_json=text)
    assert {n: s.fingerprint for n, s in step.plan().items()} == {n: m["fingerprint"] for n, m in manifests.items()}
    assert step.run_step("tokenize")["producer"]["mlflow_run_id"] == manifests["tokenize"]["producer"]["mlflow_run_id"]
    other = parse_spec({**spec.model_dump(mode="json"), "stages": {**spec.model_dump(mode="json")["stages"],
                                                                  "evaluate": {**spec.stages.evaluate.model_dump(mode="json"), "seed": 7}}})
    with pytest.raises(UserError, match="plan: step evaluate was planned for another spec"):
        Executor(other, plan_json=text).plan()


def named_steps(tmp, eval_short: dict) -> dict:
    """The small spec written as named steps, plus a second evaluate step that release takes its table from."""
    data = small_spec_data(tmp)
    stages = data.pop("stages")
    data["steps"] = {
        "curate": {"kind": "curate", "config": stages["curate"]},
        "tokenize": {"kind": "tokenize", "config": stages["tokenize"], "inputs": {"corpus": "curate"}},
        "pretrain": {"kind": "pretrain", "config": stages["pretrain"], "inputs": {"tokens": "tokenize"}},
        "evaluate": {"kind": "evaluate", "config": stages["evaluate"], "inputs": {"model": "pretrain", "tokens": "tokenize"}},
        "eval_short": {"kind": "evaluate", "config": {**stages["evaluate"], **eval_short},
                       "inputs": {"model": "pretrain", "tokens": "tokenize", "baseline": "evaluate"}},
        "release": {"kind": "release", "config": stages["release"], "inputs": {"model": "pretrain", "tokens": "tokenize", "evaluation": "eval_short"}},
    }
    return data


def test_two_steps_of_one_kind_run_side_by_side(built):
    tmp, _, executor, manifests = built
    # eval_short's gate compares with the evaluate step's metric (same model, same data: the same perplexity)
    gate = "valid_perplexity <= 1.000001 * evaluate.valid_perplexity"
    named = Executor(parse_spec(named_steps(tmp, {"max_new_tokens": 2, "prompts": ["The history"], "gates": [gate]})))
    # Same kinds, configs and inputs as the `stages:` run: those steps are the same artifacts.
    assert {e.name: e.action for e in named.explain()} == {
        "curate": "reuse", "tokenize": "reuse", "pretrain": "reuse", "evaluate": "reuse", "eval_short": "run", "release": "run"}
    named.parent_run_id = named.lineage.start_pipeline("spine-named", "named")
    out = named.run(["release"])
    named.lineage.end_pipeline(named.parent_run_id)
    short = out["eval_short"]
    assert short["stage"] == "eval_short" and short["stage_kind"] == "evaluate" and short["kind"] == "evaluation"
    assert short["fingerprint"] != manifests["evaluate"]["fingerprint"]
    assert short["inputs"]["baseline"]["stage"] == "evaluate"
    assert short["metrics"]["valid_perplexity"] == pytest.approx(manifests["evaluate"]["metrics"]["valid_perplexity"])
    assert named.store.complete(f"eval_short/{short['fingerprint'][:16]}") is not None
    release = out["release"]
    assert release["inputs"]["evaluation"]["stage"] == "eval_short"
    assert [e["stage"] for e in chain(release)] == ["release", "pretrain", "tokenize", "curate", "eval_short", "evaluate"]
    client = named.lineage.client
    runs = client.search_runs([named.lineage.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{named.parent_run_id}'")
    assert {r.info.run_name for r in runs} >= {"eval_short", "release"}
    assert client.search_model_versions("name = 'spine-release'")[0].source == release["uri"]
