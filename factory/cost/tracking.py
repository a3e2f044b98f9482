"""The plan as an MLflow run in the spec's tracking store, made before the pipeline starts; the pipeline's
parent run finds it by the spec's digest (`plan_run_for`) and links to it with the `factory.plan_run` tag."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from factory.lineage import Lineage
from factory.logs import get_logger

log = get_logger("factory.cost")

TAG_KIND = "factory.kind"
TAG_SPEC_DIGEST = "factory.spec_digest"
TAG_PLAN_RUN = "factory.plan_run"  # set on a pipeline's parent run: the id of the plan run it was launched under


def spec_digest(spec) -> str:
    """sha256 of the spec's canonical YAML: equal specs give equal digests."""
    return "sha256:" + hashlib.sha256(spec.to_yaml().encode()).hexdigest()


def log_plan(spec, report, lineage=None, parent_run_id: str | None = None) -> str:
    """Record `report` (a `PlanReport`) as a finished MLflow run: params (MFU, price, context), metrics per
    step, `plan.json` and the spec as artifacts; nested under `parent_run_id` (the pipeline run it plans) when given.
    Returns the run id."""
    if lineage is None:
        lineage = Lineage(spec.tracking_uri(), spec.experiment())
    client = lineage.client
    tags = {TAG_KIND: "plan", TAG_SPEC_DIGEST: spec_digest(spec)}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(lineage.experiment_id, run_name=f"{spec.name}-plan", tags=tags)
    run_id = run.info.run_id
    status = "FAILED"
    try:
        client.log_param(run_id, "mfu", report.mfu)
        client.log_param(run_id, "price_per_gpu_hour", report.price_per_gpu_hour)
        client.log_param(run_id, "context", report.context)
        for step in report.steps:
            metrics = {"fits": float(step.fits), "memory_gib": step.memory_total / 2**30}
            for key in ("flops", "hours", "gpu_hours", "cost"):
                if getattr(step, key) is not None:
                    metrics[key] = float(getattr(step, key))
            for key, value in step.data.items():
                metrics[f"data_{key}"] = float(value)
            for key, value in metrics.items():
                client.log_metric(run_id, f"{step.step}.{key}", value)
        client.log_metric(run_id, "fits", float(report.fits))
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "plan.json").write_text(json.dumps(report.to_dict(), indent=2))
            (Path(tmp) / "spec.yaml").write_text(spec.to_yaml())
            client.log_artifact(run_id, str(Path(tmp) / "plan.json"))
            client.log_artifact(run_id, str(Path(tmp) / "spec.yaml"))
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    log.info("plan.logged", run_id=run_id, spec=spec.name, fits=report.fits)
    return run_id


def plan_run_for(spec, lineage) -> str | None:
    """The newest finished plan run of this exact spec in `lineage`'s experiment, or None."""
    runs = lineage.client.search_runs(
        [lineage.experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = 'plan' and tags.`{TAG_SPEC_DIGEST}` = '{spec_digest(spec)}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0].info.run_id if runs else None
