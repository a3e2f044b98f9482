"""`cluster.training_operator: job` against a real kube-apiserver: the Indexed Job and its headless Service as the
server stores them, and the launcher's create / wait / fail / cancel / clean-up logic. The tests play the Job
controller (status conditions) and the kubelet (logs), as tests/launch/test_launcher.py does for the operators."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import structlog
from kubernetes import client

from factory.launch import (
    JOB_LABEL,
    KINDS,
    LaunchCancelled,
    Launcher,
    LaunchError,
    LaunchTimeout,
    indexed_job_manifest,
)

from .conftest import wait_for
from .test_launcher import NOW, fake_pod, start


def job(name: str, namespace: str, nodes: int = 2) -> dict:
    return indexed_job_manifest(name, namespace=namespace, image="factory:test", spec_configmap=f"{name}-spec", nodes=nodes,
                                gpus_per_node=0, env={"A": "1"}, service_account="default")


def batch(api) -> client.BatchV1Api:
    return client.BatchV1Api(api)


def server_minor(api) -> int:
    return int("".join(ch for ch in client.VersionApi(api).get_code().minor if ch.isdigit()))


def set_job_status(api, namespace: str, name: str, type_: str, reason: str, message: str) -> None:
    """What the Job controller would write when the Job ends."""
    batch(api).patch_namespaced_job_status(name, namespace, {"status": {"conditions": [
        {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": NOW}]}})


def test_what_the_server_keeps_of_an_indexed_job(admin, namespace):
    """Created and read back as the server stores it. Kubernetes 1.20 (the server the tests build) has no
    completionMode in batch/v1 and drops it silently: N pods, no index. The launcher's dry-run probe says the same."""
    manifest = job("probe", namespace)
    stored = batch(admin).create_namespaced_job(namespace, manifest)
    read = batch(admin).read_namespaced_job("probe", namespace)
    kept = getattr(read.spec, "completion_mode", None) == "Indexed"
    assert (read.spec.completions, read.spec.parallelism, read.spec.backoff_limit) == (2, 2, 0)
    pod = read.spec.template.spec
    assert (pod.subdomain, pod.restart_policy, read.spec.template.metadata.labels[JOB_LABEL]) == ("probe", "Never", "probe")
    env = {e.name: e for e in pod.containers[0].env}
    assert env["PET_NODE_RANK"].value_from.field_ref.field_path == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["PET_MASTER_ADDR"].value == "probe-0.probe"
    if server_minor(admin) < 21:
        assert not kept and stored.spec.to_dict().get("completion_mode") is None
    assert Launcher(admin, namespace).indexed_jobs(job("probe2", namespace)) is kept
    with pytest.raises(client.ApiException):  # the dry run persisted nothing
        batch(admin).read_namespaced_job("probe2", namespace)


def owners(meta) -> list[tuple[str, str, str]]:
    return sorted((o.kind, o.name, o.uid) for o in meta.owner_references or [])


def test_without_indexed_jobs_one_job_per_rank_runs_and_succeeds_when_all_do(admin, namespace, kubelet):
    """This server drops completionMode, so the launcher creates `pre-0` and `pre-1`: fixed hostnames under the
    headless Service `pre`, rank in PET_NODE_RANK; the step ends when both Jobs complete."""
    kubelet["pre-0-abcde"] = b"rank 0 step 1\n"
    with structlog.testing.capture_logs() as logs:
        future = start(Launcher(admin, namespace, poll_s=0.2), job("pre", namespace), timeout_s=30)
        jobs = [wait_for(lambda r=r: batch(admin).read_namespaced_job(f"pre-{r}", namespace), what=f"Job pre-{r}") for r in (0, 1)]
        service = wait_for(lambda: client.CoreV1Api(admin).read_namespaced_service("pre", namespace), what="Service")
        cm = wait_for(lambda: client.CoreV1Api(admin).read_namespaced_config_map("pre-spec", namespace), what="ConfigMap")
        fake_pod(admin, namespace, "pre-0-abcde", {JOB_LABEL: "pre"}, node="fake-node")
        wait_for(lambda: any(e["event"] == "job.log" for e in logs), what="log line")
        set_job_status(admin, namespace, "pre-1", "Complete", "Completed", "rank 1 done")
        set_job_status(admin, namespace, "pre-0", "Complete", "Completed", "rank 0 done")
        result = future.result(timeout=20)
    assert (result.kind, result.jobs, result.reason, result.message) == ("Job", ["pre-0", "pre-1"], "Completed", "rank 0 done")
    assert [e["line"] for e in logs if e["event"] == "job.log"] == ["rank 0 step 1"]
    assert [e["event"] for e in logs if e["event"] == "job.indexed_unsupported"] == ["job.indexed_unsupported"]
    for rank, one in enumerate(jobs):
        pod = one.spec.template.spec
        assert (one.spec.completions, one.spec.parallelism, pod.hostname, pod.subdomain) == (1, 1, f"pre-{rank}", "pre")
        env = {e.name: e.value for e in pod.containers[0].env}
        assert (env["PET_NODE_RANK"], env["PET_MASTER_ADDR"], env["PET_MASTER_PORT"], env["A"]) == (str(rank), "pre-0.pre", "29500", "1")
        assert one.spec.template.metadata.labels[JOB_LABEL] == "pre"
    assert service.spec.cluster_ip == "None" and service.spec.selector == {JOB_LABEL: "pre"}
    assert service.spec.publish_not_ready_addresses is True
    expected = sorted(("Job", j.metadata.name, j.metadata.uid) for j in jobs)
    assert owners(service.metadata) == owners(cm.metadata) == expected  # collected once every rank's Job is gone
    # Nothing else removes a finished plain Job and its pods: the launcher deletes what it made once the step succeeded.
    assert [e["event"] for e in logs if e["event"] == "job.deleted"] == ["job.deleted", "job.deleted"]
    assert_all_deleted(admin, namespace, ["pre-0", "pre-1"])


def test_a_failed_rank_fails_the_step_naming_it(admin, namespace):
    future = start(Launcher(admin, namespace, poll_s=0.2), job("pre", namespace), timeout_s=30)
    wait_for(lambda: batch(admin).read_namespaced_job("pre-1", namespace), what="Job pre-1")
    set_job_status(admin, namespace, "pre-1", "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    with pytest.raises(LaunchError) as err:
        future.result(timeout=20)  # rank 0 still running: a failed rank ends the step at once
    assert err.value.reason == "BackoffLimitExceeded" and err.value.job == "pre-1"
    assert f"Job {namespace}/pre-1 failed: BackoffLimitExceeded: Job has reached the specified backoff limit" == str(err.value)
    for rank in (0, 1):  # kept for inspection
        assert batch(admin).read_namespaced_job(f"pre-{rank}", namespace).metadata.deletion_timestamp is None


def assert_all_deleted(api, namespace: str, names: list[str]) -> None:
    """Every rank's Job, the ConfigMap `pre-spec` and the Service `pre` deleted with propagationPolicy=Foreground:
    gone, or (no garbage collector runs here) marked for deletion with the `foregroundDeletion` finalizer."""
    core = client.CoreV1Api(api)
    reads = [*(lambda n=n: batch(api).read_namespaced_job(n, namespace).metadata for n in names),
             lambda: core.read_namespaced_config_map("pre-spec", namespace).metadata,
             lambda: core.read_namespaced_service("pre", namespace).metadata]
    for read in reads:
        try:
            meta = read()
        except client.ApiException as e:
            assert e.status == 404
            continue
        assert meta.deletion_timestamp is not None and "foregroundDeletion" in (meta.finalizers or []), meta.name


def test_cancel_and_sigterm_delete_every_rank_the_service_and_the_configmap(admin, namespace):
    cancel = threading.Event()
    future = start(Launcher(admin, namespace, poll_s=0.2), job("pre", namespace), timeout_s=30, cancel=cancel)
    wait_for(lambda: client.CoreV1Api(admin).read_namespaced_service("pre", namespace), what="Service")
    cancel.set()
    with pytest.raises(LaunchCancelled, match=rf"Job {namespace}/pre-0 \(and 1 more\) cancelled"):
        future.result(timeout=20)
    assert_all_deleted(admin, namespace, ["pre-0", "pre-1"])

    other = f"{namespace}-b"
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": other}})

    def job_controller():
        wait_for(lambda: client.CoreV1Api(admin).read_namespaced_service("pre", other), what="Service")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=job_controller, daemon=True).start()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(LaunchCancelled):
        Launcher(admin, other, poll_s=0.2).launch(job("pre", other), {"spec.yaml": "x"}, timeout_s=30)
    assert signal.getsignal(signal.SIGTERM) is before
    assert_all_deleted(admin, other, ["pre-0", "pre-1"])


def test_where_indexed_jobs_exist_one_indexed_job_is_created(admin, namespace, monkeypatch):
    """On a server that keeps completionMode (1.22 and later) the launcher creates the Indexed Job itself, named as
    the launch, and waits on it alone. This server cannot keep the field, so the probe's answer is given here; what
    is shown is the single-Job path: created with its Service and ConfigMap, deleted with them on timeout."""
    monkeypatch.setattr(Launcher, "indexed_jobs", lambda self, manifest: True)
    sent = []
    create = client.CustomObjectsApi.create_namespaced_custom_object
    monkeypatch.setattr(client.CustomObjectsApi, "create_namespaced_custom_object",
                        lambda self, *a, **k: sent.append(a[4]) or create(self, *a, **k))
    with pytest.raises(LaunchTimeout, match=rf"Job {namespace}/pre did not finish within 1 s; deleted it"):
        Launcher(admin, namespace, poll_s=0.2).launch(job("pre", namespace, nodes=3), {"spec.yaml": "x"}, timeout_s=1)
    (body,) = sent
    assert (body["metadata"]["name"], body["spec"]["completionMode"], body["spec"]["completions"]) == ("pre", "Indexed", 3)
    assert_all_deleted(admin, namespace, ["pre"])


def test_the_job_kind_judges_the_job_controllers_conditions():
    outcome = KINDS["Job"].outcome
    assert outcome({"status": {"active": 2}}) == ("running", "", "")
    assert outcome({"status": {"conditions": [{"type": "Complete", "status": "True", "reason": "", "message": ""}]}}) == (
        "succeeded", "Complete", "")
    assert outcome({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                               "message": "Job was active longer than specified deadline"}]}})[:2] == (
        "failed", "DeadlineExceeded")


def test_the_spec_takes_job_and_refuses_names_dns_cannot_hold(tmp_path):
    from factory.errors import SpecError
    from factory.spec import parse_spec
    from tests.spine import small_spec_data

    (tmp_path / "html").mkdir()
    (tmp_path / "html" / "a.html").write_text("<html><body><p>Some text.</p></body></html>")
    data = small_spec_data(tmp_path)
    data["resources"] = {"pretrain": {"nodes": 12}}
    data["cluster"] = {"training_operator": "job"}
    assert parse_spec({**data, "name": "a" * 40}).cluster.training_operator == "job"  # a-...-pretrain-<10>-11: 63
    with pytest.raises((SpecError, ValueError), match=r"cluster.training_operator: 'job' names step pretrain's pods "
                       r"9lives-pretrain-<fingerprint>-<rank> in DNS, which needs a name that starts with a letter"):
        parse_spec({**data, "name": "9lives"})
    with pytest.raises((SpecError, ValueError), match=r"\(64 here\); rename the spec or the step"):
        parse_spec({**data, "name": "a" * 40, "resources": {"pretrain": {"nodes": 101}}})
    with pytest.raises((SpecError, ValueError), match=r"training_operator.*'trainjob', 'pytorchjob' or 'job'"):
        parse_spec({**data, "cluster": {"training_operator": "jobs"}})
    # a step that runs in the KFP pod itself names nothing in DNS: any name
    assert parse_spec({**data, "name": "9lives", "resources": {}}).cluster.training_operator == "job"
