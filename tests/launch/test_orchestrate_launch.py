"""A pipeline step for a multi-node stage launches a cluster job, watches it, and returns what it published.

Against the real kube-apiserver (see conftest.py): the test plays the training operator, publishing the
artifact as the job's rank 0 would and then marking the job complete or failed.
"""

from __future__ import annotations

import concurrent.futures
import threading
from contextlib import contextmanager

import pytest
import yaml

from factory.errors import UserError
from factory.launch import LaunchError
from factory.orchestrate import launch_step
from factory.spec import parse_spec
from factory.steps import Executor
from tests.launch.test_launcher import condition, get_job, set_status
from tests.launch.conftest import wait_for
from tests.spine import small_spec_data


def _executor(tmp_path, namespace, operator: str = "trainjob") -> Executor:
    (tmp_path / "html").mkdir(exist_ok=True)
    (tmp_path / "html" / "a.html").write_text("<html><body><p>Some text.</p></body></html>")
    data = small_spec_data(tmp_path)
    data["resources"] = {"pretrain": {"nodes": 2, "cpu": "4", "memory": "8G", "secrets": {"AWS_ACCESS_KEY_ID": "s3/key"}}}
    data["cluster"] = {"namespace": namespace, "training_operator": operator}
    executor = Executor(parse_spec(data).resolved())
    executor.parent_run_id = "parent-run-123"
    return executor


def _publish(executor: Executor) -> dict:
    """What the job's rank 0 does when training ends: publish the artifact at the planned key."""
    step = executor.plan()["pretrain"]
    staging = executor.store.staging_dir(step.key, executor.work_dir)
    staging.mkdir(parents=True)
    (staging / "model").mkdir()
    (staging / "model" / "config.json").write_text("{}")
    return executor.store.publish(staging, step.key, {"kind": "checkpoint", "stage": "pretrain", "fingerprint": step.fingerprint})


@contextmanager
def launched(admin, namespace, executor: Executor, spec_text: str = "name: spine\n"):
    """Run the launcher step in a thread; yields (future, job name, the job as created). A test that fails midway
    cancels the launcher (which has no timeout here) so that leaving the thread pool does not wait for it forever."""
    # planned before the launcher thread starts: planning parses the code (its fingerprint), and CPython 3.11's
    # ast.parse in two threads at once can fail with "AST constructor recursion depth mismatch"
    name = f"spine-pretrain-{executor.plan()['pretrain'].fingerprint[:10]}"
    cancel = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(launch_step, executor, "pretrain", spec_text, api_client=admin, cancel=cancel)
        try:
            job = wait_for(lambda: get_job(admin, "TrainJob", namespace, name), timeout_s=90, what="TrainJob")
            yield future, name, job
        finally:
            cancel.set()


def test_launch_success_returns_published_artifact(admin, namespace, tmp_path):
    executor = _executor(tmp_path, namespace)
    spec_text = yaml.safe_dump(executor.spec.model_dump(mode="json"))
    assert executor.spec.needs_launcher("pretrain") and not executor.spec.needs_launcher("tokenize")
    with launched(admin, namespace, executor, spec_text) as (future, name, job):
        published = _publish(executor)
        set_status(admin, "TrainJob", namespace, name, {"conditions": [condition("Complete", "JobsCompleted", "done")]})
        manifest = future.result(timeout=60)
    assert manifest["fingerprint"] == published["fingerprint"] == executor.plan()["pretrain"].fingerprint
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 2
    assert trainer["command"][:5] == ["torchrun", "--nnodes", "2", "--nproc-per-node", "1"]
    assert trainer["command"][-2:] == ["--parent-run-id", "parent-run-123"]
    assert {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "key"}}} in trainer["env"]
    assert job["metadata"]["labels"]["nemotron-factory/pipeline-step"] == "true"


def test_launch_failure_is_a_step_failure_with_the_reason(admin, namespace, tmp_path):
    executor = _executor(tmp_path, namespace)
    with launched(admin, namespace, executor) as (future, name, _):
        set_status(admin, "TrainJob", namespace, name, {"conditions": [condition("Failed", "BackoffLimitExceeded", "node-1 exited 137")]})
        with pytest.raises(LaunchError, match="BackoffLimitExceeded") as err:
            future.result(timeout=60)
    assert "node-1 exited 137" in str(err.value)
    assert executor.store.complete(executor.plan()["pretrain"].key) is None


def test_job_that_publishes_nothing_fails_the_step(admin, namespace, tmp_path):
    executor = _executor(tmp_path, namespace)
    with launched(admin, namespace, executor) as (future, name, _):
        set_status(admin, "TrainJob", namespace, name, {"conditions": [condition("Complete", "JobsCompleted", "done")]})
        with pytest.raises(UserError, match="succeeded but published no artifact"):
            future.result(timeout=60)


def test_a_plain_job_launch_without_an_operator(admin, namespace, tmp_path):
    """`cluster.training_operator: job` from the spec to the cluster: this 1.20 server has no Indexed Jobs, so the
    step runs as one Job per rank (see test_launcher_job.py); it returns what rank 0 published once both complete."""
    from kubernetes import client

    executor = _executor(tmp_path, namespace, operator="job")
    name = f"spine-pretrain-{executor.plan()['pretrain'].fingerprint[:10]}"  # before the launcher thread (see launched)
    batch = client.BatchV1Api(admin)
    cancel = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(launch_step, executor, "pretrain", "name: spine\n", api_client=admin, cancel=cancel)
        try:
            jobs = [wait_for(lambda r=r: batch.read_namespaced_job(f"{name}-{r}", namespace), timeout_s=90, what="Job")
                    for r in (0, 1)]
            published = _publish(executor)
            for r in (0, 1):
                batch.patch_namespaced_job_status(f"{name}-{r}", namespace, {"status": {"conditions": [
                    condition("Complete", "Completed", f"rank {r} done")]}})
            manifest = future.result(timeout=60)
        finally:
            cancel.set()
    assert manifest["fingerprint"] == published["fingerprint"]
    container = jobs[1].spec.template.spec.containers[0]
    assert container.command[4:9] == ["torchrun", "--nnodes", "2", "--nproc-per-node", "1"]  # after sh's wait for rank 0
    assert container.command[-2:] == ["--parent-run-id", "parent-run-123"]
    env = {e.name: e.value for e in container.env}
    assert (env["PET_NODE_RANK"], env["PET_MASTER_ADDR"]) == ("1", f"{name}-0.{name}")
    assert jobs[1].spec.template.metadata.labels["nemotron-factory/pipeline-step"] == "true"
