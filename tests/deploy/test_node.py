"""The chart on a real single-node Kubernetes 1.20 cluster: etcd, API server, controller manager, scheduler,
kubelet on containerd with the bridge CNI, kube-proxy (tests/deploy/cluster/start.sh), and the locally built
images (docker/build-local.sh) imported into containerd.

Installs the chart as a user would, with the bundled PostgreSQL (Debian's package) and moto's S3 server for
the external bucket, and checks: every pod Ready, MLflow answering through its Service (`helm test` and from
the node), the namespace's Pod Security level enforced, pipeline steps as Jobs (`factory step` writing to the
S3 store and logging to the chart's MLflow; a step pod deleted mid-run resumes from its checkpoint on the
Job's retry; a 2-pod torchrun pretrain), `helm upgrade` and `helm uninstall` clean.

Kubernetes 1.20 has no Pod Security admission (1.23); PodSecurityPolicy admission enforces the namespace's
`pod-security.kubernetes.io/enforce` level instead (tests/deploy/cluster/psp.yaml). Skips in one line where
root, the node's binaries (tests/deploy/cluster/build.sh) or the images are missing, as in CI, or where the images
were built from other code than this checkout's (tests/deploy/local_images.py).

    bash tests/deploy/cluster/build.sh && bash docker/build-local.sh
    python -m pytest -q tests/deploy/test_node.py    # about 5 minutes on 2 cores, the cluster's start included
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
import structlog
from moto.server import ThreadedMotoServer

from tests.deploy.conftest import CHART, REPO, find_tool
from tests.deploy.local_images import CPU, POSTGRES, missing

CLUSTER = REPO / "tests" / "deploy" / "cluster"
BIN = Path(os.environ.get("FACTORY_CLUSTER_CACHE", Path.home() / ".cache" / "factory-cluster")) / "bin"
IMAGES = Path(os.environ.get("FACTORY_IMAGES", Path.home() / ".cache" / "factory-images" / "images"))
RELEASE = NAMESPACE = "factory"


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "the single-node cluster needs root"
    for tool in ("etcd", "containerd", "runc", "dnsmasq", "iptables", "conntrack", "podman"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    for tool in ("helm", "kubectl"):
        if find_tool(tool) is None:
            return f"{tool} is not installed: run `bash helm/install-helm.sh`"
    for binary in ("kube-apiserver", "kubelet", "kube-scheduler", "kube-controller-manager", "kube-proxy"):
        if not os.access(BIN / binary, os.X_OK):
            return f"no {BIN / binary}: run `bash tests/deploy/cluster/build.sh`"
    for image in ("cpu", "postgres"):
        if not (IMAGES / f"{image}.tar").is_file():
            return f"no {IMAGES / image}.tar: run `bash docker/build-local.sh`"
    # The archives are saved from podman's images as they are built: the images' labels tell their sources.
    return missing(CPU, POSTGRES)


if (why := why_not()) is not None:
    pytest.skip(why, allow_module_level=True)


class Node:
    """The running cluster: its addresses and its kubectl and helm, bound to its kubeconfig."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.env = dict(line.split("=", 1) for line in (run_dir / "env").read_text().split())
        self.tool_env = {**os.environ, "KUBECONFIG": self.env["KUBECONFIG"]}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        result = subprocess.run([find_tool("kubectl"), *args], check=False, capture_output=True, text=True, input=input,
                                env=self.tool_env, timeout=timeout)
        assert result.returncode == 0 or not check, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout if check else result.stdout + result.stderr

    def helm(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([find_tool("helm"), *args], check=False, capture_output=True, text=True, env=self.tool_env,
                              timeout=timeout, cwd=REPO)

    def json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def wait(self, what: str, condition, timeout: float = 180):
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            assert time.monotonic() < deadline, f"{what} within {timeout} s"
            time.sleep(1)
        return value


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("node")
    started = time.monotonic()
    result = subprocess.run(["bash", str(CLUSTER / "start.sh"), str(run_dir), str(BIN)], check=False, capture_output=True, text=True,
                            timeout=600)
    try:
        assert result.returncode == 0, result.stderr[-3000:]
        print(f"cluster up in {time.monotonic() - started:.0f} s")
        yield Node(run_dir)
    finally:
        subprocess.run(["bash", str(CLUSTER / "stop.sh"), str(run_dir)], check=False, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def s3(node):
    """moto's S3 server on the node's bridge address (where pods reach the host), with the chart's bucket."""
    server = ThreadedMotoServer(ip_address=node.env["NODE_IP"], port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket="factory")
    yield endpoint
    server.stop()


def values(s3: str, *more: str) -> list[str]:
    """The chart's values for this node: the locally built images, moto as the external S3 service."""
    settings = [
        "postgresql.image.repository=nemotron-factory/postgres-debian",
        "minio.enabled=false", f"s3.endpoint={s3}", "s3.existingSecret=factory-s3", "mlflow.workers=1", *more,
    ]
    return ["--set-string", "postgresql.image.tag=15", *(arg for setting in settings for arg in ("--set", setting))]


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    """The chart, its Kubernetes floor lowered to the node's 1.20: every API group it uses is served there, and
    the floor stands for Pod Security admission, which the node enforces through PodSecurityPolicy."""
    copy = tmp_path_factory.mktemp("chart") / "factory"
    shutil.copytree(CHART, copy)
    meta = copy / "Chart.yaml"
    text = meta.read_text()
    assert 'kubeVersion: ">=1.27.0-0"' in text
    meta.write_text(text.replace('kubeVersion: ">=1.27.0-0"', 'kubeVersion: ">=1.20.0-0"'))
    return copy


@pytest.fixture(scope="module")
def release(node, s3, chart):
    # The namespace labelled first, as Pod Security admission would see it when the first pod is created
    # (addons.py binds its level within a second).
    node.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}))
    node.wait("the baseline policy bound", lambda: node.kubectl(
        "-n", NAMESPACE, "get", "rolebinding", "pod-security", "-o", "jsonpath={.roleRef.name}", check=False)
        == "pod-security:baseline", timeout=30)
    node.kubectl("-n", NAMESPACE, "create", "secret", "generic", "factory-s3",
                 "--from-literal=AWS_ACCESS_KEY_ID=test", "--from-literal=AWS_SECRET_ACCESS_KEY=test")
    started = time.monotonic()
    result = node.helm("install", RELEASE, str(chart), "-n", NAMESPACE, "--take-ownership", "--wait", "--timeout", "8m",
                       *values(s3))
    assert result.returncode == 0, result.stderr + node.kubectl("-n", NAMESPACE, "get", "pods,events", check=False)
    print(f"helm install --wait in {time.monotonic() - started:.0f} s")
    return RELEASE


def pods(node: Node) -> list[dict]:
    """The release's pods."""
    return node.json("-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def test_every_pod_of_the_chart_is_ready_as_its_non_root_user(node, release):
    running = [p for p in pods(node) if p["status"]["phase"] != "Succeeded"]
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in running} >= {"mlflow", "postgresql"}
    assert all(ready(p) for p in running), [(p["metadata"]["name"], p["status"].get("conditions")) for p in running]
    # Admitted under the namespace's baseline level, not a looser one.
    assert {p["metadata"]["annotations"]["kubernetes.io/psp"] for p in running} == {"baseline"}
    mlflow = next(p for p in running if p["metadata"]["labels"]["app.kubernetes.io/component"] == "mlflow")
    uid = node.kubectl("-n", NAMESPACE, "exec", mlflow["metadata"]["name"], "-c", "mlflow", "--", "id", "-u").strip()
    assert uid == "10001"
    result = node.kubectl("-n", NAMESPACE, "exec", mlflow["metadata"]["name"], "-c", "mlflow", "--", "touch", "/x",
                          check=False)
    assert "Read-only file system" in result


def test_mlflow_answers_through_its_service(node, release):
    # From a pod, by the Service's DNS name (the chart's own test pod, as a pipeline step reaches it) ...
    result = node.helm("test", RELEASE, "-n", NAMESPACE, "--logs", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "experiments" in result.stdout
    # ... and from the node, through kube-proxy's rules for the Service's cluster IP.
    service = node.json("-n", NAMESPACE, "get", "service", "-l", "app.kubernetes.io/component=mlflow")["items"][0]
    ip, port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
    request = urllib.request.Request(f"http://{ip}:{port}/health", headers={"Host": f"{service['metadata']['name']}:{port}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.read() == b"OK"


def privileged_job(name: str, privileged: bool) -> str:
    return json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "nemotron-factory/factory-cpu:0.1.0", "command": ["true"],
                            "securityContext": {"privileged": privileged}}]}}},
    })


def test_the_namespace_pod_security_level_refuses_a_privileged_pod(node, release):
    labels = node.json("get", "namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert node.json("-n", NAMESPACE, "get", "rolebinding", "pod-security")["roleRef"]["name"] == "pod-security:baseline"
    # Pods as a controller creates them (the Job controller's own credentials: only the pod's service account's
    # policies apply, as for every pod of a pipeline).
    node.kubectl("apply", "-f", "-", input=privileged_job("privileged", True))
    node.kubectl("apply", "-f", "-", input=privileged_job("unprivileged", False))
    try:
        def refused():
            events = node.json("-n", NAMESPACE, "get", "events", "--field-selector", "involvedObject.name=privileged")
            return [e["message"] for e in events["items"] if e["reason"] == "FailedCreate"]
        (message, *_) = node.wait("the privileged pod refused", refused, timeout=60)
        assert "is forbidden: PodSecurityPolicy: unable to admit pod" in message
        assert "securityContext.privileged: Invalid value: true: Privileged containers are not allowed" in message
        print(f"refused: {message}")
        assert not node.json("-n", NAMESPACE, "get", "pods", "-l", "job-name=privileged")["items"]
        (pod, *_) = node.wait("the unprivileged pod admitted",
                              lambda: node.json("-n", NAMESPACE, "get", "pods", "-l", "job-name=unprivileged")["items"])
        assert pod["metadata"]["annotations"]["kubernetes.io/psp"] == "baseline"
    finally:
        node.kubectl("-n", NAMESPACE, "delete", "job", "privileged", "unprivileged", "--wait=false", check=False)


STEP_SPEC = """\
name: node-step
work_dir: runs
model: {preset: tiny}
stages:
  quality:
    max_reference_docs: 50
    train: {classifiers: [ngram, features], ngram: {n_features: 4096, epochs: 1}, features: {max_iter: 10}}
"""


COPY_DATA_ONCE = "cd /workspace/runs && [ -d data ] || { mkdir -p data.partial && cp -L /data/*.html data.partial/ && mv data.partial data; }"


def step_job(name: str, step: str, work: dict, data: bool = False, retries: int = 0) -> str:
    """A pipeline step as a KFP task pod runs it: the factory image, the chart's ConfigMap and S3 Secret, the
    pipeline service account and labels, the chart's security context; the spec (and its data) from ConfigMaps
    named after the Job, the work folder on `work` (a volume source)."""
    restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    mounts = [{"name": "spec", "mountPath": "/spec"}, {"name": "work", "mountPath": "/workspace/runs"},
              {"name": "tmp", "mountPath": "/tmp"}]
    volumes = [{"name": "spec", "configMap": {"name": name}}, {"name": "work", **work}, {"name": "tmp", "emptyDir": {}}]
    init = []
    # Copied onto the work volume once, by the first pod: a ConfigMap's files are written anew for each pod (a
    # timestamped folder, new modification times), which the next pod's curate would read as other raw inputs.
    if data:
        volumes.append({"name": "data", "configMap": {"name": f"{name}-data"}})
        init.append({"name": "data", "image": "nemotron-factory/factory-cpu:0.1.0", "securityContext": restricted,
                     "command": ["sh", "-c", COPY_DATA_ONCE],
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "work", "mountPath": "/workspace/runs"}]})
    return json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"backoffLimit": retries, "template": {
            "metadata": {"labels": {"nemotron-factory/pipeline-step": "true"}},
            "spec": {
                "restartPolicy": "Never", "serviceAccountName": f"{RELEASE}-pipeline",
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "step", "image": "nemotron-factory/factory-cpu:0.1.0",
                    "command": ["factory", "step", step, "/spec/spec.yaml"],
                    "envFrom": [{"configMapRef": {"name": f"{RELEASE}-config"}}],
                    "env": [{"name": key, "valueFrom": {"secretKeyRef": {"name": "factory-s3", "key": key}}}
                            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")],
                    "securityContext": restricted, "volumeMounts": mounts}],
                "initContainers": init, "volumes": volumes}}},
    })


def job_outcome(node: Node, name: str, timeout: float = 600) -> str:
    def finished():
        conditions = node.json("-n", NAMESPACE, "get", "job", name).get("status", {}).get("conditions") or []
        done = [c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
        return {"Complete": "succeeded", "Failed": "failed"}[done[0]] if done else None
    return node.wait(f"Job {name}", finished, timeout=timeout)


def events(logs: str, name: str) -> list[dict]:
    return [json.loads(line) for line in logs.splitlines() if f'"event": "{name}"' in line]


def test_a_step_runs_as_a_job_writing_to_the_store_and_logging_to_mlflow(node, s3, release):
    """`factory step` in a pod, as a KFP task runs it: output in S3 (moto), its run in the chart's MLflow."""
    node.kubectl("-n", NAMESPACE, "create", "configmap", "step-quality", "--from-file=spec.yaml=/dev/stdin",
                 input=STEP_SPEC)
    node.kubectl("apply", "-f", "-", input=step_job("step-quality", "quality", {"emptyDir": {}}))
    started = time.monotonic()
    outcome = job_outcome(node, "step-quality")
    logs = node.kubectl("-n", NAMESPACE, "logs", "job/step-quality", check=False)
    assert outcome == "succeeded", logs[-3000:]
    print(f"step quality as a Job in {time.monotonic() - started:.0f} s")
    (done,) = events(logs, "step.done")
    assert done["uri"].startswith("s3://factory/store/quality/"), done
    objects = boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test").list_objects_v2(Bucket="factory", Prefix="store/quality/")
    keys = [o["Key"] for o in objects.get("Contents", [])]
    assert any(k.endswith("manifest.json") for k in keys), keys
    # The run in the chart's MLflow, read through the Service from the node.
    service = node.json("-n", NAMESPACE, "get", "service", f"{RELEASE}-mlflow")
    base = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}/api/2.0/mlflow"
    headers = {"Host": f"{RELEASE}-mlflow:{service['spec']['ports'][0]['port']}", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/experiments/get-by-name?experiment_name=node-step",
                                                       headers=headers), timeout=10) as r:
        experiment = json.load(r)["experiment"]["experiment_id"]
    body = json.dumps({"experiment_ids": [experiment]}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{base}/runs/search", body, headers), timeout=10) as r:
        runs = json.load(r)["runs"]
    assert any(run["info"]["status"] == "FINISHED" for run in runs), runs


RESUME_SPEC = """\
name: node-resume
work_dir: runs
model: {preset: tiny}
stages:
  curate: {sources: [runs/data]}
  tokenize: {vocab_size: 512}
  pretrain: {seq_len: 64, micro_batch_size: 4, steps: 600, checkpoint_interval: 10, lr: 3.0e-3, warmup_steps: 5}
"""


def test_a_step_pod_deleted_mid_run_is_retried_and_resumes_from_its_checkpoint(node, s3, release, tmp_path):
    """pretrain (building its curate and tokenize inputs first) as a Job whose pod is deleted after a checkpoint:
    the Job's next pod resumes from it. Checkpoints live in the step's local staging folder (an S3 store
    publishes only finished steps), so the work folder is a PersistentVolumeClaim; on an emptyDir the next pod
    starts over."""
    pages = sorted((REPO / "examples" / "data" / "smoke-html").glob("page-*.html"))[:60]  # a ConfigMap holds 1 MiB
    data = tmp_path / "data"
    data.mkdir()
    for page in pages:
        shutil.copy(page, data / page.name)
    node.kubectl("-n", NAMESPACE, "create", "configmap", "step-resume", "--from-file=spec.yaml=/dev/stdin", input=RESUME_SPEC)
    node.kubectl("-n", NAMESPACE, "create", "configmap", "step-resume-data", f"--from-file={data}")
    node.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "step-resume", "namespace": NAMESPACE},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
    # The spec's relative paths from the image's working folder: runs/ is the claim, the pages in runs/data.
    job = step_job("step-resume", "pretrain", {"persistentVolumeClaim": {"claimName": "step-resume"}}, data=True, retries=2)
    node.kubectl("apply", "-f", "-", input=job)

    def first_pod_checkpointed():
        for pod in node.json("-n", NAMESPACE, "get", "pods", "-l", "job-name=step-resume")["items"]:
            logs = node.kubectl("-n", NAMESPACE, "logs", pod["metadata"]["name"], check=False)
            if any(e["step"] >= 20 for e in events(logs, "checkpoint_saved")):
                assert pod["status"]["phase"] == "Running", "the step finished before its pod could be deleted"
                return pod["metadata"]["name"]
        return None
    first = node.wait("a checkpoint past step 20", first_pod_checkpointed, timeout=600)
    node.kubectl("-n", NAMESPACE, "delete", "pod", first, "--wait=false")
    assert job_outcome(node, "step-resume") == "succeeded"
    second = [p["metadata"]["name"] for p in node.json("-n", NAMESPACE, "get", "pods", "-l", "job-name=step-resume")["items"]
              if p["metadata"]["name"] != first]
    logs = node.kubectl("-n", NAMESPACE, "logs", second[-1])
    first_logs = "".join(line + "\n" for line in node.kubectl("-n", NAMESPACE, "logs", first, check=False).splitlines()
                         if '"event": "step.' in line)
    assert events(logs, "resumed"), first_logs[-2000:] + "\n---\n" + logs[-3000:]
    (resumed,) = events(logs, "resumed")
    assert resumed["step"] >= 20, resumed
    (done,) = events(logs, "step.done")
    assert done["steps"] == 600 and done["uri"].startswith("s3://factory/store/pretrain/")
    print(f"resumed at step {resumed['step']} in pod {second[-1]}")


DDP_SPEC = RESUME_SPEC.replace("name: node-resume", "name: node-ddp").replace("steps: 600", "steps: 40")


def test_a_two_pod_torchrun_pretrain_runs_across_the_node(node, s3, release, tmp_path):
    """Data-parallel pretrain across two pods under torchrun, one rank per pod, rank 0 reached by DNS.

    Kubernetes 1.20 has no Indexed Job (alpha in 1.21): its closest mechanism, used here, is one Job per rank,
    each pod with a fixed hostname in a headless Service's subdomain (`ddp-0.ddp.<ns>.svc`), and the rank
    passed to torchrun. The ranks share one work folder (a claim on the one node), as `factory step` expects
    of a distributed step's staging folder."""
    pages = sorted((REPO / "examples" / "data" / "smoke-html").glob("page-*.html"))[:60]
    data = tmp_path / "data"
    data.mkdir()
    for page in pages:
        shutil.copy(page, data / page.name)
    node.kubectl("-n", NAMESPACE, "create", "configmap", "ddp-0", "--from-file=spec.yaml=/dev/stdin", input=DDP_SPEC)
    node.kubectl("-n", NAMESPACE, "create", "configmap", "ddp-1", "--from-file=spec.yaml=/dev/stdin", input=DDP_SPEC)
    for rank in (0, 1):
        node.kubectl("-n", NAMESPACE, "create", "configmap", f"ddp-{rank}-data", f"--from-file={data}")
    node.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ddp", "namespace": NAMESPACE},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ddp", "namespace": NAMESPACE},
         "spec": {"clusterIP": "None", "selector": {"ddp": "node-ddp"}, "ports": [{"name": "c10d", "port": 29500}]}}]}))
    master = f"ddp-0.ddp.{NAMESPACE}.svc.cluster.local"
    for rank in (0, 1):
        job = json.loads(step_job(f"ddp-{rank}", "pretrain", {"persistentVolumeClaim": {"claimName": "ddp"}}, data=True))
        pod = job["spec"]["template"]
        pod["metadata"]["labels"]["ddp"] = "node-ddp"
        pod["spec"].update(hostname=f"ddp-{rank}", subdomain="ddp")
        # The copy of the pages once per claim, whichever pod comes first.
        pod["spec"]["initContainers"][0]["command"][-1] = (
            "cd /workspace/runs && [ -d data ] || { mkdir -p p.$HOSTNAME && cp -L /data/*.html p.$HOSTNAME/ "
            "&& { mv -T p.$HOSTNAME data || rm -rf p.$HOSTNAME; }; }")
        # Rank 0's name resolves once its pod is Ready (the Service's endpoints); torchrun then rendezvouses.
        wait_dns = f"until python -c 'import socket; socket.gethostbyname(\"{master}\")' 2>/dev/null; do sleep 1; done"
        pod["spec"]["containers"][0]["command"] = ["sh", "-c", (
            f"{wait_dns}; exec torchrun --nnodes=2 --nproc-per-node=1 --node-rank={rank} --master-addr={master} "
            "--master-port=29500 \"$(command -v factory)\" step pretrain /spec/spec.yaml")]
        node.kubectl("apply", "-f", "-", input=json.dumps(job))
    started = time.monotonic()
    outcomes = [job_outcome(node, f"ddp-{rank}", timeout=900) for rank in (0, 1)]
    logs = [node.kubectl("-n", NAMESPACE, "logs", f"job/ddp-{rank}", check=False) for rank in (0, 1)]
    assert outcomes == ["succeeded", "succeeded"], logs[0][-3000:] + "\n---\n" + logs[1][-3000:]
    print(f"2-pod torchrun pretrain in {time.monotonic() - started:.0f} s")
    (done,) = [e for e in events(logs[0], "step.done") if e["uri"].startswith("s3://factory/store/pretrain/")]
    key = done["uri"].removeprefix("s3://factory/") + "/manifest.json"
    manifest = json.loads(boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test",
                                       aws_secret_access_key="test").get_object(Bucket="factory", Key=key)["Body"].read())
    assert manifest["metrics"]["world_size"] == 2.0, manifest["metrics"]


JOB_SPEC = """\
name: node-job
work_dir: runs/work
model: {preset: tiny}
storage: {root: s3://factory/store, endpoint_url: "S3"}
cluster: {training_operator: job, namespace: factory, service_account: factory-pipeline}
resources:
  pretrain:
    nodes: 2
    pvc: node-job
    secrets: {AWS_ACCESS_KEY_ID: factory-s3/AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: factory-s3/AWS_SECRET_ACCESS_KEY}
stages:
  curate: {sources: ["s3://factory/raw/node-job/"]}
  tokenize: {vocab_size: 512}
  pretrain: {seq_len: 64, micro_batch_size: 4, steps: 40, checkpoint_interval: 10, lr: 3.0e-3, warmup_steps: 5}
"""


def test_the_job_operator_runs_a_two_pod_torchrun_pretrain_through_the_launcher(node, s3, release, tmp_path, monkeypatch):
    """`cluster.training_operator: job` end to end: what a KFP launcher step runs (`launch_step` from this process, the
    chart's ConfigMap in its environment as `cluster.config_map` gives a step pod) creates one Job per rank (this 1.20
    server drops `completionMode`) under a headless Service; the pods run torchrun across the node, on the spec's
    claim as their work folder, and rank 0 publishes into the S3 store and logs to the chart's MLflow. The inputs come
    first, built here from raw pages in the same bucket, so every pod plans the same fingerprints from the same spec."""
    from kubernetes import config as k8s_config

    from factory.launch import JOB_LABEL
    from factory.orchestrate import launch_step
    from factory.spec import parse_spec_text
    from factory.steps import Executor

    store = boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    for page in sorted((REPO / "examples" / "data" / "smoke-html").glob("page-*.html"))[:60]:
        store.upload_file(str(page), "factory", f"raw/node-job/{page.name}")
    node.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "node-job", "namespace": NAMESPACE},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "test")
    chart_env = node.json("-n", NAMESPACE, "get", "configmap", f"{RELEASE}-config")["data"]
    for key in ("FACTORY_STORE_ROOT", "FACTORY_S3_ENDPOINT_URL", "FACTORY_S3_REGION", "FACTORY_TRACKING_URI"):
        monkeypatch.setenv(key, chart_env[key])
    monkeypatch.chdir(tmp_path)  # the spec's relative work folder: here in tmp_path, in the pods on the claim
    spec_text = JOB_SPEC.replace('"S3"', json.dumps(s3))
    for step in ("curate", "tokenize"):  # with this process's own tracking (a SQLite file in the work folder)
        Executor(parse_spec_text(spec_text)).run_step(step)
    executor = Executor(parse_spec_text(spec_text))
    name = f"node-job-pretrain-{executor.plan()['pretrain'].fingerprint[:10]}"
    api = k8s_config.new_client_from_config(config_file=node.env["KUBECONFIG"])
    started = time.monotonic()
    try:
        with structlog.testing.capture_logs() as logs:
            manifest = launch_step(executor, "pretrain", spec_text, api_client=api)
    except Exception:  # a failed rank's Job is kept: its pods' logs say why
        for pod in node.json("-n", NAMESPACE, "get", "pods", "-l", f"{JOB_LABEL}={name}")["items"]:
            print(pod["metadata"]["name"], node.kubectl("-n", NAMESPACE, "logs", pod["metadata"]["name"], check=False)[-3000:])
        raise
    print(f"launch_step pretrain (2 pods, torchrun) in {time.monotonic() - started:.0f} s")
    assert manifest["uri"].startswith("s3://factory/store/pretrain/"), manifest
    assert (manifest["metrics"]["world_size"], manifest["metrics"]["steps"]) == (2.0, 40.0), manifest["metrics"]
    # Both ranks built the model in one world, each in its own pod (the launcher streamed their logs to the step's).
    pod_events = [(e["pod"], json.loads(e["line"])) for e in logs if e["event"] == "job.log" and e["line"].startswith('{"')]
    built = sorted((event["rank"], event["world_size"], pod.rsplit("-", 2)[1]) for pod, event in pod_events
                   if event["event"] == "model_built")
    assert built == [(0, 2, "0"), (1, 2, "1")], built
    # What the launcher created goes once the step succeeded: its Jobs (their pods first), Service and spec ConfigMap.
    def launched():
        items = node.json("-n", NAMESPACE, "get", "jobs,services,configmaps,pods")["items"]
        return sorted(f"{i['kind']}/{i['metadata']['name']}" for i in items if i["metadata"]["name"].startswith(name))
    node.wait("the launcher's objects deleted", lambda: not launched(), timeout=120)


def test_helm_upgrade_then_uninstall_leave_it_clean(node, s3, chart, release):
    before = {p["metadata"]["name"] for p in pods(node) if p["metadata"]["labels"].get("app.kubernetes.io/component") == "mlflow"}
    result = node.helm("upgrade", RELEASE, str(chart), "-n", NAMESPACE, "--wait", "--timeout", "8m",
                       *values(s3, "mlflow.workers=2"))
    assert result.returncode == 0, result.stderr
    mlflow = [p for p in pods(node) if p["metadata"]["labels"].get("app.kubernetes.io/component") == "mlflow"
              and p["metadata"].get("deletionTimestamp") is None]
    assert mlflow and all(ready(p) for p in mlflow) and not {p["metadata"]["name"] for p in mlflow} & before
    assert "--workers=2" in mlflow[0]["spec"]["containers"][0]["args"]
    assert json.loads(node.helm("history", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)[-1]["status"] == "deployed"

    result = node.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")
    assert result.returncode == 0, result.stderr
    node.wait("the release's pods gone", lambda: not pods(node), timeout=120)
    left = node.json("-n", NAMESPACE, "get", "all,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies",
                     "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    # What the chart keeps on purpose (helm.sh/resource-policy: keep): its generated credentials, so a reinstall
    # finds the database it initialised.
    kept = sorted(f"{i['kind']}/{i['metadata']['name']}" for i in left)
    assert all(i["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep" for i in left), kept
    print(f"kept after uninstall: {kept}")
