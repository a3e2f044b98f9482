"""The whole factory as one frozen pydantic model, loaded from YAML.

    spec = load_spec("examples/smoke.yaml")

A wrong field raises `SpecError` whose message names the field by its dotted path
(`stages.pretrain.lr: Input should be a valid number`); the CLI prints it and exits with code 2.

Relative paths (work folder, local store root, stage inputs such as `stages.curate.sources`) are
kept as written in the spec, so a compiled pipeline does not depend on the machine it was compiled
on; `Spec.resolved(base)` turns them into absolute paths just before a run.

A spec names its steps in one of two forms. `stages:` (stage name -> config) runs the default recipe
(`factory.kinds.KINDS`, in order), each step named for its stage. `steps:` names each step and gives
its kind, config and inputs by step name, so one run may hold several steps of one kind:

    steps:
      pretrain:   {kind: pretrain, config: {steps: 300}, inputs: {tokens: tokenize}}
      eval_base:  {kind: evaluate, config: {max_batches: 2}, inputs: {model: pretrain, tokens: tokenize}}
      ...

A wiring mistake names its path (`steps.eval_final.inputs.model: no step 'x'`).

The file itself is read with limits, so no spec can stall or exhaust the loader: at most `MAX_SPEC_BYTES` of a
regular file (a device such as `/dev/zero` is refused), at most `MAX_SPEC_NODES` values once YAML aliases are
expanded (an alias bomb is refused before anything walks it), and a key written twice in one mapping is an error
naming both lines (YAML would silently keep the last).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from factory.code_version import LibraryPolicy
from factory.cost.layout import ParallelLayout
from factory.errors import InputError, SpecError
from factory.gvendi import GVendiSettings
from factory.kinds import KINDS, RECIPE
from factory.model import ModelSpec
from factory.system_tools import check_system_tools


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class StorageSpec(_Frozen):
    """Where artifacts are stored."""

    root: str = Field("runs/store", description="Artifact store: a folder path, or s3://bucket/prefix")
    endpoint_url: str | None = Field(None, description="S3 endpoint URL for S3-compatible services (MinIO, Ceph); None for AWS")
    region: str | None = Field(None, description="S3 region name")

    @field_validator("root")
    @classmethod
    def _a_folder_of_its_own(cls, value: str) -> str:
        return value if "://" in value else _own_folder(value)


def _own_folder(value: str) -> str:
    """A local folder the factory fills (`work_dir`, a local store): written out, and not the file system's root."""
    if not value.strip():
        raise ValueError("empty: name a folder (an empty path would be the folder the command runs in)")
    if os.path.normpath(value.strip()) in ("/", "//"):
        raise ValueError("the file system's root cannot be the factory's folder; name a folder of its own")
    return value


class TrackingSpec(_Frozen):
    """Where lineage and metrics go."""

    uri: str | None = Field(None, description="MLflow tracking URI; None means a SQLite database in the work folder")
    experiment: str | None = Field(None, description="MLflow experiment name; defaults to the spec's name")
    register_models: bool = Field(True, description="Register checkpoints and releases as model versions")


class FingerprintSpec(_Frozen):
    """What besides configs, inputs, raw inputs and code a step's fingerprint holds."""

    libraries: LibraryPolicy = Field(
        "exact", description="Versions of the libraries each step's code calls (factory.code_version.libraries): "
        "'exact' reruns a step when one changes, 'minor' only when a major.minor changes, 'none' never.")


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
    parallel: ParallelLayout | None = Field(
        None, description="Parallel layout of a training step (data/tensor/pipeline/context sizes, sharding); "
        "None: data parallel over nodes x gpus. `factory plan` costs the step with it."
    )

    @model_validator(mode="after")
    def _parallel_covers_the_gpus(self) -> "Resources":
        devices = self.nodes * max(self.gpus, 1)
        if self.parallel is not None and self.parallel.gpus != devices:
            raise ValueError(f"parallel: data x tensor x pipeline x context = {self.parallel.gpus}, but nodes x gpus = {devices}")
        return self


class ClusterSpec(_Frozen):
    """How steps run on Kubernetes (ignored by local runs)."""

    namespace: str | None = Field(None, description="Namespace for launched jobs; default: the step pod's own namespace")
    service_account: str = Field("factory-pipeline", description="Service account of launched jobs (the Helm chart creates it)")
    training_operator: Literal["trainjob", "pytorchjob", "job"] = Field(
        "trainjob", description="Kubeflow Trainer v2 TrainJob, the Training Operator v1 PyTorchJob, or 'job': a plain "
        "Kubernetes Indexed Job and headless Service, no operator needed (one Job per rank where the API server has "
        "no Indexed Jobs, before 1.21)"
    )
    pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"nemotron-factory/pipeline-step": "true"},
        description="Labels on every step and job pod (the chart's NetworkPolicies admit pods with them)",
    )
    job_timeout_s: float | None = Field(None, description="Fail a launched job that runs longer than this")
    config_map: str | None = Field(
        None, description="ConfigMap whose store and tracking settings (FACTORY_STORE_ROOT, FACTORY_S3_ENDPOINT_URL, "
                          "FACTORY_S3_REGION, FACTORY_TRACKING_URI) every step pod gets as env vars: the chart's "
                          "'<release>-config' (factory.endpoints reads them where the spec leaves a setting out)")


class Images(_Frozen):
    cpu: str = Field("nemotron-factory/factory-cpu:0.1.0", description="Image for CPU steps (docker/Dockerfile.cpu)")
    gpu: str = Field("nemotron-factory/factory-gpu:0.1.0", description="Image for GPU steps (docker/Dockerfile.gpu)")


def _build_stages_model() -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (k.config | None, Field(None, description=f"Config of the {name} stage; absent means the stage is off"))
        for name, k in KINDS.items()
    }
    return create_model("Stages", __config__=ConfigDict(frozen=True, extra="forbid"), **fields)


def _build_step_model() -> Any:
    """One model per kind (`kind`, its typed `config`, `inputs`), joined as a union tagged by `kind`."""
    models = []
    for name, k in KINDS.items():
        models.append(create_model(
            f"{name.capitalize()}Step", __config__=ConfigDict(frozen=True, extra="forbid", validate_default=True),
            kind=(Literal[name], Field(..., description="Stage kind (a key of factory.kinds.KINDS)")),
            config=(k.config, Field({}, description=f"Config of the {name} stage")),
            inputs=(dict[str, str], Field(default_factory=dict, description="Input name -> the step that feeds it")),
        ))
    return Annotated[Union[tuple(models)], Field(discriminator="kind")]


Stages = _build_stages_model()
Step = _build_step_model()

STEP_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
# a step's name is a folder of the store and of the work folder and part of KFP task and Kubernetes object names
# (63 characters at most, with the spec's name and a fingerprint beside it)
MAX_STEP_NAME = 40
RESERVED_STEP_NAMES = ("finish",)  # the pipeline's exit handler task
MAX_SPEC_BYTES = 1 << 20  # a spec is a few KiB of YAML
MAX_SPEC_NODES = 1_000_000  # values in the spec once aliases are expanded


@dataclass(frozen=True)
class SpecDefaults:
    """What a kind's `spec_defaults` hook reads besides its own raw config: the raw spec, every file the spec's
    evaluating steps read (their kinds' `evaluated_files` hooks), and the names of the inputs the step will have
    wired (its own `inputs:`, or for a `stages:` spec the recipe's wiring among the stages it lists)."""

    data: dict[str, Any]
    evaluated_files: list[str]
    wired: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StepDef:
    """A step of a spec, wired: its name, kind, config and inputs (input name -> upstream step name)."""

    name: str
    kind: str
    config: Any
    inputs: dict[str, str]


class Spec(_Frozen):
    """One factory run: its steps (named, or the default recipe's stages), model preset, storage, tracking, resources.

    A spec gives either `stages` (stage name -> config; the default recipe wires them, each step named
    for its stage) or `steps` (step name -> kind, config and inputs by step name; several steps may share
    a kind).
    """

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=MAX_STEP_NAME,
                      description="Run name (lowercase, digits, dashes; at most 40 characters)")
    work_dir: str = Field("runs/work", description="Local working folder: staging, caches, the default tracking database")
    model: ModelSpec = Field(default_factory=ModelSpec, description="Model preset and overrides")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Artifact store")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking")
    images: Images = Field(default_factory=Images, description="Container images")
    cluster: ClusterSpec = Field(default_factory=ClusterSpec, description="Kubernetes settings for launched jobs")
    stages: Stages | None = Field(None, description="Default recipe: stage configs; a stage that is absent does not run")  # type: ignore[valid-type]
    steps: dict[str, Step] | None = Field(None, description="Named steps: kind, config and inputs by step name")  # type: ignore[valid-type]
    resources: dict[str, Resources] = Field(default_factory=dict, description="Per-step cluster resources, by step name")
    fingerprint: FingerprintSpec = Field(default_factory=FingerprintSpec,
                                         description="What a step's fingerprint holds beyond its config, inputs and code")
    gvendi: GVendiSettings | None = Field(
        None, description="G-Vendi diversity (factory.gvendi) of every dataset artifact (corpus, conversations), logged as "
                          "the step's metric `gvendi` and in its manifest and gvendi.json; None: not measured")

    _graph: dict[str, StepDef] = PrivateAttr(default_factory=dict)

    @staticmethod
    def _step_configs(data: dict[str, Any], kind: str) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
        """(path, config mapping) of every step of `kind` in raw spec data, in either form."""
        out = []
        if isinstance(data.get("stages"), dict) and isinstance(data["stages"].get(kind), dict):
            out.append((("stages", kind), data["stages"][kind]))
        if isinstance(data.get("steps"), dict):
            for name, step in data["steps"].items():
                if isinstance(step, dict) and step.get("kind") == kind and isinstance(step.get("config", {}), dict):
                    out.append((("steps", name, "config"), step.get("config", {})))
        return out

    @staticmethod
    def _replace(data: dict[str, Any], path: tuple[str, ...], value: dict[str, Any]) -> dict[str, Any]:
        """`data` with the mapping at `path` replaced by `value` (copied along the way, never mutated)."""
        if not path:
            return value
        head, *rest = path
        return {**data, head: Spec._replace(data[head], tuple(rest), value)}

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        # Each kind's `spec_defaults` hook fills its steps' raw configs from the rest of the spec (pretrain takes the
        # top-level model preset; curate decontaminates against every file an evaluating step reads), before any
        # config is validated.
        if not isinstance(data, dict):
            return data
        steps = [(kind, path, cfg) for kind in KINDS for path, cfg in cls._step_configs(data, kind)]
        evaluated: list[str] = []
        for kind, _, cfg in steps:
            files = KINDS[kind].hook("evaluated_files")
            evaluated += [f for f in (files(cfg) if files else []) if f not in evaluated]
        listed = set(data["stages"]) if isinstance(data.get("stages"), dict) else set()
        recipe = dict(RECIPE)
        for kind, path, cfg in steps:
            fill = KINDS[kind].hook("spec_defaults")
            if fill is None:
                continue
            if path[0] == "steps":
                raw = data["steps"][path[1]].get("inputs")
                wired = frozenset(raw) if isinstance(raw, dict) else frozenset()
            else:
                wired = frozenset(i for i, ups in recipe.get(kind, {}).items() if listed & set(ups))
            data = cls._replace(data, path, fill(cfg, SpecDefaults(data, evaluated, wired)))
        return data

    @field_validator("work_dir")
    @classmethod
    def _a_folder_of_its_own(cls, value: str) -> str:
        return _own_folder(value)

    @model_validator(mode="after")
    def _check(self) -> "Spec":
        if (self.stages is None) == (self.steps is None):
            raise ValueError("give either `stages` (the default recipe) or `steps` (named steps)" +
                             (", not both" if self.stages is not None else ""))
        self._graph = self._wire_stages() if self.stages is not None else self._wire_steps()
        for name in self.resources:
            if name not in self._graph:
                raise ValueError(f"resources.{name}: no such step (steps are {', '.join(self._graph)})")
        if self.cluster.training_operator == "job":
            self._check_job_names()
        return self

    def _check_job_names(self) -> None:
        """`job` names its pods in DNS: the launch, `<spec name>-<step>-<10 hex digits>` (factory.orchestrate), names
        the headless Service (a DNS-1035 label: a letter first, at most 63 characters) and each pod's hostname,
        `<launch>-<rank>`, which must fit in 63 characters too."""
        for step in self._graph:
            res = self.resources_for(step)
            if not self.needs_launcher(step) or KINDS[self.kind_of(step)].launcher != "torchrun":
                continue
            prefix = f"{self.name}-{step.replace('_', '-')}"
            longest = len(f"{prefix}-{'0' * 10}-{res.nodes - 1}")
            if not self.name[0].isalpha() or longest > 63:
                raise ValueError(f"cluster.training_operator: 'job' names step {step}'s pods {prefix}-<fingerprint>-<rank> "
                                 f"in DNS, which needs a name that starts with a letter and has at most 63 characters "
                                 f"({longest} here); rename the spec or the step")

    def _wire_stages(self) -> dict[str, StepDef]:
        """The default recipe (`factory.kinds.RECIPE`): each input from the last enabled step of the kinds it lists."""
        on = [n for n, _ in RECIPE if getattr(self.stages, n) is not None]
        graph: dict[str, StepDef] = {}
        for name, feeds in RECIPE:
            if name not in on:
                continue
            kind, config = KINDS[name], getattr(self.stages, name)
            required = kind.required(config)
            inputs: dict[str, str] = {}
            for input_name in kind.inputs:
                candidates = feeds.get(input_name, ())
                feeding = [s for s in candidates if s in on]
                if feeding:
                    inputs[input_name] = feeding[-1]
                elif input_name in required and not candidates:
                    raise ValueError(f"stages.{name}: needs input {input_name!r}, which no stage of the default recipe makes; "
                                     f"declare named steps (`steps:`) and wire `inputs.{input_name}`")
                elif input_name in required:
                    raise ValueError(f"stages.{name}: needs stage {candidates[-1]!r}, which is absent from stages")
            _check_wiring(config, inputs, f"stages.{name}")
            graph[name] = StepDef(name, name, config, inputs)
        return graph

    def _wire_steps(self) -> dict[str, StepDef]:
        """Named steps, checked (names, input names, artifact kinds, required inputs) and in dependency order."""
        steps: dict[str, Any] = self.steps or {}
        seen_k8s: dict[str, str] = {}
        for name, step in steps.items():
            if not STEP_NAME.match(name) or name in RESERVED_STEP_NAMES or len(name) > MAX_STEP_NAME:
                raise ValueError(f"steps.{_shown(name)}: a step name is at most {MAX_STEP_NAME} lowercase letters, digits, "
                                 f"'-' and '_', starting with a letter (not {', '.join(RESERVED_STEP_NAMES)})")
            k8s = name.replace("_", "-")  # how KFP names the step's task
            if k8s in seen_k8s:
                raise ValueError(f"steps.{name}: clashes with step {seen_k8s[k8s]!r} (KFP names both {k8s!r})")
            seen_k8s[k8s] = name
            kind = KINDS[step.kind]
            for input_name, up in step.inputs.items():
                where = f"steps.{name}.inputs.{input_name}"
                if input_name not in kind.inputs:
                    raise ValueError(f"{where}: kind {step.kind} has no input {input_name!r} (its inputs are {', '.join(kind.inputs) or 'none'})")
                if up not in steps:
                    raise ValueError(f"{where}: no step {up!r}")
                made, wanted = KINDS[steps[up].kind].output, kind.inputs[input_name].kind
                if made != wanted:
                    raise ValueError(f"{where}: step {up!r} makes a {made!r} artifact, but this input takes {wanted!r}")
            for input_name in kind.required(step.config):
                if input_name not in step.inputs:
                    raise ValueError(f"steps.{name}.inputs: missing input {input_name!r} (a {kind.inputs[input_name].kind!r} artifact)")
            _check_wiring(step.config, step.inputs, f"steps.{name}.config")
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                cycle = path[path.index(name):] + [name]
                raise ValueError(f"steps.{cycle[0]}.inputs: the steps form a cycle ({' -> '.join(cycle)})")
            state[name] = "visiting"
            for up in steps[name].inputs.values():
                visit(up, [*path, name])
            state[name] = "done"
            order.append(name)

        for name in steps:
            visit(name, [])
        return {n: StepDef(n, steps[n].kind, steps[n].config, dict(steps[n].inputs)) for n in order}

    def step_defs(self) -> dict[str, StepDef]:
        """Every step, wired, in dependency order."""
        return dict(self._graph)

    def enabled(self) -> list[str]:
        """Names of the steps that run, in dependency order."""
        return list(self._graph)

    def inputs_of(self, name: str) -> dict[str, str]:
        """Input name -> upstream step of step `name` (optional inputs only when wired)."""
        return dict(self._step(name).inputs)

    def kind_of(self, name: str) -> str:
        return self._step(name).kind

    def stage_config(self, name: str):
        """The config of step `name`."""
        return self._step(name).config

    def _step(self, name: str) -> StepDef:
        try:
            return self._graph[name]
        except KeyError:
            where = "steps" if self.steps is not None else "stages"
            raise SpecError(f"{where}.{name}: no such step in this spec (steps are {', '.join(self._graph)})") from None

    def resources_for(self, name: str) -> Resources:
        return self.resources.get(name, Resources())

    def image_for(self, name: str) -> str:
        res = self.resources_for(name)
        return res.image or (self.images.gpu if res.gpus > 0 else self.images.cpu)

    def needs_launcher(self, name: str) -> bool:
        """A step that spans nodes or GPUs runs as a cluster job, which its KFP step launches and watches."""
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
        for field in GVendiSettings.external_fields() if data.get("gvendi") else ():
            if data["gvendi"].get(field) is not None:
                data["gvendi"][field] = absolute(data["gvendi"][field])
        for name in self.enabled():
            node_of_step = data["stages"][name] if self.stages is not None else data["steps"][name]["config"]
            if node_of_step.get("content_hash"):  # named as the raw inputs it opts in are, so resolved the same way
                node_of_step["content_hash"] = [absolute(v) for v in node_of_step["content_hash"]]
            for path in type(self.stage_config(name)).external_fields():
                *parents, field = path.split(".")
                node = node_of_step
                for part in parents:
                    node = node.get(part) or {}
                if node.get(field) is not None:
                    value = node[field]
                    node[field] = [absolute(v) for v in value] if isinstance(value, list) else absolute(value)
            _absolute_nested(self.stage_config(name), node_of_step, absolute)
        spec = Spec.model_validate(data)
        check_system_tools(spec)  # a spec that needs an absent system program fails here, before any step
        return spec

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


def _absolute_nested(config: BaseModel, node: dict[str, Any], absolute: Any) -> None:
    """Make absolute, in a step's dumped config `node`, the raw inputs written inside nested settings: a benchmark's
    task file and prompt file, a judge's prompt file and model folder (evaluate's benchmarks, preference's genrm, rl's
    environments). A list or an optional field is not walked by `external_fields`, so the config names these paths
    through properties instead (`judge_files`, `benchmark_files`, ...); a value is resolved where it is written, in a
    nested model, when it is one of them. A built-in name in the same field (a procedural generator, the `pairwise`
    prompt) is none of them, so it stays as written."""
    raw: set[str] = set()
    for path in type(config).external_fields():
        value: Any = config
        for part in path.split("."):
            value = getattr(value, part, None)
        raw |= {v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, str)}

    def walk(model: BaseModel, data: dict[str, Any], nested: bool) -> None:
        for field in type(model).model_fields:
            value, written = getattr(model, field), data.get(field)
            if nested and isinstance(written, str) and written in raw:
                data[field] = absolute(written)
            elif nested and isinstance(written, list) and all(isinstance(v, str) for v in written):
                data[field] = [absolute(v) if v in raw else v for v in written]
            elif isinstance(value, BaseModel) and isinstance(written, dict):
                walk(value, written, True)
            elif isinstance(value, (list, tuple)) and isinstance(written, list):
                for item, item_data in zip(value, written):
                    if isinstance(item, BaseModel) and isinstance(item_data, dict):
                        walk(item, item_data, True)
            elif isinstance(value, dict) and isinstance(written, dict):
                for key, item in value.items():
                    if isinstance(item, BaseModel) and isinstance(written.get(key), dict):
                        walk(item, written[key], True)

    walk(config, node, False)  # the step's own fields are resolved by name (`external_fields`) before this


def _check_wiring(config: Any, inputs: dict[str, str], where: str) -> None:
    try:
        config.check_wiring(inputs)
    except ValueError as e:
        raise ValueError(f"{where}.{e}") from None


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = list(e["loc"])
        if len(loc) > 2 and loc[0] == "steps" and loc[2] in KINDS:
            del loc[2]  # the union's tag (the step's kind), which the user did not write as a level
        path = ".".join(str(p) for p in loc)
        msg = e["msg"]
        if e["type"] == "union_tag_invalid":
            path, msg = f"{path}.kind", f"no stage kind {e['ctx']['tag']!r} (kinds are {', '.join(KINDS)})"
        if e["type"] == "union_tag_not_found":
            path, msg = f"{path}.kind", "missing: every step names its stage kind"
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


def _shown(name: str, limit: int = 60) -> str:
    """A user's name as an error shows it: on one line (control characters escaped) and cut, so a 300-character name
    does not make a 300-character line."""
    printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return printable if len(name) <= limit else f"{printable[:limit]}... ({len(name)} characters)"


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key written twice in one mapping (naming both lines)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: keys written beside it override, by design
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base loader says so
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {_shown(str(key))!r} appears twice in one mapping (lines {first} and "
                                f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(data: Any, source: str) -> int:
    """How many values `data` holds with every YAML alias expanded, counted without expanding (each shared value
    once); past MAX_SPEC_NODES, or for a value that contains itself, a `SpecError`."""
    sizes: dict[int, int] = {}
    pending: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in pending:
            raise SpecError(f"{source}: a YAML alias refers to a value that contains it; a spec cannot hold itself")
        pending.add(key)
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        total = 1
        for item in items:
            total += size(item)
            if total > MAX_SPEC_NODES:
                raise SpecError(f"{source}: more than {MAX_SPEC_NODES:,} values once its YAML aliases are expanded "
                                "(an alias bomb?); a spec holds settings, not data")
        pending.discard(key)
        sizes[key] = total
        return total

    return size(data)


def _read_spec_file(path: Path) -> str:
    """The spec's text: a regular file (or a pipe) of at most MAX_SPEC_BYTES, in UTF-8."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise InputError(f"{path}: a folder, not a spec file")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise InputError(f"{path}: not a regular file (a device or socket cannot be a spec)")
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: spec file not found") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the spec file ({e.strerror})") from None
    if len(data) > MAX_SPEC_BYTES:
        raise InputError(f"{path}: larger than {MAX_SPEC_BYTES >> 20} MiB; a spec is a few KiB of YAML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None


def parse_spec_text(text: str, source: str = "<spec>") -> Spec:
    """A spec from YAML text, through the same checks as `load_spec` (duplicate keys, alias expansion)."""
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{source}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    except RecursionError:
        raise SpecError(f"{source}: nested too deeply to be a spec") from None
    try:
        _expanded_size(data, source)
    except RecursionError:
        raise SpecError(f"{source}: nested too deeply to be a spec") from None
    return parse_spec(data, source)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file; every problem is a `SpecError`/`InputError` with a clear message."""
    path = Path(path)
    return parse_spec_text(_read_spec_file(path), str(path))
