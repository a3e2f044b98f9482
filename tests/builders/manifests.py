"""The manifest every built artifact carries, shaped as the executor's (`factory.manifest.build_manifest`): a
fingerprint over what the builder was asked for, inputs, lineage (every ancestor, nearest first), raw sources and
the producer's run, plus the `uri` and `files` the store would add on publish."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory.kinds import KINDS
from factory.manifest import build_manifest
from factory.stage import Artifact, NullTracker, StepContext
from factory.steps import fingerprint_of


def manifest(step: str, kind: str, *, inputs: Mapping[str, Artifact] | None = None, config: Mapping[str, Any] | None = None,
             sources: list[dict[str, Any]] | None = None, metrics: Mapping[str, float] | None = None,
             name: str = "", stage_kind: str | None = None) -> dict[str, Any]:
    """The manifest of an artifact step `step` made (kind `kind`); `name` tells apart two built from the same recipe."""
    inputs = dict(inputs or {})
    recipe = {"kind": stage_kind or step, "config": dict(config or {}), "inputs": {k: a.fingerprint for k, a in inputs.items()},
              "sources": {"raw": list(sources or [])}, "name": name}
    fp = fingerprint_of(recipe)
    built = build_manifest(step, kind, stage_kind or step, fp, recipe, dict(config or {}), inputs, dict(metrics or {}),
                           run_id=f"run-{step}-{fp[:8]}", tracking_uri="sqlite:///mlflow.db")
    return {**built.model_dump(mode="json"), "uri": f"s3://factory-test/{step}/{fp[:16]}", "files": []}


def publish(folder: Path, step: str, kind: str, **fields: Any) -> Artifact:
    """`folder` as the artifact step `step` published: its `manifest.json` written (see `manifest` for `fields`)."""
    m = manifest(step, kind, name=fields.pop("name", Path(folder).name), **fields)
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "manifest.json").write_text(json.dumps(m, indent=2))
    return Artifact(Path(folder), m)


def stage_output(kind: str, config: Any, inputs: Mapping[str, Artifact], folder: Path, step: str | None = None) -> Artifact:
    """Stage kind `kind` run for real on `inputs` into `folder`, published with its metrics (an evaluation, a
    quantized model, a quality classifier, a reward model: whatever the kind outputs)."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = KINDS[kind].run(config, dict(inputs), folder, StepContext(step or kind, tracker=NullTracker()))
    numbers = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
    return publish(folder, step or kind, KINDS[kind].output, inputs=inputs, config=config.model_dump(mode="json"),
                   metrics=numbers, stage_kind=kind)
