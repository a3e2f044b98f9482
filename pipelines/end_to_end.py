"""The end-to-end pipeline: one task per step of the spec (named for the step), wired by its inputs.

    factory compile examples/smoke.yaml -o pipeline.yaml      # KFP IR YAML
    factory run examples/smoke.yaml                           # the same pipeline through kfp.local

Per-stage Kubernetes settings from `spec.resources` (CPU, memory, GPUs, node selector, tolerations,
/dev/shm, PVC, secrets) are applied here with `kfp.kubernetes`, never by editing the YAML. KFP's own
cache is off: the factory's executor decides reuse by fingerprint, across pipelines and runs.

The pipeline has two parameters: `spec_json` (the spec) and `plan_json` (every step's fingerprint, as
`Executor.plan_json()` writes it). `factory run` computes the plan once, before the runner starts, and
passes it, so no step reads raw inputs to re-derive it; left empty (the compiled default, which must not
depend on the files of the machine it was compiled on), each step plans the spec itself.

`factory run` with some steps already published runs only the sub-DAG of the steps that must run
(`build_pipeline(spec, published=...)`): each published input enters through a `dsl.importer` of its
store URI carrying the manifest's fingerprint, so a rerun step gets the same input as in the full DAG and
only the missing steps start a subprocess. That pipeline takes a third parameter, `job_id`, naming the
parent MLflow run `factory run` opened (and already logged the reused steps under). `factory compile` and
`submit` always build the full DAG.

A step that fans out (its kind has a `fanout` in the registry, and its config's `fan_out(local)` says so: a mix
step with `proxy_runner: parallel_for`, or `auto` in a compiled pipeline; `factory run` builds with `local=True`,
where auto means the step's own process pool) becomes several tasks (`factory.fanout`): `<step>-prepare`, then per
round a `dsl.ParallelFor` of `<step>-<work>-<r>` tasks (mix: `<step>-proxy-<r>`, one pod per proxy), each later
round planned by `<step>-round-<r>` from the `dsl.Collected` outputs of the round before, and last the task named
for the step, which publishes its artifact. Every one of its pods gets `resources.<step>`; the config's
parallelism (mix: `proxy_pods`) limits how many tasks of a round run at once.
"""
# No `from __future__ import annotations` here: KFP reads the pipeline function's annotations as types.


from collections.abc import Mapping
from typing import Any, Optional

from kfp import dsl, kubernetes

from components import build
from factory.endpoints import ENV_S3_ENDPOINT_URL, ENV_S3_REGION, ENV_STORE_ROOT, ENV_TRACKING_URI
from factory.kinds import KINDS
from factory.spec import Resources, Spec

ENDPOINT_KEYS = (ENV_STORE_ROOT, ENV_S3_ENDPOINT_URL, ENV_S3_REGION, ENV_TRACKING_URI)


def cluster_settings(task: dsl.PipelineTask, spec: Spec) -> None:
    """Labels every step pod carries, and the chart's store/tracking settings as env vars when named."""
    for key, value in sorted(spec.cluster.pod_labels.items()):
        kubernetes.add_pod_label(task, label_key=key, label_value=value)
    if spec.cluster.config_map:
        kubernetes.use_config_map_as_env(task, config_map_name=spec.cluster.config_map,
                                         config_map_key_to_env={key: key for key in ENDPOINT_KEYS})


def apply_resources(task: dsl.PipelineTask, res: Resources, work_dir: str, launcher: bool) -> None:
    """Kubernetes settings of one step's pod.

    A launcher step (a stage spanning nodes or GPUs) only creates and watches the cluster job, so it gets
    the job's secrets and labels but none of its CPU, GPU, memory or node placement.
    """
    if launcher:
        res = Resources(secrets=res.secrets)
    if res.cpu:
        task.set_cpu_request(res.cpu).set_cpu_limit(res.cpu)
    if res.memory:
        task.set_memory_request(res.memory).set_memory_limit(res.memory)
    if res.gpus:
        task.set_accelerator_type(res.gpu_type or "nvidia.com/gpu").set_accelerator_limit(res.gpus)
    for key, value in sorted(res.node_selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for tol in res.tolerations:
        kubernetes.add_toleration(task, key=tol.key, operator=tol.operator, value=tol.value, effect=tol.effect)
    if res.shm_size:
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=res.shm_size)
    if res.pvc:
        kubernetes.mount_pvc(task, pvc_name=res.pvc, mount_path=work_dir)
    by_secret: dict[str, dict[str, str]] = {}
    for env, ref in sorted(res.secrets.items()):
        secret, _, key = ref.partition("/")
        by_secret.setdefault(secret, {})[key] = env
    for secret, mapping in by_secret.items():
        kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=mapping)


def fan_out(spec: Spec, name: str, local: bool) -> tuple[int, int | None] | None:
    """(rounds, tasks of a round at once) when step `name` runs as several tasks, else None: its kind fans out
    (the registry) and its config asks for it (see the module docstring)."""
    if KINDS[spec.kind_of(name)].fanout is None or spec.needs_launcher(name):
        return None
    return spec.stage_config(name).fan_out(local)


def add_fanout_tasks(spec: Spec, name: str, spec_json: str, plan_json: str, job_id: str, upstream: Mapping[str, Any],
                     rounds: int, parallelism: int | None):
    """The tasks of a fanned-out step; returns its last task, named for the step, which outputs its artifact."""
    kind = spec.kind_of(name)
    image = spec.image_for(name)

    def task(part: str, task_name: str, **kwargs):
        t = build(kind, image, step=task_name, part=part)(spec=spec_json, step=name, plan=plan_json, **kwargs)
        t.set_display_name(task_name).set_caching_options(False)
        apply_resources(t, spec.resources_for(name), spec.work_dir, launcher=False)
        cluster_settings(t, spec)
        return t

    jobs = task("prepare", f"{name}-prepare", **upstream).output
    work = None
    for r in range(1, rounds + 1):
        if work is not None:
            jobs = task("round", f"{name}-round-{r}", number=r, results=dsl.Collected(work.output)).output
        with dsl.ParallelFor(jobs, parallelism=parallelism) as job:
            work = task("work", f"{name}-{KINDS[kind].fanout.work}-{r}", job=job)
    return task("finish", name, job_id=job_id, results=dsl.Collected(work.output), **upstream)


def build_pipeline(spec: Spec, published: Optional[Mapping[str, Mapping[str, Any]]] = None, local: bool = False):
    """A KFP pipeline function for `spec`; `spec_json` defaults to the spec itself, `plan_json` to ''.
    `local`: built for `factory run` (kfp.local), where a step fans out only if its config asks for it there too
    (a mix step's proxies run in its process pool unless its config asks for parallel_for).

    The spec travels as one-line JSON: KFP copies parameter defaults into a YAML comment at the top of
    the compiled file, and a multi-line default would break out of that comment.

    With `published` (manifests by step name), those steps get no task: the pipeline holds only the other
    steps, fed the published artifacts through importers, and takes the parent run's `job_id` as a parameter.
    """
    spec_json = spec.model_dump_json(exclude_none=True)
    description = f"Model factory run {spec.name!r}: {' -> '.join(spec.enabled())}"

    def add_steps(spec_json: str, plan_json: str, job_id: str) -> None:
        finish = build("finish", spec.images.cpu)(spec=spec_json, job_id=job_id)
        finish.set_display_name("close-lineage").set_caching_options(False)
        cluster_settings(finish, spec)
        with dsl.ExitHandler(finish, name="factory-steps"):
            outputs: dict[str, Any] = {}

            def output_of(name: str):
                if name not in outputs:  # a published step: its artifact, imported from the store
                    manifest = published[name]
                    importer = dsl.importer(artifact_uri=manifest["uri"], artifact_class=dsl.Artifact, reimport=False,
                                            metadata={"uri": manifest["uri"], "fingerprint": manifest["fingerprint"],
                                                      "kind": manifest["kind"], "stage": name})
                    importer.set_display_name(f"{name}-published")
                    outputs[name] = importer.output
                return outputs[name]

            for name in spec.enabled():
                if published and name in published:
                    continue
                upstream = {inp: output_of(up) for inp, up in spec.inputs_of(name).items()}
                fanned = fan_out(spec, name, local)
                if fanned is not None:
                    outputs[name] = add_fanout_tasks(spec, name, spec_json, plan_json, job_id, upstream,
                                                     *fanned).outputs["artifact"]
                    continue
                launcher = spec.needs_launcher(name)
                component = build(spec.kind_of(name), spec.images.cpu if launcher else spec.image_for(name), step=name)
                task = component(spec=spec_json, step=name, plan=plan_json, job_id=job_id, **upstream)
                task.set_display_name(name).set_caching_options(False)
                apply_resources(task, spec.resources_for(name), spec.work_dir, launcher)
                cluster_settings(task, spec)
                outputs[name] = task.outputs["artifact"]

    if published is None:
        @dsl.pipeline(name=f"factory-{spec.name}", description=description)
        def end_to_end(spec_json: str = spec_json, plan_json: str = ""):
            add_steps(spec_json, plan_json, dsl.PIPELINE_JOB_ID_PLACEHOLDER)

        return end_to_end

    @dsl.pipeline(name=f"factory-{spec.name}", description=description)
    def end_to_end_partial(job_id: str, spec_json: str = spec_json, plan_json: str = ""):
        add_steps(spec_json, plan_json, job_id)

    return end_to_end_partial
