"""The whole factory as one frozen pydantic model, loaded from YAML.

    spec = load_spec("examples/smoke.yaml")

A wrong field raises `SpecError` whose message names the field by its dotted path
(`stages.pretrain.lr: Input should be a valid number`); the CLI prints it and exits with code 2.

Relative paths (work folder, local store root, stage inputs such as `stages.curate.sources`) are
kept as written in the spec, so a compiled pipeline does not depend on the machine it was compiled
on; `Spec.resolved(base)` turns them into absolute paths just before a run.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.errors import InputError, SpecError
from factory.model import ModelSpec
from factory.system_tools import check_system_tools


@dataclass(frozen=True)
class StageDef:
    """Where a stage's code lives and which upstream stages feed its named inputs.

    An input named in `optional` is wired only when its upstream stage is in the spec; the stage runs
    without it otherwise (its config's `required_inputs()` may still ask for it).
    """

    module: str
    inputs: dict[str, str]
    code: tuple[str, ...] = ()  # further packages whose source is part of the stage's code version
    optional: frozenset[str] = frozenset()


# The pipeline, in dependency order. Input names are what a stage's `run` finds in `inputs`.
STAGES: dict[str, StageDef] = {
    "quality": StageDef("factory.curate.quality.stage", {}, code=("factory.curate.quality", "factory.curate.dedup.embedding")),
    # curate decontaminates against the evaluate stage's built-in sets, so they are part of its code
    "curate": StageDef("factory.curate", {"quality": "quality"}, code=("factory.evaluate.sets",), optional=frozenset({"quality"})),
    "synth": StageDef("factory.synth", {"corpus": "curate"}),
    "tokenize": StageDef("factory.tokenize", {"corpus": "curate", "synthetic": "synth"}, optional=frozenset({"synthetic"})),
    "pretrain": StageDef("factory.train.pretrain", {"tokens": "tokenize"}, code=("factory.model", "factory.train", "factory.precision")),
    "evaluate": StageDef("factory.evaluate", {"model": "pretrain", "tokens": "tokenize"}, code=("factory.tokenize",)),
    "release": StageDef("factory.release", {"model": "pretrain", "tokens": "tokenize", "evaluation": "evaluate"}),
}


def stage_module(name: str):
    return importlib.import_module(STAGES[name].module)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class StorageSpec(_Frozen):
    """Where artifacts are stored."""

    root: str = Field("runs/store", description="Artifact store: a folder path, or s3://bucket/prefix")
    endpoint_url: str | None = Field(None, description="S3 endpoint URL for S3-compatible services (MinIO, Ceph); None for AWS")
    region: str | None = Field(None, description="S3 region name")


class TrackingSpec(_Frozen):
    """Where lineage and metrics go."""

    uri: str | None = Field(None, description="MLflow tracking URI; None means a SQLite database in the work folder")
    experiment: str | None = Field(None, description="MLflow experiment name; defaults to the spec's name")
    register_models: bool = Field(True, description="Register checkpoints and releases as model versions")


class Toleration(_Frozen):
    key: str = Field(..., description="Taint key to tolerate")
    operator: Literal["Equal", "Exists"] = Field("Equal", description="How the key is matched")
    value: str | None = Field(None, description="Taint value (with operator Equal)")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(None, description="Taint effect")


class Resources(_Frozen):
    """What one stage's step asks of the cluster (applied with kfp.kubernetes at compile time)."""

    cpu: str | None = Field(None, description="CPU request and limit, e.g. '4'")
    memory: str | None = Field(None, description="Memory request and limit, e.g. '16G'")
    gpus: int = Field(0, ge=0, description="GPUs per node")
    gpu_type: str | None = Field(None, description="Accelerator type label, e.g. 'nvidia.com/gpu'")
    nodes: int = Field(1, ge=1, description="Nodes; more than one (or gpus > 1) runs the stage through a launcher")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pod must match")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints the pod tolerates")
    shm_size: str | None = Field(None, description="Size of a memory-backed /dev/shm volume, e.g. '16Gi'")
    pvc: str | None = Field(None, description="Name of a PersistentVolumeClaim mounted at the work folder")
    image: str | None = Field(None, description="Container image for this stage; defaults to images.cpu or images.gpu")
    secrets: dict[str, str] = Field(default_factory=dict, description="Env var -> 'secret-name/key' mounted from Kubernetes Secrets")


class ClusterSpec(_Frozen):
    """How steps run on Kubernetes (ignored by local runs)."""

    namespace: str | None = Field(None, description="Namespace for launched jobs; default: the step pod's own namespace")
    service_account: str = Field("factory-pipeline", description="Service account of launched jobs (the Helm chart creates it)")
    training_operator: Literal["trainjob", "pytorchjob"] = Field(
        "trainjob", description="Kubeflow Trainer v2 TrainJob, or the Training Operator v1 PyTorchJob"
    )
    pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"nemotron-factory/pipeline-step": "true"},
        description="Labels on every step and job pod (the chart's NetworkPolicies admit pods with them)",
    )
    job_timeout_s: float | None = Field(None, description="Fail a launched job that runs longer than this")


class Images(_Frozen):
    cpu: str = Field("nemotron-factory/factory-cpu:0.1.0", description="Image for CPU steps (docker/Dockerfile.cpu)")
    gpu: str = Field("nemotron-factory/factory-gpu:0.1.0", description="Image for GPU steps (docker/Dockerfile.gpu)")


def _stage_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in STAGES:
        cfg = stage_module(name).Config
        fields[name] = (cfg | None, Field(None, description=f"Config of the {name} stage; absent means the stage is off"))
    return fields


def _build_stages_model() -> type[BaseModel]:
    from pydantic import create_model

    return create_model("Stages", __config__=ConfigDict(frozen=True, extra="forbid"), **_stage_fields())


Stages = _build_stages_model()


class Spec(_Frozen):
    """One factory run: which stages, their configs, model preset, storage, tracking, resources."""

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9-]*$", description="Run name (lowercase, digits, dashes)")
    work_dir: str = Field("runs/work", description="Local working folder: staging, caches, the default tracking database")
    model: ModelSpec = Field(default_factory=ModelSpec, description="Model preset and overrides")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Artifact store")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking")
    images: Images = Field(default_factory=Images, description="Container images")
    cluster: ClusterSpec = Field(default_factory=ClusterSpec, description="Kubernetes settings for launched jobs")
    stages: Stages = Field(..., description="Stage configs; a stage that is absent does not run")  # type: ignore[valid-type]
    resources: dict[str, Resources] = Field(default_factory=dict, description="Per-stage cluster resources")

    @model_validator(mode="before")
    @classmethod
    def _model_into_pretrain(cls, data: Any) -> Any:
        # The top-level model preset is the pretrain stage's model unless that stage names its own.
        if isinstance(data, dict) and isinstance(data.get("stages"), dict):
            pre = data["stages"].get("pretrain")
            if isinstance(pre, dict) and "model" not in pre and "model" in data:
                data = {**data, "stages": {**data["stages"], "pretrain": {**pre, "model": data["model"]}}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _eval_sets_into_curate(cls, data: Any) -> Any:
        # The factory must not train on what it evaluates on: evaluate's own task files join curate's
        # decontamination sets (its built-in sets are there already, through `builtin_sets`).
        stages = data.get("stages") if isinstance(data, dict) else None
        if not isinstance(stages, dict) or not isinstance(stages.get("curate"), dict) or not isinstance(stages.get("evaluate"), dict):
            return data
        task_files = stages["evaluate"].get("task_files")
        sets = stages["curate"].get("decontamination_sets", [])
        if not isinstance(task_files, list) or not isinstance(sets, list):
            return data  # the field validators report the wrong type
        listed = {os.path.normpath(s) for s in sets if isinstance(s, str)}
        missing = [f for f in task_files if isinstance(f, str) and os.path.normpath(f) not in listed]
        if not missing:
            return data
        return {**data, "stages": {**stages, "curate": {**stages["curate"], "decontamination_sets": [*sets, *missing]}}}

    @model_validator(mode="after")
    def _check(self) -> "Spec":
        enabled = self.enabled()
        for name in enabled:
            stage = STAGES[name]
            required = {k for k in stage.inputs if k not in stage.optional} | self.stage_config(name).required_inputs()
            for input_name in sorted(required):
                upstream = stage.inputs[input_name]
                if upstream not in enabled:
                    raise ValueError(f"stages.{name}: needs stage {upstream!r}, which is absent from stages")
        for name in self.resources:
            if name not in STAGES:
                raise ValueError(f"resources.{name}: no such stage (stages are {', '.join(STAGES)})")
        return self

    def enabled(self) -> list[str]:
        """Names of the stages that run, in dependency order."""
        return [n for n in STAGES if getattr(self.stages, n) is not None]

    def inputs_of(self, name: str) -> dict[str, str]:
        """Input name -> upstream stage of `name` in this spec (optional inputs only when their stage is on)."""
        enabled = self.enabled()
        return {k: up for k, up in STAGES[name].inputs.items() if up in enabled or k not in STAGES[name].optional}

    def stage_config(self, name: str):
        cfg = getattr(self.stages, name)
        if cfg is None:
            raise SpecError(f"stages.{name}: the stage is not in this spec")
        return cfg

    def resources_for(self, name: str) -> Resources:
        return self.resources.get(name, Resources())

    def image_for(self, name: str) -> str:
        res = self.resources_for(name)
        return res.image or (self.images.gpu if res.gpus > 0 else self.images.cpu)

    def needs_launcher(self, name: str) -> bool:
        """A stage that spans nodes or GPUs runs as a cluster job, which its KFP step launches and watches."""
        res = self.resources_for(name)
        return res.nodes > 1 or res.gpus > 1

    def tracking_uri(self) -> str:
        if self.tracking.uri:
            return self.tracking.uri
        return f"sqlite:///{Path(self.work_dir) / 'mlflow.db'}"

    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    def resolved(self, base: Path | None = None) -> "Spec":
        """The same spec with relative local paths made absolute against `base` (default: the current folder)."""
        base = (base or Path.cwd()).resolve()

        def absolute(p: str) -> str:
            return p if "://" in p or Path(p).is_absolute() else str((base / p).resolve())

        data = self.model_dump(mode="json")
        data["work_dir"] = absolute(data["work_dir"])
        data["storage"]["root"] = absolute(data["storage"]["root"])
        for name in self.enabled():
            for path in type(self.stage_config(name)).external_fields():
                *parents, field = path.split(".")
                node = data["stages"][name]
                for part in parents:
                    node = node.get(part) or {}
                if node.get(field) is not None:
                    value = node[field]
                    node[field] = [absolute(v) for v in value] if isinstance(value, list) else absolute(value)
        spec = Spec.model_validate(data)
        check_system_tools(spec)  # a spec that needs an absent system program fails here, before any step
        return spec

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling or remove it)"
        if e["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        # Whole-spec checks already name the fields they are about.
        lines.append(f"{path}: {msg}" if path else msg)
    return "\n".join(dict.fromkeys(lines))


def parse_spec(data: Any, source: str = "<spec>") -> Spec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the spec must be a YAML mapping at the top level")
    try:
        return Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(e)) from None


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file; every problem is a `SpecError`/`InputError` with a clear message."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: spec file not found") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the spec file ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return parse_spec(data, str(path))
