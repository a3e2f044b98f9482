"""Custom resources that run one stage across many nodes, built as plain dicts.

    trainjob_manifest(...)    Kubeflow Trainer v2   trainer.kubeflow.org/v1alpha1 TrainJob (torch-distributed runtime)
    pytorchjob_manifest(...)  Training Operator v1  kubeflow.org/v1 PyTorchJob (Master + Worker replicas)
    rayjob_manifest(...)      KubeRay               ray.io/v1 RayJob (head + one worker group)
    indexed_job_manifest(...) plain Kubernetes      batch/v1 Indexed Job, one pod per node, for clusters without
                                                    Kubeflow Trainer; `headless_service_manifest` names its pods in
                                                    DNS, and `per_rank_jobs` splits it where a server has no
                                                    Indexed Jobs (before 1.21, or 1.21 without its feature gate)

Every pod mounts the spec ConfigMap (key `spec.yaml`) at `/etc/factory`, so the command inside is the
same `factory step STAGE /etc/factory/spec.yaml` a laptop runs. Field names follow the upstream CRDs
vendored in tests/launch/crds/, which the tests validate these dicts against.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any, Literal

SPEC_DIR = "/etc/factory"
SPEC_KEY = "spec.yaml"
SPEC_PATH = f"{SPEC_DIR}/{SPEC_KEY}"
PART_OF = {"app.kubernetes.io/part-of": "nemotron-factory"}

Flavor = Literal["trainjob", "pytorchjob", "job"]

# On every pod of a plain-Job launch, valued with the launch's name: the headless Service selects the pods by it and
# the launcher finds them by it (the Job controller's own `job-name` label differs per Job when ranks are split).
JOB_LABEL = "nemotron-factory/job"
# The Job controller writes each Indexed Job pod's completion index here (JOB_COMPLETION_INDEX's source).
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
RENDEZVOUS_PORT = 29500
# Before torchrun, a plain Job's pod waits until rank 0's DNS name resolves: a name under a headless Service exists
# only once the endpoints controller has published the pod, and torchrun's static rendezvous reads it at once (the
# 2-pod pretrain on the tests' single-node cluster waits the same way). `$@` is the torchrun command.
# The factory images' working folder and user (docker/Dockerfile.cpu and .gpu: WORKDIR, USER): a spec's relative
# work_dir lands under it, and the user is what a restricted pod runs as.
WORKSPACE = "/workspace"
IMAGE_UID = 10001
WAIT_FOR_RANK_0 = ("until python -c 'import os, socket; socket.gethostbyname(os.environ[\"PET_MASTER_ADDR\"])' "
                   '2>/dev/null; do sleep 1; done; exec "$@"')


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


def work_mount_path(work_dir: str) -> str:
    """Where a pod of the factory's image finds the spec's `work_dir` (a relative one is under WORKSPACE)."""
    return posixpath.normpath(posixpath.join(WORKSPACE, work_dir))


def _volumes(spec_configmap: str, shm_size: str | None, work_dir: str | None = None,
             pvc: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": "factory-spec", "configMap": {"name": spec_configmap}}]
    mounts: list[dict[str, Any]] = [{"name": "factory-spec", "mountPath": SPEC_DIR, "readOnly": True}]
    if shm_size:
        # NCCL and DataLoader workers share tensors through /dev/shm; the container default (64 MiB) is too small.
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    if pvc and not work_dir:
        raise ValueError(f"pvc {pvc!r}: name the work_dir it is mounted at")
    if work_dir:
        # The spec's claim (`resources.pvc`) at the work folder, as the KFP step pod mounts it: every rank then sees
        # one staging folder, so a relaunched step resumes from rank 0's checkpoints on every rank. Without a claim,
        # a pod's own emptyDir: a fresh run needs no sharing (only rank 0 writes the step's files).
        source = {"persistentVolumeClaim": {"claimName": pvc}} if pvc else {"emptyDir": {}}
        volumes.append({"name": "work", **source})
        mounts.append({"name": "work", "mountPath": work_mount_path(work_dir)})
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
    work_dir: str | None = None,
    pvc: str | None = None,
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
    volumes, mounts = _volumes(spec_configmap, shm_size, work_dir, pvc)
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
    work_dir: str | None = None,
    pvc: str | None = None,
    *,
    stage: str = "pretrain",
    gpu_resource: str = "nvidia.com/gpu",
    command: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Training Operator v1 PyTorchJob: one Master and `nodes - 1` Workers, same pod template."""
    nproc = max(gpus_per_node, 1)
    volumes, mounts = _volumes(spec_configmap, shm_size, work_dir, pvc)
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


def indexed_job_manifest(
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
    work_dir: str | None = None,
    pvc: str | None = None,
    *,
    stage: str = "pretrain",
    gpu_resource: str = "nvidia.com/gpu",
    command: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A batch/v1 Indexed Job: `nodes` pods at once (completions = parallelism = nodes), pod i running `command`
    (default: torchrun) as node rank i, no operator needed.

    torchrun takes its flags' defaults from PET_* variables, as under the operators: PET_NODE_RANK is the pod's
    completion index (the annotation the Job controller sets, which JOB_COMPLETION_INDEX also carries), and
    PET_MASTER_ADDR is rank 0's DNS name: an Indexed Job pod's hostname is `<job>-<index>`, and with `subdomain` set
    to the headless Service of the same name (`headless_service_manifest`, which the launcher creates beside the
    Job) it resolves as `<job>-0.<job>`; each pod waits for that name before it starts torchrun (WAIT_FOR_RANK_0).
    A failed pod fails the Job (backoffLimit 0), like the PyTorchJob's policy.

    The pods are the launcher's own, so they meet the restricted Pod Security Standard as the factory's other pods
    do: the image's non-root user, no privilege escalation, no capabilities, the runtime's seccomp profile, no API
    token; with `work_dir` given (the launcher gives it) the root file system is read-only and the pod writes only
    to the work folder (`pvc`, or an emptyDir) and /tmp.
    """
    nproc = max(gpus_per_node, 1)
    volumes, mounts = _volumes(spec_configmap, shm_size, work_dir, pvc)
    volumes.append({"name": "tmp", "emptyDir": {}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    job_labels = {**PART_OF, "app.kubernetes.io/component": stage, **(labels or {})}
    rank_env = [
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}},
        {"name": "PET_MASTER_ADDR", "value": f"{name}-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": str(RENDEZVOUS_PORT)},
    ]
    container: dict[str, Any] = {
        "name": "node",
        "image": image,
        "command": ["sh", "-c", WAIT_FOR_RANK_0, "wait-for-rank-0", *(command or torchrun_command(stage, nodes, nproc))],
        "env": rank_env + env_list(env, secret_env),
        "ports": [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}],
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": work_dir is not None,
                            "capabilities": {"drop": ["ALL"]}},
    }
    resources = resource_requirements(cpu, memory, gpus_per_node, gpu_resource)
    if resources:
        container["resources"] = resources
    template = _pod_template(container, volumes, {**job_labels, JOB_LABEL: name}, node_selector, tolerations,
                             service_account, restart_policy="Never")
    template["spec"].update(
        subdomain=name, automountServiceAccountToken=False,
        # fsGroup: a claim's files are writable by the image's user
        securityContext={"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID, "fsGroup": IMAGE_UID,
                         "seccompProfile": {"type": "RuntimeDefault"}})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": job_labels},
        "spec": {"completionMode": "Indexed", "completions": nodes, "parallelism": nodes, "backoffLimit": 0,
                 "template": template},
    }


def headless_service_manifest(job: Mapping[str, Any]) -> dict[str, Any]:
    """The headless Service that gives `job`'s pods (an `indexed_job_manifest`) their DNS names, `<job>-<i>.<job>`;
    not-ready pods are published too, so rank 0 resolves as soon as it runs."""
    meta = job["metadata"]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": dict(meta.get("labels") or {})},
            "spec": {"clusterIP": "None", "selector": {JOB_LABEL: meta["name"]}, "publishNotReadyAddresses": True,
                     "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}]}}


def per_rank_jobs(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`job` (an `indexed_job_manifest`) as one single-pod Job per rank, for a server without Indexed Jobs: Job and
    pod hostname `<job>-<rank>` (what the Indexed Job's pods are called, so the same Service and rank-0 address
    serve) and PET_NODE_RANK fixed to the rank."""
    name, spec = job["metadata"]["name"], job["spec"]
    out = []
    for rank in range(spec["completions"]):
        one = copy.deepcopy(dict(job))
        one["metadata"]["name"] = f"{name}-{rank}"
        one["spec"] = {k: v for k, v in one["spec"].items() if k != "completionMode"} | {"completions": 1, "parallelism": 1}
        pod = one["spec"]["template"]["spec"]
        pod["hostname"] = f"{name}-{rank}"
        for container in pod["containers"]:
            container["env"] = [{"name": "PET_NODE_RANK", "value": str(rank)} if e["name"] == "PET_NODE_RANK" else e
                                for e in container["env"]]
        out.append(one)
    return out


def training_manifest(flavor: Flavor = "trainjob", **kwargs: Any) -> dict[str, Any]:
    """The distributed-training job of `flavor` ("trainjob": Kubeflow Trainer v2; "pytorchjob": Training Operator v1;
    "job": a plain Indexed Job, which the launcher runs with its headless Service)."""
    builders = {"trainjob": trainjob_manifest, "pytorchjob": pytorchjob_manifest, "job": indexed_job_manifest}
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
    work_dir: str | None = None,
    pvc: str | None = None,
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
    volumes, mounts = _volumes(spec_configmap, shm_size, work_dir, pvc)
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

