"""The mix step fanned out (`factory.fanout.mix`): prepare, a ParallelFor of proxy tasks per round, planning tasks,
and the finishing task, called in the order the compiled pipeline runs them, against a real local store and
MLflow. It publishes what the one-process form (`stage.run`, its proxies in a process pool) writes, and a retried
proxy whose loss is in the store is not trained again. The compiled pipeline holds the ParallelFor per round."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import compile_pipeline
from factory.data.domains import domain_corpus
from factory.documents import document_files, read_records, write_parts
from factory.errors import UserError
from factory.fanout import mix as fanout
from factory.spec import parse_spec
from factory.stage import Artifact, NullTracker, StepContext
from factory.stages.mix import stage as mix
from factory.stages.mix.config import Config
from factory.steps import Executor
from tests.stages.mix.test_mix_stage import CONFIG

ROOT = Path(__file__).resolve().parents[2]
SMALL = CONFIG.model_copy(update={"rounds": 2, "proxies_per_round": 3, "workers": 2})


@dataclass
class KfpArtifact:
    """What a KFP artifact is to `factory.orchestrate` (a path and metadata); KFP itself is not needed here."""

    path: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def _spec_data(tmp: Path, config: Config) -> dict[str, Any]:
    (tmp / "html").mkdir(exist_ok=True)
    (tmp / "html" / "a.html").write_text("<html><body><p>Some text.</p></body></html>")
    return {"name": "fan", "work_dir": str(tmp / "work"), "storage": {"root": str(tmp / "store")},
            "steps": {"curate": {"kind": "curate", "config": {"sources": [str(tmp / "html")]}},
                      "mix": {"kind": "mix", "config": config.model_dump(mode="json", exclude_none=True),
                              "inputs": {"corpus": "curate"}}}}


@pytest.fixture(scope="module")
def fanned(tmp_path_factory):
    """The corpus published as the curate step's artifact, the mix step run as its pipeline tasks, and the same
    mix run in one process for comparison."""
    tmp = tmp_path_factory.mktemp("fan")
    data = _spec_data(tmp, SMALL)
    executor = Executor(parse_spec(data))
    curate = executor.plan()["curate"]
    staging = executor.store.staging_dir(curate.key, executor.work_dir)
    write_parts(domain_corpus(12, chars=300), staging / "documents", per_part=20)
    corpus = executor.store.publish(staging, curate.key, {"kind": "corpus", "stage": "curate", "fingerprint": curate.fingerprint})
    spec_text, plan_text = json.dumps(data), executor.plan_json()

    jobs, rounds = fanout.prepare_task(spec_text, "mix", plan_text), []
    for r in range(1, SMALL.rounds + 1):
        assert [(j["round"], j["index"]) for j in jobs] == [(r, i) for i in range(SMALL.proxies_per_round)]
        rounds.append([fanout.work_task(spec_text, "mix", plan_text, job) for job in jobs])  # a ParallelFor
        if r < SMALL.rounds:
            jobs = fanout.round_task(spec_text, "mix", plan_text, r + 1)
    output = KfpArtifact(str(tmp / "artifact.json"))
    manifest = fanout.finish_task("mix", spec_text, "job-1", {"corpus": KfpArtifact(metadata={"fingerprint": curate.fingerprint})},
                                  output, plan_text)

    pool = tmp / "pool"
    pool.mkdir()
    mix.run(SMALL, {"corpus": Artifact(executor.store.materialize(curate.key), corpus)}, pool, StepContext("mix", NullTracker()))
    return {"tmp": tmp, "data": data, "executor": executor, "rounds": rounds, "manifest": manifest, "output": output,
            "published": Path(executor.store.materialize(executor.plan()["mix"].key)), "pool": pool,
            "spec_text": spec_text, "plan_text": plan_text}


def test_the_fanned_out_step_publishes_what_the_process_pool_writes(fanned):
    published, pool = fanned["published"], fanned["pool"]
    for name in ("mixture.json", "blend.json"):
        assert (published / name).read_text() == (pool / name).read_text(), name
    docs = list(read_records(document_files(published), Counter()))
    assert docs == list(read_records(document_files(pool), Counter()))
    summary = json.loads((published / "mixture.json").read_text())
    # every proxy task's loss is the one the search recorded, round by round
    assert [p["loss"] for p in summary["proxies"]] == [round(o["loss"], 6) for r in fanned["rounds"] for o in r]
    assert [p["round"] for p in summary["proxies"]] == [1, 1, 1, 2, 2, 2]
    # published through the executor like any step: its manifest, on the KFP output too, and the work is gone
    manifest = fanned["manifest"]
    assert manifest["fingerprint"] == fanned["executor"].plan()["mix"].fingerprint and manifest["kind"] == "corpus"
    assert fanned["output"].metadata["fingerprint"] == manifest["fingerprint"]
    assert json.loads(Path(fanned["output"].path).read_text())["uri"] == manifest["uri"]
    assert manifest["metrics"]["proxies"] == 6.0
    work = f"{fanned['executor'].plan()['mix'].key}.work"
    assert not (fanned["tmp"] / "store" / work).exists() and not (fanned["tmp"] / "store" / ".staging" / work).exists()


def test_a_retried_proxy_whose_loss_is_stored_is_not_trained_again(tmp_path, monkeypatch):
    data = _spec_data(tmp_path, SMALL)
    executor = Executor(parse_spec(data))
    curate = executor.plan()["curate"]
    staging = executor.store.staging_dir(curate.key, executor.work_dir)
    write_parts(domain_corpus(12, chars=300), staging / "documents", per_part=20)
    executor.store.publish(staging, curate.key, {"kind": "corpus", "stage": "curate", "fingerprint": curate.fingerprint})
    spec_text, plan_text = json.dumps(data), executor.plan_json()
    with pytest.raises(UserError, match="prepare task has not published its datasets"):
        fanout.round_task(spec_text, "mix", plan_text, 2)
    with pytest.raises(UserError, match="no proxy 0 in round 3 .2 rounds of 3."):
        fanout.work_task(spec_text, "mix", plan_text, {"round": 3, "index": 0})
    # the first attempt: round 1 planned, two of its three proxies trained, then the pod was killed
    jobs = fanout.prepare_task(spec_text, "mix", plan_text)
    first = [fanout.work_task(spec_text, "mix", plan_text, job) for job in jobs[:2]]
    work = fanout.RoundStore(executor.store, executor.plan()["mix"].key, executor.work_dir)
    with pytest.raises(UserError, match="proxy 2 of round 1 has no loss"):
        work.losses(1, 3)
    # the pieces are not an artifact: the step is still unbuilt, and the store lists no artifact of it
    assert executor.explain_step(executor.plan()["mix"]).reasons == ["never built"]
    assert executor.store.keys("mix") == []

    def never(job):
        raise AssertionError(f"proxy with seed {job.seed} trained")

    monkeypatch.setattr("factory.stages.mix.proxy_runs.train_proxy", never)
    # the retry: the planning task reads its plan back, the measured proxies return their stored loss
    assert fanout.prepare_task(spec_text, "mix", plan_text) == jobs
    for job, done in zip(jobs[:2], first):
        assert fanout.work_task(spec_text, "mix", plan_text, {**job, "round": 1.0, "index": float(job["index"])}) == done
    with pytest.raises(AssertionError, match="trained"):  # the third was never measured: it trains
        fanout.work_task(spec_text, "mix", plan_text, jobs[2])


def test_a_published_step_runs_no_proxy(fanned):
    spec_text, plan_text = fanned["spec_text"], fanned["plan_text"]
    jobs = fanout.prepare_task(spec_text, "mix", plan_text)
    assert jobs == [{"round": 1, "index": i} for i in range(3)]
    assert fanout.work_task(spec_text, "mix", plan_text, jobs[0]) == {"round": 1, "index": 0, "loss": None}


def _mix_spec(tmp_path: Path, **mix: Any) -> dict:
    data = yaml.safe_load((ROOT / "examples" / "smoke.yaml").read_text())
    data["stages"]["mix"] = {"clusters": 8, "super_clusters": 3, **mix}
    data["resources"]["mix"] = {"cpu": "1", "memory": "2G"}
    return data


def test_the_compiled_pipeline_runs_a_parallel_for_per_round(tmp_path):
    ir, platform = yaml.safe_load_all(compile_pipeline(parse_spec(_mix_spec(tmp_path, proxy_pods=4)), tmp_path / "p.yaml").read_text())
    tasks = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    loops = {n: t for n, t in tasks.items() if "parameterIterator" in t}
    assert sorted(loops) == ["for-loop-2", "for-loop-3", "for-loop-4"]
    feeds = {n: t["dependentTasks"] for n, t in loops.items()}
    assert feeds == {"for-loop-2": ["mix-prepare"], "for-loop-3": ["mix-round-2"], "for-loop-4": ["mix-round-3"]}
    assert all(t["iteratorPolicy"] == {"parallelismLimit": 4} for t in loops.values())
    for n, t in loops.items():  # each iteration gets one job, a struct, from the list its planning task returned
        item = t["parameterIterator"]["itemInput"]
        assert ir["components"][t["componentRef"]["name"]]["inputDefinitions"]["parameters"][item]["parameterType"] == "STRUCT"
    inside = {n: list(ir["components"][t["componentRef"]["name"]]["dag"]["tasks"]) for n, t in loops.items()}
    assert inside == {"for-loop-2": ["mix-proxy-1"], "for-loop-3": ["mix-proxy-2"], "for-loop-4": ["mix-proxy-3"]}
    # rounds chain through the collected proxy outputs; the task named for the step publishes, tokenize reads it
    assert tasks["mix-round-2"]["dependentTasks"] == ["for-loop-2"] and tasks["mix-round-3"]["dependentTasks"] == ["for-loop-3"]
    assert tasks["mix"]["dependentTasks"] == ["curate", "for-loop-4"]
    assert tasks["tokenize"]["inputs"]["artifacts"]["corpus"]["taskOutputArtifact"]["producerTask"] == "mix"
    # every pod of the step gets resources.mix
    executors = ir["deploymentSpec"]["executors"]
    for name in ("exec-mix-prepare", "exec-mix-round-2", "exec-mix-proxy-1", "exec-mix-proxy-3", "exec-mix"):
        assert executors[name]["container"]["resources"]["cpuLimit"] == 1.0, name


def test_the_runner_changes_neither_fingerprints_nor_the_local_dag(tmp_path):
    from kfp import compiler

    from pipelines.end_to_end import build_pipeline

    plans = []
    for runner in ("auto", "pool", "parallel_for"):
        spec = parse_spec(_mix_spec(tmp_path, proxy_runner=runner))
        plans.append(spec.stage_config("mix").result_fields())  # the config in the step's fingerprint
        compiler.Compiler().compile(build_pipeline(spec, local=True), str(tmp_path / f"{runner}.yaml"))
        tasks = next(yaml.safe_load_all((tmp_path / f"{runner}.yaml").read_text()))["components"]["comp-exit-handler-1"]["dag"]["tasks"]
        assert ("mix-prepare" in tasks) == (runner == "parallel_for"), runner  # `factory run`: auto is the pool
    assert plans[0] == plans[1] == plans[2]
    pool = parse_spec(_mix_spec(tmp_path, proxy_runner="pool"))
    tasks = next(yaml.safe_load_all(compile_pipeline(pool, tmp_path / "c.yaml").read_text()))["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert "mix-prepare" not in tasks and "mix" in tasks  # pool on a cluster: one task, one pod
