"""The executor: fingerprints steps, reuses what is published, runs and publishes the rest.

A step's fingerprint is the sha256 of its *recipe*:

    {"kind": stage kind, "config": <fields that change results>, "inputs": {name: upstream fingerprint},
     "sources": {field: identity of the raw inputs it names (factory.sources)}, "code": <hash of the kind's import closure>,
     "libraries": {distribution: version} of the libraries that closure calls (spec `fingerprint.libraries`)}

Fingerprints depend only on the spec, the raw inputs and the code, never on running anything, so the
whole plan is known before the first step starts. It is computed once per pipeline run and travels with
the pipeline as JSON (`Executor.plan_json()`, `Executor(spec, plan_json=...)`): a KFP step reads it and
never reads raw inputs again. The stage kinds (inputs, output kind, flags) come from `factory.kinds`.
A published artifact is reused when its manifest and every file it lists exist. Otherwise the stage runs
into a staging folder (kept between attempts for resumable stages) and is published atomically. Before it is
published, the executor's output hooks measure it (`OUTPUT_HOOKS`: G-Vendi of every dataset, when the spec asks).

    executor = Executor(spec.resolved())
    executor.run()                 # every step, in dependency order
    executor.explain()             # per step: reuse or rerun, and why
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory import code_version as _code
from factory.artifacts import check_layout
from factory.errors import UserError
from factory.gvendi.hook import measure_output
from factory.kinds import KINDS
from factory.lineage import Lineage, flat_keys
from factory.logs import get_logger
from factory.manifest import build_manifest
from factory.sources import source_digests
from factory.spec import Spec
from factory.stage import Artifact, StageConfig, StepContext
from factory.store import Store, open_store

log = get_logger("factory.steps")

PLAN_FORMAT = 1


# --- fingerprints -------------------------------------------------------------------------------


def code_version(kind: str) -> str:
    """The code version of stage kind `kind`: the hash of its module's import closure (`factory.code_version`)."""
    return _code.code_version(KINDS[kind].run_module)


def fingerprint_of(recipe: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class PlannedStep:
    """A step with its resolved recipe and fingerprint."""

    name: str
    config: StageConfig
    recipe: dict[str, Any]
    fingerprint: str
    inputs: dict[str, str]  # input name -> upstream step name
    kind: str = ""  # its stage kind (a key of factory.kinds.KINDS)

    @property
    def key(self) -> str:
        return f"{self.name}/{self.fingerprint[:16]}"


@dataclass
class Explanation:
    name: str
    action: str  # "reuse" | "run"
    reasons: list[str] = field(default_factory=list)
    key: str = ""


def diff_recipes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between a previous recipe and the current one."""
    reasons = []
    old_cfg, new_cfg = flat_keys(old.get("config", {})), flat_keys(new.get("config", {}))
    for k in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(k, "<absent>") != new_cfg.get(k, "<absent>"):
            reasons.append(f"config {k}: {old_cfg.get(k, '<absent>')!r} -> {new_cfg.get(k, '<absent>')!r}")
    for k in sorted(set(old.get("inputs", {})) | set(new.get("inputs", {}))):
        if old.get("inputs", {}).get(k) != new.get("inputs", {}).get(k):
            reasons.append(f"input {k} changed")
    if old.get("sources") != new.get("sources"):
        reasons.append("raw input files changed")
    if old.get("code") != new.get("code"):
        reasons.append("stage code changed")
    before, after = old.get("libraries", {}), new.get("libraries", {})
    for lib in sorted(set(before) | set(after)):
        if before.get(lib) != after.get(lib):
            reasons.append(f"{lib} {before.get(lib, '<not used>')} -> {after.get(lib, '<not used>')}")
    return reasons


# --- executor -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputHook:
    """A measurement of every step's output, run on its staging folder after the stage and before publishing.

    `measure(output kind, staging folder, inputs, settings)` may write files into the folder (they are published
    with it) and returns metrics, which go into the manifest and the step's MLflow run. `settings` is the value of
    the spec's field `spec_field`; a hook does nothing when it is None (the spec did not ask for it).
    """

    spec_field: str
    measure: Callable[[str, Path, Mapping[str, Artifact], Any], Mapping[str, float]]


# A dataset's diversity (G-Vendi, `factory.gvendi`) when the spec sets `gvendi:`.
OUTPUT_HOOKS: tuple[OutputHook, ...] = (OutputHook("gvendi", measure_output),)


class Executor:
    """Runs a spec's steps against a store, with lineage in MLflow."""

    def __init__(self, spec: Spec, store: Store | None = None, lineage: Lineage | None = None, parent_run_id: str | None = None,
                 plan_json: str | None = None, output_hooks: Sequence[OutputHook] = OUTPUT_HOOKS):
        self.spec = spec
        self.output_hooks = tuple(output_hooks)
        self.work_dir = Path(spec.work_dir)
        self.store = store or open_store(spec.storage.root, spec.storage.endpoint_url, spec.storage.region, self.work_dir)
        self._lineage = lineage
        self.parent_run_id = parent_run_id
        self._plan: dict[str, PlannedStep] | None = self._read_plan(plan_json) if plan_json else None

    def _s3(self) -> dict[str, str | None]:
        """The spec's S3 endpoint and region, for the `s3://` inputs a stage reads (`StepContext`)."""
        return {"s3_endpoint_url": self.spec.storage.endpoint_url, "s3_region": self.spec.storage.region}

    @property
    def lineage(self) -> Lineage:
        if self._lineage is None:
            self._lineage = Lineage(self.spec.tracking_uri(), self.spec.experiment())
        return self._lineage

    # planning
    def plan(self) -> dict[str, PlannedStep]:
        """Every step's recipe and fingerprint, computed once (the only place raw inputs are read)."""
        if self._plan is None:
            plan: dict[str, PlannedStep] = {}
            for name, step in self.spec.step_defs().items():
                preflight = KINDS[step.kind].hook("preflight")
                if preflight is not None:  # raw inputs checked before any step runs (import_model's model folder)
                    preflight(step.config, name, self.spec.storage)
                recipe = {
                    "kind": step.kind,
                    "config": step.config.result_fields(),
                    "inputs": {k: plan[up].fingerprint for k, up in step.inputs.items()},
                    "sources": source_digests(name, step.config, self.spec.storage),
                    "code": code_version(step.kind),
                    "libraries": _code.library_versions(KINDS[step.kind].run_module, self.spec.fingerprint.libraries),
                }
                plan[name] = PlannedStep(name, step.config, recipe, fingerprint_of(recipe), dict(step.inputs), step.kind)
            check_architectures(self.spec)
            self._plan = plan
        return self._plan

    def plan_json(self) -> str:
        """The plan as one line of JSON, for the pipeline to carry to every step."""
        steps = {n: {"kind": s.kind, "fingerprint": s.fingerprint, "recipe": s.recipe} for n, s in self.plan().items()}
        return json.dumps({"format": PLAN_FORMAT, "steps": steps}, sort_keys=True, separators=(",", ":"))

    def _read_plan(self, text: str) -> dict[str, PlannedStep]:
        """A plan computed by `plan_json()` for this spec; checked against the spec without reading raw inputs."""
        try:
            data = json.loads(text)
            steps = data["steps"]
            if data.get("format") != PLAN_FORMAT or not isinstance(steps, dict):
                raise ValueError(f"format {data.get('format')!r}")
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"plan: not a factory plan ({e}); recompile the pipeline") from None
        plan: dict[str, PlannedStep] = {}
        for name, step in self.spec.step_defs().items():
            entry = steps.get(name)
            want = {"kind": step.kind, "config": step.config.result_fields(), "inputs": {k: plan[up].fingerprint for k, up in step.inputs.items()}}
            got = {k: (entry or {}).get("recipe", {}).get(k) for k in want}
            if entry is None or got != want or fingerprint_of(entry["recipe"]) != entry.get("fingerprint"):
                raise UserError(f"plan: step {name} was planned for another spec; recompile the pipeline")
            plan[name] = PlannedStep(name, step.config, entry["recipe"], entry["fingerprint"], dict(step.inputs), step.kind)
        return plan

    def explain(self) -> list[Explanation]:
        return [self.explain_step(step) for step in self.plan().values()]

    def explain_step(self, step: PlannedStep) -> Explanation:
        """Whether `step` will be reused or run, and why: against its last published build, what changed."""
        if self.store.complete(step.key) is not None:
            return Explanation(step.name, "reuse", ["published artifact found"], step.key)
        previous = sorted(self.store.manifests(step.name), key=lambda m: m.get("producer", {}).get("created_at", ""))
        if not previous:
            return Explanation(step.name, "run", ["never built"], step.key)
        reasons = diff_recipes(previous[-1].get("recipe", {}), step.recipe)
        return Explanation(step.name, "run", reasons or ["the published artifact is incomplete (files missing or changed)"], step.key)

    # running
    def run(self, targets: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Run `targets` (default: every step) and what they need; returns manifests by step."""
        names = targets or self.spec.enabled()
        results: dict[str, dict[str, Any]] = {}
        for name in names:
            self._build(name, results)
        return results

    def _build(self, name: str, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if name in results:
            return results[name]
        for up in self.spec.inputs_of(name).values():
            self._build(up, results)
        results[name] = self.run_step(name)
        return results[name]

    def inputs(self, step: PlannedStep) -> dict[str, Artifact]:
        """The step's upstream artifacts, published and materialised as local folders, checked against its
        kind's inputs in the registry (every required input present, each of the artifact kind it takes)."""
        kind = KINDS[step.kind]
        missing = [k for k in kind.required(step.config) if k not in step.inputs]
        if missing:
            raise UserError(f"step {step.name}: input {missing[0]!r} is not wired; name the step that makes it")
        inputs: dict[str, Artifact] = {}
        for input_name, up in step.inputs.items():
            up_key = self.plan()[up].key
            manifest = self.store.complete(up_key)
            if manifest is None:
                raise UserError(f"step {step.name}: its input {input_name!r} (step {up}) is not built; run `factory step {up} SPEC` first")
            wanted = kind.inputs[input_name].kind
            if manifest.get("kind") != wanted:
                raise UserError(f"step {step.name}: input {input_name!r} is a {manifest.get('kind')!r} artifact ({manifest.get('uri')}), "
                                f"but {step.kind} takes {wanted!r}")
            path = self.store.materialize(up_key)
            check_layout(wanted, path, input_name)  # the artifact kind's parts, by its typed reader
            inputs[input_name] = Artifact(path, manifest)
        return inputs

    def reuse(self, step: PlannedStep) -> dict[str, Any] | None:
        """The step's published artifact, logged as reused in MLflow, or None when it must run."""
        existing = self.store.complete(step.key)
        if existing is not None:
            log.info("step.reuse", step=step.name, fingerprint=step.fingerprint[:16], uri=existing["uri"],
                     reason="published artifact with the same fingerprint")
            self.lineage.record_reuse(self.parent_run_id, step.name, existing)
        return existing

    def run_step(self, name: str, run: Callable[..., Mapping[str, float] | None] | None = None) -> dict[str, Any]:
        """Run one step whose inputs are published (or reuse its published artifact). `run` takes the place of its
        kind's `run(config, inputs, output, ctx)`: the last task of a step that ran as several (the mix step's)."""
        plan = self.plan()
        if name not in plan:
            raise UserError(f"no step {name!r} in this spec (steps are {', '.join(plan)})")
        step = plan[name]
        slog = log.bind(step=name, fingerprint=step.fingerprint[:16])
        rank, world = dist_rank()
        if world > 1 and rank != 0:
            return self._run_step_follower(step, rank)
        existing = self.reuse(step)
        if existing is not None:
            return existing

        inputs = self.inputs(step)

        kind = KINDS[step.kind]
        resumable = kind.resumable
        staging = self.store.staging_dir(step.key, self.work_dir)
        with _locked(staging):
            existing = self.store.complete(step.key)
            if existing is not None:  # another run published it while we waited for the lock
                slog.info("step.reuse", uri=existing["uri"], reason="published by a concurrent run")
                return existing
            if staging.exists() and not resumable:
                shutil.rmtree(staging)
            staging.mkdir(parents=True, exist_ok=True)
            scratch = self.work_dir / "scratch" / step.key
            scratch.mkdir(parents=True, exist_ok=True)
            slog.info("step.run", reasons=self.explain_step(step).reasons, resumable=resumable, staging=str(staging))
            start = time.monotonic()
            with self.lineage.step_run(self.parent_run_id, name, step.config.model_dump(mode="json"), step.fingerprint,
                                       libraries=_code.library_versions(kind.run_module)) as tracker:
                ctx = StepContext(name, tracker=tracker, scratch=scratch, **self._s3())
                for input_name, art in inputs.items():
                    tracker.log_dataset(f"{input_name}:{art.manifest.get('stage')}", art.uri, art.fingerprint, context="input")
                metrics = dict((run or kind.run)(step.config, inputs, staging, ctx) or {})
                for hook in self.output_hooks:  # measured on what is about to be published
                    metrics.update(hook.measure(kind.output, staging, inputs, getattr(self.spec, hook.spec_field)))
                manifest = build_manifest(step.name, kind.output, step.kind, step.fingerprint, step.recipe,
                                          step.config.model_dump(mode="json"), inputs, metrics, tracker.run_id, self.lineage.tracking_uri)
                manifest = self.store.publish(staging, step.key, manifest.model_dump(mode="json"))
                tracker.log_metrics({**metrics, "step_seconds": time.monotonic() - start})
                self.lineage.finish_step(tracker.run_id, manifest)
                if kind.registered and self.spec.tracking.register_models:
                    version = self.lineage.register(f"{self.spec.name}-{name}", manifest["uri"], tracker.run_id, step.fingerprint)
                    slog.info("step.registered", model=f"{self.spec.name}-{name}", version=version)
            shutil.rmtree(scratch, ignore_errors=True)
            if staging.exists():  # the local store moved it into place; S3 keeps a cached copy
                shutil.rmtree(staging, ignore_errors=True)
        slog.info("step.done", uri=manifest["uri"], seconds=round(time.monotonic() - start, 2), **{k: v for k, v in list(metrics.items())[:8]})
        return manifest

    def _run_step_follower(self, step: PlannedStep, rank: int, poll_s: float = 2.0, timeout_s: float = 4 * 3600) -> dict[str, Any]:
        """A non-zero rank of a torchrun job (`factory step` under torchrun).

        A kind that trains across ranks (`distributed` in its registry entry) runs on every rank in
        the same staging folder; rank 0 alone tracks in MLflow and publishes, and the stage itself
        writes files only on rank 0. Any other step is rank 0's to build: the others wait for it.
        """
        kind = KINDS[step.kind]
        existing = self.store.complete(step.key)
        if existing is not None:
            return existing
        if not kind.distributed:
            deadline = time.monotonic() + timeout_s
            while (existing := self.store.complete(step.key)) is None:
                if time.monotonic() > deadline:
                    raise UserError(f"step {step.name}: rank {rank} waited {timeout_s:.0f}s for rank 0 to publish it")
                time.sleep(poll_s)
            return existing
        inputs = self.inputs(step)
        staging = self.store.staging_dir(step.key, self.work_dir)
        staging.mkdir(parents=True, exist_ok=True)
        scratch = self.work_dir / "scratch" / step.key / f"rank{rank}"
        scratch.mkdir(parents=True, exist_ok=True)
        log.info("step.run", step=step.name, rank=rank, role="follower")
        kind.run(step.config, inputs, staging, StepContext(step.name, scratch=scratch, **self._s3()))
        return {"stage": step.name, "fingerprint": step.fingerprint, "rank": rank, "published_by": 0}


def check_architectures(spec: Spec) -> dict[str, str]:
    """The architecture of every step's model (passed on from the step's `model`, `student` or `init` input, else its
    kind's `architecture` hook), and one `UserError` for a step given an architecture its kind does not take, naming
    the step, the architecture and the step it came from. Read from configs and small files, before any step runs."""
    made: dict[str, tuple[str, str]] = {}  # step -> (architecture, the step it comes from)
    for name, step in spec.step_defs().items():
        kind = KINDS[step.kind]
        source = next((step.inputs[i] for i in ("model", "student", "init") if i in step.inputs), None)
        given = made.get(source) if source else None
        if given and kind.architectures is not None and given[0] not in kind.architectures:
            raise UserError(f"step {name}: kind {step.kind} takes {', '.join(kind.architectures)}, not {given[0]} "
                            f"(the model of step {given[1]}); a kind that does not support an architecture says so "
                            "before any step trains")
        check = kind.hook("check_architecture")
        if given and check is not None:
            check(step.config, given[0], f"{name} (the model of step {given[1]} is a {given[0]})")
        hook = kind.hook("architecture")
        if kind.output == "checkpoint" and given:  # a model trained further keeps its architecture
            made[name] = given
        elif hook is not None:  # a model made from nothing, or brought in
            made[name] = (hook(step.config, spec.storage), name)
    return {name: arch for name, (arch, _) in made.items()}


def dist_rank() -> tuple[int, int]:
    """(rank, world size) of this process as torchrun sets them; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


@contextmanager
def _locked(staging: Path) -> Iterator[None]:
    """Hold an exclusive lock on a step's staging folder, so two runs never build the same step at once."""
    staging.parent.mkdir(parents=True, exist_ok=True)
    lock_path = staging.parent / f".{staging.name}.lock"
    with open(lock_path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("step.waiting_for_lock", lock=str(lock_path))
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

