"""The executor: fingerprints steps, reuses what is published, runs and publishes the rest.

A step's fingerprint is the sha256 of its *recipe*:

    {"stage": name, "config": <fields that change results>, "inputs": {name: upstream fingerprint},
     "sources": {field: identity of the raw inputs it names (factory.sources)}, "code": <hash of the stage's source files>}

Fingerprints depend only on the spec, the raw inputs and the code, never on running anything, so the
whole plan is known before the first step starts, and every KFP step can find its inputs by fingerprint.
A published artifact is reused when its manifest and every file it lists exist. Otherwise the stage runs
into a staging folder (kept between attempts for resumable stages) and is published atomically.

    executor = Executor(spec.resolved())
    executor.run()                 # every enabled stage, in order
    executor.explain()             # per step: reuse or rerun, and why
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import factory
from factory.errors import UserError
from factory.lineage import Lineage, flat_keys, lineage_entry
from factory.logs import get_logger
from factory.sources import source_digests
from factory.spec import STAGES, Spec, stage_module
from factory.stage import Artifact, StageConfig, StepContext
from factory.store import Store, open_store

log = get_logger("factory.steps")

# Artifacts registered as MLflow model versions: models, releases and the quality classifiers.
REGISTERED_KINDS = ("checkpoint", "release", "classifier")


# --- fingerprints -------------------------------------------------------------------------------

CODE_SUFFIXES = {".py", ".txt", ".json", ".jsonl", ".yaml", ".jinja"}


@cache
def code_version(stage: str) -> str:
    """Hash of the source files of the stage's module and the packages it declares as its code."""
    spec = STAGES[stage]
    h = hashlib.sha256()
    for mod_name in (spec.module, *spec.code):
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        origin = Path(mod.__file__)
        # a package's data files (prompts, built-in eval sets) shape its results as much as its code
        files = sorted(f for f in origin.parent.rglob("*") if f.is_file() and f.suffix in CODE_SUFFIXES
                       and "__pycache__" not in f.parts) if origin.name == "__init__.py" else [origin]
        root = Path(factory.__file__).parent.parent
        for f in files:
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


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
    return reasons


# --- provenance ---------------------------------------------------------------------------------


@cache
def git_commit() -> str:
    """The commit of the factory's source checkout, with '-dirty' when it has uncommitted changes."""
    root = Path(factory.__file__).parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "factory"], cwd=root, capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


# --- executor -----------------------------------------------------------------------------------


class Executor:
    """Runs a spec's steps against a store, with lineage in MLflow."""

    def __init__(self, spec: Spec, store: Store | None = None, lineage: Lineage | None = None, parent_run_id: str | None = None):
        self.spec = spec
        self.work_dir = Path(spec.work_dir)
        self.store = store or open_store(spec.storage.root, spec.storage.endpoint_url, spec.storage.region, self.work_dir)
        self._lineage = lineage
        self.parent_run_id = parent_run_id
        self._plan: dict[str, PlannedStep] | None = None

    @property
    def lineage(self) -> Lineage:
        if self._lineage is None:
            self._lineage = Lineage(self.spec.tracking_uri(), self.spec.experiment())
        return self._lineage

    # planning
    def plan(self) -> dict[str, PlannedStep]:
        if self._plan is None:
            plan: dict[str, PlannedStep] = {}
            for name in self.spec.enabled():
                config = self.spec.stage_config(name)
                inputs = self.spec.inputs_of(name)
                recipe = {
                    "stage": name,
                    "config": config.result_fields(),
                    "inputs": {k: plan[up].fingerprint for k, up in inputs.items()},
                    "sources": source_digests(name, config, self.spec.storage),
                    "code": code_version(name),
                }
                plan[name] = PlannedStep(name, config, recipe, fingerprint_of(recipe), inputs)
            self._plan = plan
        return self._plan

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
        """Run `targets` (default: every enabled stage) and what they need; returns manifests by step."""
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

    def _inputs(self, step: PlannedStep) -> dict[str, Artifact]:
        """The step's upstream artifacts, published and materialised as local folders."""
        inputs: dict[str, Artifact] = {}
        for input_name, up in step.inputs.items():
            up_key = self.plan()[up].key
            manifest = self.store.complete(up_key)
            if manifest is None:
                raise UserError(f"step {step.name}: its input {input_name!r} (step {up}) is not built; run `factory step {up} SPEC` first")
            inputs[input_name] = Artifact(self.store.materialize(up_key), manifest)
        return inputs

    def reuse(self, step: PlannedStep) -> dict[str, Any] | None:
        """The step's published artifact, logged as reused in MLflow, or None when it must run."""
        existing = self.store.complete(step.key)
        if existing is not None:
            log.info("step.reuse", step=step.name, fingerprint=step.fingerprint[:16], uri=existing["uri"],
                     reason="published artifact with the same fingerprint")
            self.lineage.record_reuse(self.parent_run_id, step.name, existing)
        return existing

    def run_step(self, name: str) -> dict[str, Any]:
        """Run one step whose inputs are published (or reuse its published artifact)."""
        plan = self.plan()
        if name not in plan:
            raise UserError(f"stages.{name}: the stage is not enabled in this spec")
        step = plan[name]
        slog = log.bind(step=name, fingerprint=step.fingerprint[:16])
        rank, world = dist_rank()
        if world > 1 and rank != 0:
            return self._run_step_follower(step, rank)
        existing = self.reuse(step)
        if existing is not None:
            return existing

        inputs = self._inputs(step)

        module = stage_module(name)
        resumable = bool(getattr(module, "RESUMABLE", False))
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
            with self.lineage.step_run(self.parent_run_id, name, step.config.model_dump(mode="json"), step.fingerprint) as tracker:
                ctx = StepContext(name, tracker=tracker, scratch=scratch)
                for input_name, art in inputs.items():
                    tracker.log_dataset(f"{input_name}:{art.manifest.get('stage')}", art.uri, art.fingerprint, context="input")
                metrics = module.run(step.config, inputs, staging, ctx) or {}
                manifest = self._manifest(step, module, inputs, metrics, tracker.run_id)
                manifest = self.store.publish(staging, step.key, manifest)
                tracker.log_metrics({**metrics, "step_seconds": time.monotonic() - start})
                self.lineage.finish_step(tracker.run_id, manifest)
                if getattr(module, "KIND", "") in REGISTERED_KINDS and self.spec.tracking.register_models:
                    version = self.lineage.register(f"{self.spec.name}-{name}", manifest["uri"], tracker.run_id, step.fingerprint)
                    slog.info("step.registered", model=f"{self.spec.name}-{name}", version=version)
            shutil.rmtree(scratch, ignore_errors=True)
            if staging.exists():  # the local store moved it into place; S3 keeps a cached copy
                shutil.rmtree(staging, ignore_errors=True)
        slog.info("step.done", uri=manifest["uri"], seconds=round(time.monotonic() - start, 2), **{k: v for k, v in list(metrics.items())[:8]})
        return manifest

    def _run_step_follower(self, step: PlannedStep, rank: int, poll_s: float = 2.0, timeout_s: float = 4 * 3600) -> dict[str, Any]:
        """A non-zero rank of a torchrun job (`factory step` under torchrun).

        A stage that trains across ranks (module attribute `DISTRIBUTED = True`) runs on every rank in
        the same staging folder; rank 0 alone tracks in MLflow and publishes, and the stage itself
        writes files only on rank 0. Any other step is rank 0's to build: the others wait for it.
        """
        module = stage_module(step.name)
        existing = self.store.complete(step.key)
        if existing is not None:
            return existing
        if not getattr(module, "DISTRIBUTED", False):
            deadline = time.monotonic() + timeout_s
            while (existing := self.store.complete(step.key)) is None:
                if time.monotonic() > deadline:
                    raise UserError(f"step {step.name}: rank {rank} waited {timeout_s:.0f}s for rank 0 to publish it")
                time.sleep(poll_s)
            return existing
        inputs = self._inputs(step)
        staging = self.store.staging_dir(step.key, self.work_dir)
        staging.mkdir(parents=True, exist_ok=True)
        scratch = self.work_dir / "scratch" / step.key / f"rank{rank}"
        scratch.mkdir(parents=True, exist_ok=True)
        log.info("step.run", step=step.name, rank=rank, role="follower")
        module.run(step.config, inputs, staging, StepContext(step.name, scratch=scratch))
        return {"stage": step.name, "fingerprint": step.fingerprint, "rank": rank, "published_by": 0}

    def _manifest(self, step: PlannedStep, module, inputs: Mapping[str, Artifact], metrics: Mapping[str, float], run_id: str) -> dict[str, Any]:
        lineage: list[dict[str, Any]] = []
        seen: set[str] = set()
        for art in inputs.values():
            m = art.manifest
            for entry in [lineage_entry(m), *m.get("lineage", [])]:
                if entry["fingerprint"] not in seen:
                    seen.add(entry["fingerprint"])
                    lineage.append(entry)
        return {
            "format": 1,
            "kind": getattr(module, "KIND", step.name),
            "stage": step.name,
            "fingerprint": step.fingerprint,
            "recipe": step.recipe,
            "config": step.config.model_dump(mode="json"),
            "inputs": {k: {"uri": a.uri, "fingerprint": a.fingerprint, "kind": a.manifest.get("kind"), "stage": a.manifest.get("stage")} for k, a in inputs.items()},
            "sources": [e for entries in step.recipe["sources"].values() for e in entries],
            "lineage": lineage,
            "producer": {
                "factory_version": factory.__version__,
                "git_commit": git_commit(),
                "mlflow_run_id": run_id,
                "tracking_uri": self.lineage.tracking_uri,
                "created_at": datetime.now(timezone.utc).isoformat(),
            },
            "metrics": {k: float(v) for k, v in metrics.items()},
        }


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

