"""The launchers' custom resources against the operators' CRD schemas, and their pod specs against a real apiserver."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from factory.launch import (
    JOB_LABEL,
    SPEC_PATH,
    headless_service_manifest,
    indexed_job_manifest,
    per_rank_jobs,
    pytorchjob_manifest,
    rayjob_manifest,
    training_manifest,
    trainjob_manifest,
)

CRDS = Path(__file__).parent / "crds"
COMMON = dict(
    namespace="factory", image="factory:gpu", spec_configmap="job-spec", cpu="8", memory="64Gi",
    node_selector={"nvidia.com/gpu.product": "H100"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    shm_size="16Gi", env={"NCCL_DEBUG": "WARN"}, secret_env={"AWS_ACCESS_KEY_ID": ("factory-s3", "access-key")},
    service_account="factory-pipeline", work_dir="runs/work", pvc="factory-work",
)


def strict(schema):
    """The CRD schema with unknown fields rejected: the apiserver silently prunes a misspelt field, so a
    check against the schema must refuse it instead."""
    schema = copy.deepcopy(schema)

    def walk(s):
        if not isinstance(s, dict):
            return
        if "properties" in s and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
        for v in s.get("properties", {}).values():
            walk(v)
        for key in ("items", "additionalProperties"):
            walk(s.get(key))
        for v in s.get("anyOf", []):
            walk(v)

    walk(schema)
    return schema


def crd_validator(filename: str) -> jsonschema.Draft4Validator:
    crd = yaml.safe_load((CRDS / filename).read_text())
    (version,) = crd["spec"]["versions"]
    return jsonschema.Draft4Validator(strict(version["schema"]["openAPIV3Schema"]))


def manifests():
    return {
        "trainjob": (trainjob_manifest("pre-1", nodes=2, gpus_per_node=8, **COMMON), "trainer.kubeflow.org_trainjobs.yaml"),
        "pytorchjob": (pytorchjob_manifest("pre-1", nodes=3, gpus_per_node=8, **COMMON), "kubeflow.org_pytorchjobs.yaml"),
        "rayjob": (rayjob_manifest("cur-1", workers=4, **COMMON), "ray.io_rayjobs.yaml"),
    }


@pytest.mark.parametrize("flavor", ["trainjob", "pytorchjob", "rayjob"])
def test_manifest_matches_crd_schema(flavor):
    manifest, crd = manifests()[flavor]
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in crd_validator(crd).iter_errors(manifest)]
    assert errors == []


@pytest.mark.parametrize("flavor", ["trainjob", "pytorchjob", "rayjob"])
def test_misspelt_field_is_rejected(flavor):
    manifest, crd = manifests()[flavor]
    manifest["spec"]["numNode"] = 2
    errors = list(crd_validator(crd).iter_errors(manifest))
    assert any("numNode" in e.message for e in errors)


def test_trainjob_fields():
    job = trainjob_manifest("pre-1", nodes=2, gpus_per_node=8, **COMMON)
    trainer = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": "torch-distributed"}
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 8
    assert trainer["command"] == ["torchrun", "--nnodes", "2", "--nproc-per-node", "8", "-m", "cli", "step", "pretrain", SPEC_PATH]
    assert trainer["resourcesPerNode"]["limits"] == {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "8"}
    assert {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "factory-s3", "key": "access-key"}}} in trainer["env"]
    (override,) = job["spec"]["podTemplateOverrides"]
    assert override["targetJobs"] == [{"name": "node"}]
    assert override["spec"]["serviceAccountName"] == "factory-pipeline"
    assert {"name": "factory-spec", "configMap": {"name": "job-spec"}} in override["spec"]["volumes"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in override["spec"]["volumes"]


def test_pytorchjob_replicas_and_cpu_only():
    job = pytorchjob_manifest("pre-1", nodes=3, gpus_per_node=0, **{**COMMON, "cpu": None, "memory": None})
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 2
    assert job["spec"]["nprocPerNode"] == "1"
    container = specs["Worker"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch" and "resources" not in container
    assert container["command"][:5] == ["torchrun", "--nnodes", "3", "--nproc-per-node", "1"]
    assert "Worker" not in pytorchjob_manifest("one", nodes=1, gpus_per_node=2, **COMMON)["spec"]["pytorchReplicaSpecs"]


def test_flavor_selects_builder():
    assert training_manifest("pytorchjob", name="a", nodes=2, gpus_per_node=1, **COMMON)["kind"] == "PyTorchJob"
    assert training_manifest(name="a", nodes=2, gpus_per_node=1, **COMMON)["kind"] == "TrainJob"
    assert training_manifest("job", name="a", nodes=2, gpus_per_node=1, **COMMON)["kind"] == "Job"
    with pytest.raises(ValueError, match="flavor 'mpijob'"):
        training_manifest("mpijob", name="a", nodes=2, gpus_per_node=1, **COMMON)


def test_rayjob_fields():
    job = rayjob_manifest("cur-1", workers=4, **COMMON)
    cluster = job["spec"]["rayClusterSpec"]
    assert job["spec"]["entrypoint"] == f"python -m cli step curate {SPEC_PATH}"
    assert cluster["workerGroupSpecs"][0]["replicas"] == 4
    assert cluster["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0"}
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["requests"] == {"cpu": "8", "memory": "64Gi"}


def test_indexed_job_fields():
    job = indexed_job_manifest("pre-1", nodes=3, gpus_per_node=8, **COMMON)
    spec = job["spec"]
    assert (job["apiVersion"], spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (
        "batch/v1", "Indexed", 3, 3, 0)
    pod = spec["template"]["spec"]
    assert (pod["subdomain"], pod["restartPolicy"], pod["serviceAccountName"]) == ("pre-1", "Never", "factory-pipeline")
    assert spec["template"]["metadata"]["labels"][JOB_LABEL] == "pre-1"
    (container,) = pod["containers"]
    # sh waits for rank 0's name, then runs torchrun in its place
    assert container["command"][:2] == ["sh", "-c"] and container["command"][2].endswith('done; exec "$@"')
    assert container["command"][4:] == ["torchrun", "--nnodes", "3", "--nproc-per-node", "8", "-m", "cli", "step", "pretrain", SPEC_PATH]
    assert container["env"][:3] == [
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "PET_MASTER_ADDR", "value": "pre-1-0.pre-1"}, {"name": "PET_MASTER_PORT", "value": "29500"}]
    assert {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "factory-s3", "key": "access-key"}}} in container["env"]
    assert container["resources"]["limits"] == {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "8"}
    assert {"name": "factory-spec", "configMap": {"name": "job-spec"}} in pod["volumes"]
    service = headless_service_manifest(job)
    assert service["metadata"]["name"] == "pre-1" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {JOB_LABEL: "pre-1"} and service["spec"]["publishNotReadyAddresses"] is True
    ranks = per_rank_jobs(job)
    assert [r["metadata"]["name"] for r in ranks] == [r["spec"]["template"]["spec"]["hostname"] for r in ranks] == [
        "pre-1-0", "pre-1-1", "pre-1-2"]
    for rank, one in enumerate(ranks):
        assert "completionMode" not in one["spec"] and (one["spec"]["completions"], one["spec"]["parallelism"]) == (1, 1)
        env = one["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env[0] == {"name": "PET_NODE_RANK", "value": str(rank)} and env[1:] == container["env"][1:]
    assert spec["completionMode"] == "Indexed" and container["env"][0]["name"] == "PET_NODE_RANK"  # the original unchanged


@pytest.mark.parametrize("flavor", ["trainjob", "pytorchjob", "job"])
def test_the_spec_claim_is_the_work_folder_of_every_pod(flavor):
    """`resources.pvc` is mounted where the pods' spec puts its work folder (a relative work_dir is under the image's
    working folder), as the KFP step pod mounts it: every rank shares one staging folder."""
    job = training_manifest(flavor, name="pre-1", nodes=2, gpus_per_node=8, **COMMON)
    if flavor == "trainjob":
        override = job["spec"]["podTemplateOverrides"][0]["spec"]
        pods = [{"volumes": override["volumes"], "containers": override["containers"]}]
    else:
        pods = pod_templates(job) if flavor == "pytorchjob" else [job["spec"]["template"]["spec"]]
    for pod in pods:
        assert {"name": "work", "persistentVolumeClaim": {"claimName": "factory-work"}} in pod["volumes"]
        assert {"name": "work", "mountPath": "/workspace/runs/work"} in pod["containers"][0]["volumeMounts"]
    (rank,) = indexed_job_manifest("pre-1", nodes=2, gpus_per_node=0, **{**COMMON, "pvc": None, "work_dir": "/data/w"})[
        "spec"]["template"]["spec"]["containers"]
    assert {"name": "work", "mountPath": "/data/w"} in rank["volumeMounts"]
    with pytest.raises(ValueError, match="name the work_dir"):
        indexed_job_manifest("pre-1", nodes=2, gpus_per_node=0, **{**COMMON, "work_dir": None})


def test_plain_job_pods_meet_the_restricted_level():
    """The launcher's own pods run as the factory's other pods do: the image's non-root user, no privilege escalation
    or capabilities, the runtime's seccomp profile, no API token, a read-only root with /tmp and the work folder
    (an emptyDir without a claim) writable."""
    pod = indexed_job_manifest("pre-1", nodes=2, gpus_per_node=0, **{**COMMON, "pvc": None})["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert (mounts["/tmp"], mounts["/workspace/runs/work"]) == ("tmp", "work")
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}} and volumes["work"] == {"name": "work", "emptyDir": {}}


def test_plain_jobs_and_service_as_the_apiserver_keeps_them(admin, namespace):
    """Server-side dry runs of the Indexed Job, each per-rank Job, the Service and the pod spec: a 1.20 server drops
    only completionMode (it has no Indexed Jobs); everything else comes back as sent."""
    from kubernetes import client

    job = indexed_job_manifest("pre-1", nodes=2, gpus_per_node=8, **{**COMMON, "namespace": namespace})
    core, custom = client.CoreV1Api(admin), client.CustomObjectsApi(admin)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "factory-pipeline"}})
    minor = int("".join(ch for ch in client.VersionApi(admin).get_code().minor if ch.isdigit()))
    stored = custom.create_namespaced_custom_object("batch", "v1", namespace, "jobs", job, dry_run="All")
    assert subset(job["spec"], stored["spec"]) == ([".completionMode"] if minor < 21 else [])
    for one in per_rank_jobs(job):
        assert subset(one["spec"], custom.create_namespaced_custom_object("batch", "v1", namespace, "jobs", one,
                                                                          dry_run="All")["spec"]) == []
    service = headless_service_manifest(job)
    resp = core.create_namespaced_service(namespace, service, dry_run="All", _preload_content=False)
    assert subset(service["spec"], json.loads(resp.data)["spec"]) == []
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dry", "namespace": namespace,
                                                           "annotations": {"batch.kubernetes.io/job-completion-index": "1"}},
           "spec": {**job["spec"]["template"]["spec"], "automountServiceAccountToken": False}}
    resp = core.create_namespaced_pod(namespace, pod, dry_run="All", _preload_content=False)
    assert subset(pod["spec"], json.loads(resp.data)["spec"]) == []


def pod_templates(manifest):
    """Each pod spec the operator would derive from the manifest, as a core/v1 Pod spec."""
    spec = manifest["spec"]
    if manifest["kind"] == "TrainJob":
        t, o = spec["trainer"], spec["podTemplateOverrides"][0]["spec"]
        container = {"name": "node", "image": t["image"], "command": t["command"], "env": t["env"],
                     "resources": t["resourcesPerNode"], "volumeMounts": o["containers"][0]["volumeMounts"]}
        pod = {k: v for k, v in o.items() if k != "containers"}
        return [{**pod, "containers": [container]}]
    if manifest["kind"] == "PyTorchJob":
        return [r["template"]["spec"] for r in spec["pytorchReplicaSpecs"].values()]
    cluster = spec["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]


def subset(sent, got, path="") -> list[str]:
    """Paths of what was sent but did not come back (a field the apiserver does not know is dropped)."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return [path]
        return [p for k, v in sent.items() for p in subset(v, got.get(k), f"{path}.{k}")]
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) < len(sent):
            return [path]
        return [p for i, v in enumerate(sent) for p in subset(v, got[i], f"{path}[{i}]")]
    return [] if sent == got else [path]


@pytest.mark.parametrize("flavor", ["trainjob", "pytorchjob", "rayjob"])
def test_pod_specs_and_jobs_accepted_by_apiserver(admin, namespace, flavor):
    """Server-side dry runs: the job against the installed CRD, and every pod spec as a real Pod."""
    from kubernetes import client

    manifest, crd = manifests()[flavor]
    manifest["metadata"]["namespace"] = namespace
    kind = yaml.safe_load((CRDS / crd).read_text())["spec"]
    core, custom = client.CoreV1Api(admin), client.CustomObjectsApi(admin)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "factory-pipeline"}})
    created = custom.create_namespaced_custom_object(kind["group"], kind["versions"][0]["name"], namespace,
                                                     kind["names"]["plural"], manifest, dry_run="All")
    assert subset(manifest["spec"], created["spec"]) == []  # nothing pruned as unknown
    for i, pod_spec in enumerate(pod_templates(manifest)):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"dry-{i}", "namespace": namespace},
               "spec": {**pod_spec, "automountServiceAccountToken": False}}
        resp = core.create_namespaced_pod(namespace, pod, dry_run="All", _preload_content=False)
        assert subset(pod["spec"], json.loads(resp.data)["spec"]) == []
