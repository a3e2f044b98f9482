"""What a KFP step does, kept out of the components so it is importable and testable without KFP.

Every component calls `run_component(step, spec_text, job_id, upstream, output, plan_text)`:

1. parse the spec (passed to the pipeline as JSON text) and take the plan the pipeline carries (every
   step's fingerprint, computed once when the run started), so no step reads raw inputs again,
2. find or create the pipeline's parent MLflow run, tagged with the KFP job id (the first step creates it;
   the exit handler closes it with `finish_pipeline`),
3. check that the upstream artifacts KFP handed over are the ones the plan names (same fingerprints),
4. run the step through the executor (reuse or run, then publish) or, for a step that spans nodes or
   GPUs, launch it as a cluster job (its kind's launcher: Kubeflow Trainer running torchrun, or KubeRay)
   that runs `factory step` on every rank, watch it, and pick up what it published,
5. describe the published artifact on the KFP output: `metadata` carries the store URI, fingerprint and
   kind, and the output file holds the manifest, so the bytes stay in the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

import yaml

from factory.errors import UserError
from factory.kinds import KINDS
from factory.lineage import Lineage
from factory.logs import get_logger
from factory.endpoints import cluster_environ, with_cluster_defaults
from factory.spec import parse_spec
from factory.steps import Executor

log = get_logger("factory.orchestrate")
TAG_JOB = "factory.kfp_job_id"


class KfpArtifact(Protocol):
    """The parts of `kfp.dsl.Artifact` used here (duck-typed so `factory` never imports kfp)."""

    path: str
    metadata: dict[str, Any]


def parent_run(lineage: Lineage, job_id: str, spec_name: str, spec_text: str) -> str:
    """The pipeline's parent run for KFP job `job_id`, created by the first step that asks.

    It is named `<spec name>-<UTC start time>` (`smoke-20261130-061502`), so attempts can be told apart.
    """
    found = lineage.client.search_runs([lineage.experiment_id], filter_string=f"tags.`{TAG_JOB}` = '{job_id}'", max_results=1)
    if found:
        return found[0].info.run_id
    return lineage.start_pipeline(pipeline_run_name(spec_name), spec_text, tags={TAG_JOB: job_id})


def pipeline_run_name(spec_name: str, started: datetime | None = None) -> str:
    """`<spec name>-<UTC start time>`: the name of a pipeline's parent run in MLflow."""
    return f"{spec_name}-{(started or datetime.now(timezone.utc)).strftime('%Y%m%d-%H%M%S')}"


def run_component(step: str, spec_text: str, job_id: str, upstream: Mapping[str, KfpArtifact], output: KfpArtifact,
                  plan_text: str = "", run: Callable[..., Any] | None = None) -> dict[str, Any]:
    """One KFP step. `plan_text` is the pipeline's plan (`Executor.plan_json()`); when the pipeline was
    started without one (empty), the step plans the spec itself, which reads its raw inputs. `run`, when
    given, takes the place of the step kind's `run` (`Executor.run_step`)."""
    spec = with_cluster_defaults(parse_spec(yaml.safe_load(spec_text)))  # the chart's ConfigMap fills unset endpoints
    executor = Executor(spec, plan_json=plan_text or None)
    executor.parent_run_id = parent_run(executor.lineage, job_id, spec.name, spec_text)
    plan = executor.plan()
    upstream = {k: v for k, v in upstream.items() if v is not None}  # optional inputs the pipeline left unwired
    for name, art in upstream.items():
        got = art.metadata.get("fingerprint")
        want = plan[plan[step].inputs[name]].fingerprint
        if got != want:
            raise UserError(f"step {step}: input {name!r} has fingerprint {got}, but the plan has {want}; recompile the pipeline")
    if spec.needs_launcher(step):
        manifest = launch_step(executor, step, spec_text)
    else:
        manifest = executor.run_step(step, run=run)
    output.metadata.update({"uri": manifest["uri"], "fingerprint": manifest["fingerprint"], "kind": manifest["kind"], "stage": step})
    with open(output.path, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    return manifest


def finish_pipeline(spec_text: str, job_id: str, state: str) -> str:
    """Close the parent run of KFP job `job_id` with the pipeline's final state, after marking its step runs
    that are still RUNNING (their pods died) KILLED; returns its run id."""
    spec = with_cluster_defaults(parse_spec(yaml.safe_load(spec_text)))  # the chart's ConfigMap fills unset endpoints
    lineage = Lineage(spec.tracking_uri(), spec.experiment())
    run_id = parent_run(lineage, job_id, spec.name, spec_text)
    lineage.kill_children(run_id)  # every step task has ended: a step run still RUNNING lost its pod (a retry may have won)
    status = "FINISHED" if state == "SUCCEEDED" else "FAILED"
    lineage.end_pipeline(run_id, status)
    log.info("pipeline.done", mlflow_run_id=run_id, state=state)
    return run_id


def launch_step(executor: Executor, stage: str, spec_text: str, api_client=None, cancel=None) -> dict[str, Any]:
    """Run step `stage` as a cluster job and return the manifest the job published.

    The job's pods run `torchrun ... factory step STEP SPEC --parent-run-id RUN` (or, for a kind whose
    launcher is Ray, such as curate, a RayJob entrypoint); their rank 0 publishes the artifact into the store and logs under this pipeline's parent
    run. Failure, timeout and cancellation come from `factory.launch.Launcher`, which deletes what it
    created when the step is cancelled.
    """
    # the kubernetes client (about 1 s) only for a launcher step: every KFP step imports this module
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from factory.launch import Launcher, rayjob_manifest, torchrun_command, training_manifest
    from factory.launch.manifests import SPEC_PATH

    spec = executor.spec
    step = executor.plan()[stage]
    existing = executor.reuse(step)
    if existing is not None:
        return existing
    if api_client is None:
        try:
            k8s_config.load_incluster_config()
        except k8s_config.ConfigException:
            k8s_config.load_kube_config()
        api_client = k8s.ApiClient()
    namespace = spec.cluster.namespace or _pod_namespace()
    res = spec.resources_for(stage)
    name = f"{spec.name}-{stage.replace('_', '-')}-{step.fingerprint[:10]}"  # a Kubernetes name has no underscores
    common = dict(
        name=name, namespace=namespace, image=spec.image_for(stage), spec_configmap=f"{name}-spec",
        cpu=res.cpu, memory=res.memory, node_selector=res.node_selector,
        tolerations=[t.model_dump(exclude_none=True) for t in res.tolerations], shm_size=res.shm_size,
        secret_env={env: tuple(ref.split("/", 1)) for env, ref in res.secrets.items()},
        service_account=spec.cluster.service_account, labels=spec.cluster.pod_labels, work_dir=spec.work_dir, pvc=res.pvc,
        env=cluster_environ(),  # the job's pods find the store and MLflow as this step did
    )
    parent = ["--parent-run-id", executor.parent_run_id] if executor.parent_run_id else []
    if KINDS[spec.kind_of(stage)].launcher == "ray":
        entrypoint = " ".join(["python", "-m", "cli", "step", stage, SPEC_PATH, *parent])
        manifest = rayjob_manifest(workers=res.nodes, stage=stage, entrypoint=entrypoint, **common)
    else:
        command = [*torchrun_command(stage, res.nodes, max(res.gpus, 1)), *parent]
        manifest = training_manifest(spec.cluster.training_operator, nodes=res.nodes, gpus_per_node=res.gpus,
                                     stage=stage, command=command, gpu_resource=res.gpu_type or "nvidia.com/gpu", **common)
    log.info("step.launch", step=stage, kind=manifest["kind"], job=name, namespace=namespace, nodes=res.nodes, gpus=res.gpus)
    result = Launcher(api_client, namespace).launch(manifest, {"spec.yaml": spec_text}, configmap_name=f"{name}-spec",
                                                    timeout_s=spec.cluster.job_timeout_s, cancel=cancel)
    published = executor.store.complete(step.key)
    if published is None:
        raise UserError(f"step {stage}: job {result.name} succeeded but published no artifact at {executor.store.uri(step.key)}")
    return published


def _pod_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip()
    except OSError:
        return "default"
