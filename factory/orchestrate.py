"""What a KFP step does, kept out of the components so it is importable and testable without KFP.

Every component calls `run_component(stage, spec_text, job_id, upstream, output)`:

1. parse the spec (passed to the pipeline as JSON text),
2. find or create the pipeline's parent MLflow run, tagged with the KFP job id (the first step creates it;
   the exit handler closes it with `finish_pipeline`),
3. check that the upstream artifacts KFP handed over are the ones this spec plans (same fingerprints),
4. run the step through the executor (reuse or run, then publish),
5. describe the published artifact on the KFP output: `metadata` carries the store URI, fingerprint and
   kind, and the output file holds the manifest, so the bytes stay in the store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

import yaml

from factory.errors import UserError
from factory.lineage import Lineage
from factory.logs import get_logger
from factory.spec import parse_spec
from factory.steps import Executor

log = get_logger("factory.orchestrate")
TAG_JOB = "factory.kfp_job_id"


class KfpArtifact(Protocol):
    """The parts of `kfp.dsl.Artifact` used here (duck-typed so `factory` never imports kfp)."""

    path: str
    metadata: dict[str, Any]


def parent_run(lineage: Lineage, job_id: str, run_name: str, spec_text: str) -> str:
    """The pipeline's parent run for KFP job `job_id`, created by the first step that asks."""
    found = lineage.client.search_runs([lineage.experiment_id], filter_string=f"tags.`{TAG_JOB}` = '{job_id}'", max_results=1)
    if found:
        return found[0].info.run_id
    return lineage.start_pipeline(run_name, spec_text, tags={TAG_JOB: job_id})


def run_component(stage: str, spec_text: str, job_id: str, upstream: Mapping[str, KfpArtifact], output: KfpArtifact) -> dict[str, Any]:
    spec = parse_spec(yaml.safe_load(spec_text))
    executor = Executor(spec)
    executor.parent_run_id = parent_run(executor.lineage, job_id, spec.name, spec_text)
    plan = executor.plan()
    for name, art in upstream.items():
        got = art.metadata.get("fingerprint")
        want = plan[plan[stage].inputs[name]].fingerprint
        if got != want:
            raise UserError(f"step {stage}: input {name!r} has fingerprint {got}, but the spec plans {want}; recompile the pipeline")
    manifest = executor.run_step(stage)
    output.metadata.update({"uri": manifest["uri"], "fingerprint": manifest["fingerprint"], "kind": manifest["kind"], "stage": stage})
    with open(output.path, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    return manifest


def finish_pipeline(spec_text: str, job_id: str, state: str) -> str:
    """Close the parent run of KFP job `job_id` with the pipeline's final state; returns its run id."""
    spec = parse_spec(yaml.safe_load(spec_text))
    lineage = Lineage(spec.tracking_uri(), spec.experiment())
    run_id = parent_run(lineage, job_id, spec.name, spec_text)
    status = "FINISHED" if state == "SUCCEEDED" else "FAILED"
    lineage.end_pipeline(run_id, status)
    log.info("pipeline.done", mlflow_run_id=run_id, state=state)
    return run_id
