"""The manifest every artifact folder carries (`manifest.json`), as one typed model with one builder.

    manifest = build_manifest(step_name, kind, recipe, config, inputs, metrics, run_id=..., tracking_uri=...)
    store.publish(staging, key, manifest.model_dump(mode="json"))   # the store adds `files` and `uri`

The executor and `factory curate` build it here; `factory.lineage.walk` reads the ancestry back.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import factory
from factory.lineage import walk
from factory.stage import Artifact


class InputRef(BaseModel):
    """An upstream artifact as a manifest names it."""

    model_config = ConfigDict(extra="allow")

    uri: str = Field(..., description="Store URI of the upstream artifact")
    fingerprint: str = Field(..., description="Its fingerprint")
    kind: str | None = Field(None, description="Its artifact kind")
    stage: str | None = Field(None, description="The step that produced it")


class Producer(BaseModel):
    model_config = ConfigDict(extra="allow")

    factory_version: str = Field(..., description="Version of the factory package")
    git_commit: str = Field(..., description="Commit of the factory checkout ('-dirty' with uncommitted changes)")
    mlflow_run_id: str | None = Field(None, description="The MLflow run that produced the artifact")
    tracking_uri: str | None = Field(None, description="Where that run lives")
    created_at: str = Field(..., description="UTC time of publication, ISO 8601")


class Manifest(BaseModel):
    """What an artifact is and where it came from. `files` and `uri` are added by the store on publish."""

    model_config = ConfigDict(extra="allow")

    format: int = Field(1, description="Manifest format version")
    kind: str = Field(..., description="Artifact kind: corpus, tokens, checkpoint, evaluation, release, classifier, ...")
    stage: str = Field(..., description="Name of the step that produced it")
    stage_kind: str | None = Field(None, description="Stage kind of that step (a key of factory.kinds.KINDS)")
    fingerprint: str = Field(..., description="sha256 of the step's recipe")
    recipe: dict[str, Any] = Field(..., description="What the fingerprint hashes: kind, config, inputs, sources, code")
    config: dict[str, Any] = Field(..., description="The step's whole config")
    inputs: dict[str, InputRef] = Field(default_factory=dict, description="Input name -> upstream artifact")
    sources: list[dict[str, Any]] = Field(default_factory=list, description="Raw inputs and their identities")
    lineage: list[dict[str, Any]] = Field(default_factory=list, description="Every ancestor, nearest first, once each")
    producer: Producer
    metrics: dict[str, float] = Field(default_factory=dict, description="The step's summary metrics")


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


def build_manifest(step: str, kind: str, stage_kind: str, fingerprint: str, recipe: Mapping[str, Any], config: Mapping[str, Any],
                   inputs: Mapping[str, Artifact], metrics: Mapping[str, float], run_id: str | None = None,
                   tracking_uri: str | None = None) -> Manifest:
    """The manifest of step `step`'s artifact, before the store adds its files and URI."""
    return Manifest(
        kind=kind,
        stage=step,
        stage_kind=stage_kind,
        fingerprint=fingerprint,
        recipe=dict(recipe),
        config=dict(config),
        inputs={k: InputRef(uri=a.uri, fingerprint=a.fingerprint, kind=a.manifest.get("kind"), stage=a.manifest.get("stage"))
                for k, a in inputs.items()},
        sources=[e for entries in recipe.get("sources", {}).values() for e in (entries if isinstance(entries, list) else [entries])],
        lineage=walk([a.manifest for a in inputs.values()]),
        producer=Producer(factory_version=factory.__version__, git_commit=git_commit(), mlflow_run_id=run_id,
                          tracking_uri=tracking_uri, created_at=datetime.now(timezone.utc).isoformat()),
        metrics={k: float(v) for k, v in metrics.items()},
    )


