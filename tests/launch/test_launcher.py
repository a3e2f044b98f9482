"""The launcher against a real kube-apiserver; the tests play the operators (status) and the kubelet (logs)."""

from __future__ import annotations

import os
import signal
import threading
from urllib.parse import parse_qsl, urlsplit
from concurrent.futures import ThreadPoolExecutor

import pytest
import structlog
from kubernetes import client

from factory.launch import (
    KINDS,
    REQUIRED_RULES,
    grants,
    LaunchCancelled,
    LaunchError,
    Launcher,
    LaunchTimeout,
    indexed_job_manifest,
    pytorchjob_manifest,
    rayjob_manifest,
    trainjob_manifest,
)

from .conftest import client_as, wait_for

NOW = "2026-01-01T00:00:00Z"


def build(kind: str, name: str, namespace: str):
    common = dict(namespace=namespace, image="factory:test", spec_configmap=f"{name}-spec", env={"A": "1"})
    if kind == "TrainJob":
        return trainjob_manifest(name, nodes=2, gpus_per_node=0, **common)
    if kind == "PyTorchJob":
        return pytorchjob_manifest(name, nodes=2, gpus_per_node=0, **common)
    if kind == "Job":
        return indexed_job_manifest(name, nodes=2, gpus_per_node=0, **common)
    return rayjob_manifest(name, workers=2, **common)


def get_job(api, kind: str, namespace: str, name: str):
    k = KINDS[kind]
    return client.CustomObjectsApi(api).get_namespaced_custom_object(k.group, k.version, namespace, k.plural, name)


def set_status(api, kind: str, namespace: str, name: str, status: dict):
    """What the operator would do: write the job's status subresource."""
    k = KINDS[kind]
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(k.group, k.version, namespace, k.plural, name, {"status": status})


def condition(type_: str, reason: str, message: str) -> dict:
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": NOW}


def fake_pod(api, namespace: str, name: str, labels: dict, node: str | None):
    spec = {"containers": [{"name": "node", "image": "factory:test"}], "automountServiceAccountToken": False}
    if node:
        spec["nodeName"] = node
    client.CoreV1Api(api).create_namespaced_pod(namespace, {"metadata": {"name": name, "labels": labels}, "spec": spec})


def start(launcher: Launcher, manifest, **kwargs):
    pool = ThreadPoolExecutor(1)
    future = pool.submit(launcher.launch, manifest, {"spec.yaml": "name: smoke\n"}, **kwargs)
    pool.shutdown(wait=False)
    return future


def test_success_streams_logs_and_owns_configmap(admin, namespace, kubelet):
    kubelet["pre-node-0"] = b"step 1 loss 2.50\nstep 2 loss 2.25\n"
    with structlog.testing.capture_logs() as logs:
        future = start(Launcher(admin, namespace, poll_s=0.2), build("TrainJob", "pre", namespace), timeout_s=30)
        job = wait_for(lambda: get_job(admin, "TrainJob", namespace, "pre"), what="TrainJob")
        cm = wait_for(lambda: client.CoreV1Api(admin).read_namespaced_config_map("pre-spec", namespace), what="ConfigMap")
        # A pod that never ran has no logs: the launcher must shrug and keep going.
        fake_pod(admin, namespace, "pre-initializer-0", {"jobset.sigs.k8s.io/jobset-name": "pre"}, node=None)
        fake_pod(admin, namespace, "pre-node-0", {"jobset.sigs.k8s.io/jobset-name": "pre"}, node="fake-node")
        fake_pod(admin, namespace, "other-0", {"jobset.sigs.k8s.io/jobset-name": "other"}, node="fake-node")
        wait_for(lambda: sum(e["event"] == "job.log" for e in logs) == 2, what="log lines")
        set_status(admin, "TrainJob", namespace, "pre", {"conditions": [condition("Complete", "JobsCompleted", "all done")]})
        result = future.result(timeout=20)
    assert (result.kind, result.reason, result.message) == ("TrainJob", "JobsCompleted", "all done")
    assert result.uid == job["metadata"]["uid"]
    assert result.pods == ["pre-initializer-0", "pre-node-0"]
    assert [(e["pod"], e["line"]) for e in logs if e["event"] == "job.log"] == [
        ("pre-node-0", "step 1 loss 2.50"), ("pre-node-0", "step 2 loss 2.25")]
    assert cm.data == {"spec.yaml": "name: smoke\n"}
    (owner,) = cm.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("TrainJob", "pre", job["metadata"]["uid"])
    job_spec = job["spec"]["podTemplateOverrides"][0]["spec"]
    assert {"name": "factory-spec", "configMap": {"name": "pre-spec"}} in job_spec["volumes"]


@pytest.mark.parametrize("kind, status, reason", [
    ("PyTorchJob", {"conditions": [condition("Running", "Running", "ok"),
                                   condition("Failed", "PyTorchJobFailed", "pytorchjob pre has failed because 1 Worker replica(s) failed")]},
     "PyTorchJobFailed"),
    ("TrainJob", {"conditions": [condition("Failed", "DeadlineExceeded", "jobset exceeded its deadline")]}, "DeadlineExceeded"),
    ("RayJob", {"jobDeploymentStatus": "Complete", "jobStatus": "FAILED", "message": "driver exited with 1"}, "JobFailed"),
])
def test_failure_raises_with_reason(admin, namespace, kind, status, reason):
    future = start(Launcher(admin, namespace, poll_s=0.2), build(kind, "pre", namespace), timeout_s=30)
    wait_for(lambda: get_job(admin, kind, namespace, "pre"), what=kind)
    set_status(admin, kind, namespace, "pre", status)
    with pytest.raises(LaunchError) as err:
        future.result(timeout=20)
    assert err.value.reason == reason
    assert f"{kind} {namespace}/pre failed: {reason}" in str(err.value)
    assert (status.get("message") or status["conditions"][-1]["message"]) in str(err.value)
    assert "deletionTimestamp" not in get_job(admin, kind, namespace, "pre")["metadata"]  # kept for inspection


def test_rayjob_success(admin, namespace):
    future = start(Launcher(admin, namespace, poll_s=0.2), build("RayJob", "cur", namespace), timeout_s=30)
    wait_for(lambda: get_job(admin, "RayJob", namespace, "cur"), what="RayJob")
    set_status(admin, "RayJob", namespace, "cur", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    set_status(admin, "RayJob", namespace, "cur", {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"})
    assert future.result(timeout=20).reason == "Complete"


def assert_deleted_foreground(api, namespace: str, kind: str, name: str):
    """Deleted with propagationPolicy=Foreground. Without a garbage collector (none runs here) such an
    object stays, marked for deletion with the `foregroundDeletion` finalizer, so that is what shows."""
    def gone_or_marked(read):
        try:
            meta = read()
        except client.ApiException as e:
            return e.status == 404
        return meta.get("deletionTimestamp") is not None and "foregroundDeletion" in (meta.get("finalizers") or [])

    def configmap_meta():
        m = client.CoreV1Api(api).read_namespaced_config_map(f"{name}-spec", namespace).metadata
        return {"deletionTimestamp": m.deletion_timestamp, "finalizers": m.finalizers}

    assert gone_or_marked(lambda: get_job(api, kind, namespace, name)["metadata"])
    assert gone_or_marked(configmap_meta)


def test_cancel_deletes_job_and_configmap(admin, namespace):
    cancel = threading.Event()
    future = start(Launcher(admin, namespace, poll_s=0.2), build("RayJob", "cur", namespace), timeout_s=30, cancel=cancel)
    wait_for(lambda: client.CoreV1Api(admin).read_namespaced_config_map("cur-spec", namespace), what="ConfigMap")
    cancel.set()
    with pytest.raises(LaunchCancelled, match=f"RayJob {namespace}/cur cancelled"):
        future.result(timeout=20)
    assert_deleted_foreground(admin, namespace, "RayJob", "cur")


def test_sigterm_cancels(admin, namespace):
    """KFP cancels a step with SIGTERM to its process; the launcher runs in the main thread there."""
    def operator():
        wait_for(lambda: client.CoreV1Api(admin).read_namespaced_config_map("pre-spec", namespace), what="ConfigMap")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=operator, daemon=True).start()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(LaunchCancelled):
        Launcher(admin, namespace, poll_s=0.2).launch(build("PyTorchJob", "pre", namespace), {"spec.yaml": "x"}, timeout_s=30)
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    assert_deleted_foreground(admin, namespace, "PyTorchJob", "pre")


def test_timeout_deletes_and_says_so(admin, namespace):
    with pytest.raises(LaunchTimeout, match=rf"TrainJob {namespace}/pre did not finish within 1 s; deleted it"):
        Launcher(admin, namespace, poll_s=0.2).launch(build("TrainJob", "pre", namespace), {"spec.yaml": "x"}, timeout_s=1)
    assert_deleted_foreground(admin, namespace, "TrainJob", "pre")


def test_create_error_names_the_job(admin, namespace):
    manifest = build("TrainJob", "pre", namespace)
    del manifest["spec"]["runtimeRef"]  # required by the CRD schema
    with pytest.raises(LaunchError, match=rf"cannot create TrainJob {namespace}/pre: 422"):
        Launcher(admin, namespace).launch(manifest, {"spec.yaml": "x"})


def record_calls(api) -> set[tuple[str, str, str]]:
    """Record every request made through `api` as the (apiGroup, resource, verb) RBAC checks it against."""
    calls: set[tuple[str, str, str]] = set()
    request = api.request

    def recording(method, url, query_params=None, *args, **kwargs):
        path = urlsplit(url).path.strip("/").split("/")
        # /api/v1/namespaces/NS/RESOURCE[/NAME[/SUB]] or /apis/GROUP/VERSION/namespaces/NS/RESOURCE[/NAME[/SUB]]
        group, rest = ("", path[2:]) if path[0] == "api" else (path[1], path[3:])
        assert rest[0] == "namespaces", url  # nothing cluster-wide
        resource, name, sub = rest[2], (rest[3:4] or [None])[0], (rest[4:5] or [None])[0]
        query = dict(query_params or []) | dict(parse_qsl(urlsplit(url).query))
        watching = str(query.get("watch", "")).lower() == "true"
        verb = {"POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}.get(
            method, "get" if name else "watch" if watching else "list")
        calls.add((group, f"{resource}/{sub}" if sub else resource, verb))
        return request(method, url, query_params, *args, **kwargs)

    api.request = recording
    return calls


def test_required_rules_are_enough_and_each_is_used(admin, namespace, kubelet):
    """The launcher as a ServiceAccount bound only to REQUIRED_RULES: creates, follows logs, succeeds, cancels,
    times out; the calls it made, recorded, are exactly REQUIRED_RULES (so a Role granting them grants no more)."""
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "launcher"}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "launcher"}, "rules": REQUIRED_RULES})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "launcher"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "launcher"},
        "subjects": [{"kind": "ServiceAccount", "name": "launcher", "namespace": namespace}],
    })
    token = core.create_namespaced_service_account_token("launcher", namespace, {"spec": {"audiences": []}}).status.token
    api = client_as(admin, token)
    with pytest.raises(client.ApiException) as denied:  # the token really is confined
        client.CoreV1Api(api).list_namespaced_secret(namespace)
    assert denied.value.status == 403
    calls = record_calls(api)

    kubelet["train-node-0"] = b"hello from rank 0\n"
    with structlog.testing.capture_logs() as logs:
        future = start(Launcher(api, namespace, poll_s=0.2), build("PyTorchJob", "train", namespace), timeout_s=30)
        wait_for(lambda: get_job(admin, "PyTorchJob", namespace, "train"), what="PyTorchJob")
        fake_pod(admin, namespace, "train-node-0", {"training.kubeflow.org/job-name": "train"}, node="fake-node")
        wait_for(lambda: any(e["event"] == "job.log" for e in logs), what="log line")
        set_status(admin, "PyTorchJob", namespace, "train", {"conditions": [condition("Succeeded", "PyTorchJobSucceeded", "done")]})
        assert future.result(timeout=20).reason == "PyTorchJobSucceeded"
    assert [e["line"] for e in logs if e["event"] == "job.log"] == ["hello from rank 0"]
    assert not [e for e in logs if e["event"] in ("job.pods_unlisted", "job.log_stream_broken")]

    cancel = threading.Event()
    future = start(Launcher(api, namespace, poll_s=0.2), build("TrainJob", "t2", namespace), timeout_s=30, cancel=cancel)
    wait_for(lambda: core.read_namespaced_config_map("t2-spec", namespace), what="ConfigMap")
    cancel.set()
    with pytest.raises(LaunchCancelled):
        future.result(timeout=20)
    assert_deleted_foreground(admin, namespace, "TrainJob", "t2")

    for kind in KINDS:  # a timeout deletes the job: every kind is created, read, watched and deleted (a plain Job's
        # Service too)
        with pytest.raises(LaunchTimeout):
            Launcher(api, namespace, poll_s=0.2).launch(build(kind, f"late-{kind.lower()}", namespace), {"spec.yaml": "x"}, timeout_s=1)
    assert calls == grants(REQUIRED_RULES)
