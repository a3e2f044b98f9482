"""Custom resources that run one stage across many nodes, built as plain dicts.

    trainjob_manifest(...)    Kubeflow Trainer v2   trainer.kubeflow.org/v1alpha1 TrainJob (torch-distributed runtime)
    pytorchjob_manifest(...)  Training Operator v1  kubeflow.org/v1 PyTorchJob (Master + Worker replicas)
    rayjob_manifest(...)      KubeRay               ray.io/v1 RayJob (head + one worker group)

Every pod mounts the spec ConfigMap (key `spec.yaml`) at `/etc/factory`, so the command inside is the
same `factory step STAGE /etc/factory/spec.yaml` a laptop runs. Field names follow the upstream CRDs
vendored in tests/launch/crds/, which the tests validate these dicts against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

SPEC_DIR = "/etc/factory"
SPEC_KEY = "spec.yaml"
SPEC_PATH = f"{SPEC_DIR}/{SPEC_KEY}"
PART_OF = {"app.kubernetes.io/part-of": "nemotron-factory"}

Flavor = Literal["trainjob", "pytorchjob"]


def torchrun_command(stage: str, nodes: int, nproc_per_node: int, spec_path: str = SPEC_PATH) -> list[str]:
    """`torchrun` running `factory step STAGE SPEC` on every node.

    Rank, master address and port come from the operator: both Kubeflow Trainer's torch runtime and the
    Training Operator set PET_NODE_RANK / PET_MASTER_ADDR / PET_MASTER_PORT, which torchrun reads as the
    defaults of its flags.
    """
    return ["torchrun", "--nnodes", str(nodes), "--nproc-per-node", str(nproc_per_node),
            "-m", "cli", "step", stage, spec_path]


def configmap_manifest(name: str, namespace: str, data: Mapping[str, str], labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": {**PART_OF, **(labels or {})}},
            "data": dict(data)}


def env_list(env: Mapping[str, str] | None, secret_env: Mapping[str, tuple[str, str]] | None) -> list[dict[str, Any]]:
    """core/v1 EnvVar list: plain values, then values read from Secrets (`NAME -> (secret, key)`)."""
    out: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in sorted((env or {}).items())]
    for k, (secret, key) in sorted((secret_env or {}).items()):
        out.append({"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return out


def resource_requirements(cpu: str | None, memory: str | None, gpus: int, gpu_resource: str = "nvidia.com/gpu") -> dict[str, Any]:
    """Requests equal to limits (the scheduler packs training pods exactly); GPUs only as limits' twin."""
    amounts: dict[str, str] = {}
    if cpu:
        amounts["cpu"] = str(cpu)
    if memory:
        amounts["memory"] = str(memory)
    if gpus:
        amounts[gpu_resource] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _volumes(spec_configmap: str, shm_size: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": "factory-spec", "configMap": {"name": spec_configmap}}]
    mounts: list[dict[str, Any]] = [{"name": "factory-spec", "mountPath": SPEC_DIR, "readOnly": True}]
    if shm_size:
        # NCCL and DataLoader workers share tensors through /dev/shm; the container default (64 MiB) is too small.
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def _tolerations(tolerations: Sequence[Any] | None) -> list[dict[str, Any]]:
    """Accepts dicts or pydantic models (`factory.spec.Toleration`); drops unset fields."""
    out = []
    for t in tolerations or []:
        d = t.model_dump(exclude_none=True) if hasattr(t, "model_dump") else {k: v for k, v in dict(t).items() if v is not None}
        out.append(d)
    return out


def _pod_template(container: dict[str, Any], volumes: list[dict[str, Any]], labels: Mapping[str, str],
                  node_selector: Mapping[str, str] | None, tolerations: Sequence[Any] | None,
                  service_account: str | None, restart_policy: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = _tolerations(tolerations)
    if service_account:
        spec["serviceAccountName"] = service_account
    return {"metadata": {"labels": dict(labels)}, "spec": spec}


def trainjob_manifest(
    name: str,
    namespace: str,
    image: str,
    spec_configmap: str,
    nodes: int,
    gpus_per_node: int,
    cpu: str | None = None,
    memory: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Any] | None = None,
    shm_size: str | None = None,
    env: Mapping[str, str] | None = None,
    secret_env: Mapping[str, tuple[str, str]] | None = None,
    service_account: str | None = None,
    *,
    stage: str = "pretrain",
    runtime: str = "torch-distributed",
    gpu_resource: str = "nvidia.com/gpu",
    command: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Kubeflow Trainer v2 TrainJob on the `runtime` ClusterTrainingRuntime: `nodes` pods, each running
    `command` (default: torchrun with `gpus_per_node` processes, one on CPU) with the spec mounted.

    Pod settings the TrainJob API has no field for (volumes, node selector, tolerations, service account)
    go through `podTemplateOverrides` on the runtime's `node` job.
    """
    nproc = max(gpus_per_node, 1)
    volumes, mounts = _volumes(spec_configmap, shm_size)
    job_labels = {**PART_OF, "app.kubernetes.io/component": stage, **(labels or {})}
    trainer: dict[str, Any] = {
        "image": image,
        "command": list(command or torchrun_command(stage, nodes, nproc)),
        "numNodes": nodes,
        "numProcPerNode": nproc,
    }
    if env or secret_env:
        trainer["env"] = env_list(env, secret_env)
    resources = resource_requirements(cpu, memory, gpus_per_node, gpu_resource)
    if resources:
        trainer["resourcesPerNode"] = resources
    # The override is a partial pod template: the runtime's `node` container plus what the TrainJob lacks.
    override = _pod_template({"name": "node", "volumeMounts": mounts}, volumes, job_labels, node_selector, tolerations, service_account)
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": namespace, "labels": job_labels},
        "spec": {
            "runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": runtime},
            "trainer": trainer,
            "labels": job_labels,
            "podTemplateOverrides": [{"targetJobs": [{"name": "node"}], **override}],
        },
    }


def pytorchjob_manifest(
    name: str,
    namespace: str,
    image: str,
    spec_configmap: str,
    nodes: int,
    gpus_per_node: int,
    cpu: str | None = None,
    memory: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Any] | None = None,
    shm_size: str | None = None,
    env: Mapping[str, str] | None = None,
    secret_env: Mapping[str, tuple[str, str]] | None = None,
    service_account: str | None = None,
    *,
    stage: str = "pretrain",
    gpu_resource: str = "nvidia.com/gpu",
    command: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Training Operator v1 PyTorchJob: one Master and `nodes - 1` Workers, same pod template."""
    nproc = max(gpus_per_node, 1)
    volumes, mounts = _volumes(spec_configmap, shm_size)
    job_labels = {**PART_OF, "app.kubernetes.io/component": stage, **(labels or {})}
    container: dict[str, Any] = {
        "name": "pytorch",  # the operator finds the training container by this name
        "image": image,
        "command": list(command or torchrun_command(stage, nodes, nproc)),
        "volumeMounts": mounts,
    }
    if env or secret_env:
        container["env"] = env_list(env, secret_env)
    resources = resource_requirements(cpu, memory, gpus_per_node, gpu_resource)
    if resources:
        container["resources"] = resources
    template = _pod_template(container, volumes, job_labels, node_selector, tolerations, service_account)
    replicas: dict[str, Any] = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template}}
    if nodes > 1:
        replicas["Worker"] = {"replicas": nodes - 1, "restartPolicy": "Never", "template": template}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": namespace, "labels": job_labels},
        "spec": {
            "nprocPerNode": str(nproc),
            # Pods stay after the end so their logs can be read; a failed rank fails the job (no retries
            # behind the pipeline's back: the step fails and says why).
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 0},
            "pytorchReplicaSpecs": replicas,
        },
    }


def training_manifest(flavor: Flavor = "trainjob", **kwargs: Any) -> dict[str, Any]:
    """The distributed-training job of `flavor` ("trainjob": Kubeflow Trainer v2; "pytorchjob": Training Operator v1)."""
    builders = {"trainjob": trainjob_manifest, "pytorchjob": pytorchjob_manifest}
    if flavor not in builders:
        raise ValueError(f"flavor {flavor!r}: expected one of {', '.join(builders)}")
    return builders[flavor](**kwargs)


def rayjob_manifest(
    name: str,
    namespace: str,
    image: str,
    spec_configmap: str,
    workers: int,
    cpu: str | None = None,
    memory: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Any] | None = None,
    shm_size: str | None = None,
    env: Mapping[str, str] | None = None,
    secret_env: Mapping[str, tuple[str, str]] | None = None,
    service_account: str | None = None,
    *,
    stage: str = "curate",
    ray_version: str = "2.60.0",
    entrypoint: str | None = None,
    ttl_seconds_after_finished: int = 600,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A KubeRay RayJob: a Ray cluster (head + `workers` workers) that runs `factory step STAGE` as the
    job's driver and is torn down when the stage ends. `cpu`/`memory` size each worker; the head only
    coordinates (it gets no Ray CPUs, so tasks land on the workers)."""
    volumes, mounts = _volumes(spec_configmap, shm_size)
    job_labels = {**PART_OF, "app.kubernetes.io/component": stage, **(labels or {})}
    env_vars = env_list(env, secret_env)

    def container(role: str, resources: dict[str, Any]) -> dict[str, Any]:
        c: dict[str, Any] = {"name": f"ray-{role}", "image": image, "volumeMounts": mounts}
        if env_vars:
            c["env"] = env_vars
        if resources:
            c["resources"] = resources
        return c

    head = _pod_template(container("head", {}), volumes, job_labels, node_selector, tolerations, service_account)
    worker = _pod_template(container("worker", resource_requirements(cpu, memory, 0)), volumes, job_labels,
                           node_selector, tolerations, service_account)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": namespace, "labels": job_labels},
        "spec": {
            "entrypoint": entrypoint or f"python -m cli step {stage} {SPEC_PATH}",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": ttl_seconds_after_finished,
            "backoffLimit": 0,
            "rayClusterSpec": {
                "rayVersion": ray_version,
                "headGroupSpec": {"rayStartParams": {"num-cpus": "0"}, "template": head},
                "workerGroupSpecs": [{
                    "groupName": "workers",
                    "replicas": workers,
                    "minReplicas": workers,
                    "maxReplicas": workers,
                    "rayStartParams": {},
                    "template": worker,
                }],
            },
        },
    }

