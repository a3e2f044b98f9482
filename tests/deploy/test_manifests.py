"""The kustomize manifests (manifests/): base, job templates, CPU and GPU overlays."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.conftest import REPO, run
from tests.deploy.kube import all_pod_templates, containers, load_documents, selects, validate
from tests.deploy.conftest import helm_template
from tests.deploy.test_chart import PIPELINE_LABELS, assert_grants_exactly_what_launchers_call, by_kind

TARGETS = ["base", "templates", "overlays/cpu", "overlays/gpu"]


@pytest.fixture(scope="module")
def builds(kubectl) -> dict[str, list[dict]]:
    """`kubectl kustomize` of every target (kubectl's built-in kustomize)."""
    out = {}
    for target in TARGETS:
        result = run(kubectl, "kustomize", str(REPO / "manifests" / target))
        assert result.returncode == 0, f"{target}: {result.stderr}"
        out[target] = load_documents(result.stdout)
    return out


def one(docs: list[dict], kind: str) -> dict:
    (doc,) = [doc for doc in docs if doc["kind"] == kind]
    return doc


@pytest.mark.parametrize("target", TARGETS)
def test_builds_pass_strict_validation(builds, target):
    assert validate(builds[target]) == []


def test_base_is_the_charts_rbac_in_the_namespace(builds):
    docs = builds["base"]
    assert {doc["kind"] for doc in docs} == {"Namespace", "ServiceAccount", "Role", "RoleBinding"}
    assert_grants_exactly_what_launchers_call(one(docs, "Role"))
    namespace = one(docs, "Namespace")["metadata"]["name"]
    assert all(doc["metadata"]["namespace"] == namespace for doc in docs if doc["kind"] != "Namespace")
    binding = one(docs, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "factory-pipeline", "namespace": namespace}]


def test_charts_namespace_has_the_bases_pod_security_labels(builds, helm):
    def pod_security(namespace: dict) -> dict:
        return {k: v for k, v in namespace["metadata"]["labels"].items() if k.startswith("pod-security.kubernetes.io/")}

    base = pod_security(one(builds["base"], "Namespace"))
    assert base == {f"pod-security.kubernetes.io/{mode}": level
                    for mode, level in (("enforce", "baseline"), ("warn", "restricted"), ("audit", "restricted"))}
    (chart,) = by_kind(load_documents(helm_template(helm)), "Namespace").values()
    assert chart["metadata"]["name"] == "factory"  # the release namespace
    assert pod_security(chart) == base
    # Uninstalling must not delete the namespace (and whatever else lives in it).
    assert chart["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert by_kind(load_documents(helm_template(helm, "--set", "namespace.create=false")), "Namespace") == {}


@pytest.mark.parametrize("target", ["overlays/cpu", "overlays/gpu"])
def test_overlays_hold_base_and_both_jobs_in_one_namespace(builds, target):
    docs = builds[target]
    assert {doc["kind"] for doc in docs} >= {"Namespace", "Role", "PyTorchJob", "RayJob"}
    assert not {doc["kind"] for doc in docs} & {"ClusterRole", "ClusterRoleBinding"}
    assert {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"} == {"nemotron-factory"}


@pytest.mark.parametrize("target", ["templates", "overlays/cpu", "overlays/gpu"])
def test_job_pods_are_locked_down_and_labelled_as_pipeline_steps(builds, target):
    templates = all_pod_templates(builds[target])
    assert len(templates) == 5  # trainer master + worker; ray head, worker group, submitter
    for where, template in templates:
        assert selects({"matchLabels": PIPELINE_LABELS}, template["metadata"]["labels"]), where
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in containers(pod):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], where
            assert context["readOnlyRootFilesystem"] is True, where
            assert set(container["resources"]["limits"]) >= {"cpu", "memory"}, where


def test_trainer_runs_torchrun_with_the_factory_pretrain_step(builds):
    job = one(builds["templates"], "PyTorchJob")
    for role in ("Master", "Worker"):
        (container,) = job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"
        assert container["command"] == ["torchrun", "--no-python", "factory", "step", "pretrain", "/etc/factory/spec.yaml"]
    assert one(builds["templates"], "RayJob")["spec"]["entrypoint"] == "factory step curate /etc/factory/spec.yaml"


def trainer_pods(docs: list[dict]) -> list[dict]:
    job = one(docs, "PyTorchJob")
    return [replica["template"]["spec"] for replica in job["spec"]["pytorchReplicaSpecs"].values()]


def test_gpu_overlay_requests_gpus_on_gpu_nodes_with_shared_memory(builds):
    docs = builds["overlays/gpu"]
    nproc = int(one(docs, "PyTorchJob")["spec"]["nprocPerNode"])
    for pod in trainer_pods(docs):
        (container,) = pod["containers"]
        assert container["image"].endswith("factory-gpu:0.1.0")
        # One process per GPU.
        assert container["resources"]["limits"]["nvidia.com/gpu"] == str(nproc) == "8"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        shm = {volume["name"]: volume for volume in pod["volumes"]}["dshm"]
        assert shm["emptyDir"]["medium"] == "Memory"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    # Curation stays on the CPU image.
    assert all(c["image"].endswith("factory-cpu:0.1.0") for _, t in all_pod_templates([one(docs, "RayJob")]) for c in t["spec"]["containers"])


def test_cpu_overlay_requests_no_gpu(builds):
    docs = builds["overlays/cpu"]
    assert "nvidia.com/gpu" not in yaml.safe_dump(docs)
    for pod in trainer_pods(docs):
        resources = pod["containers"][0]["resources"]
        assert resources["limits"] == {"cpu": "4", "memory": "16Gi"}
