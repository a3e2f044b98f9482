"""Lineage in MLflow.

One parent run per pipeline run; one nested run per step with the step's config as params, its metrics,
tags carrying the fingerprint and artifact URI, datasets recorded with `log_inputs`, and checkpoints
registered as model versions whose source is the artifact's store URI (the bytes stay in the store).

The embedded default is a SQLite database in the work folder; any `http(s)://` tracking URI (the MLflow
server the Helm chart deploys) works the same. `chain()` walks manifests from a release back to its raw
inputs for `factory lineage`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from factory.errors import ServiceError
from factory.logs import get_logger

log = get_logger("factory.lineage")

TAG_FINGERPRINT = "factory.fingerprint"
TAG_ARTIFACT = "factory.artifact_uri"
TAG_STAGE = "factory.stage"
TAG_REUSED = "factory.reused_from_run"
TAG_PIPELINE = "factory.pipeline"
TAG_RESUMED = "factory.resumed_from_run"  # on a step's run: the killed attempt of the same step it continues
# The experiment's kind as MLflow records it (ExperimentKind.CUSTOM_MODEL_DEVELOPMENT in mlflow/server/js); without
# it the UI infers a kind from the experiment's runs and traces and may ask the user to pick one.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# The tag does not choose the view, though. MLflow 3.17's UI picks it from its sidebar's GenAI / Model training
# switch (workflow-based navigation, always on): the page URL's `workflowType`, else the switch's last value in
# this browser's localStorage, else GenAI, whose experiment page is the traces overview. So every UI address the
# factory prints names the training view.
UI_VIEW = "workflowType=machine_learning"


def flat_keys(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level with dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flat_keys(v, key))
        else:
            out[key] = v
    return out


def flatten_params(config: Mapping[str, Any]) -> dict[str, str]:
    """A config as MLflow params: dotted keys, JSON values, cut to MLflow's 6000-character limit."""
    return {k: (v if isinstance(v, str) else json.dumps(v))[:6000] for k, v in flat_keys(config).items()}


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast with one message if an HTTP tracking server does not answer."""
    scheme = urlparse(uri).scheme
    if scheme not in ("http", "https"):
        return

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as resp:
            if resp.status >= 500:
                raise ServiceError(f"tracking.uri: MLflow server at {uri} answered HTTP {resp.status}")
    except urllib.error.HTTPError as e:
        if e.code >= 500:
            raise ServiceError(f"tracking.uri: MLflow server at {uri} answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ServiceError(f"tracking.uri: cannot reach the MLflow server at {uri} ({reason}); start it or fix tracking.uri") from None


class StepTracker:
    """The `Tracker` a stage gets: logs into its nested MLflow run."""

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric  # mlflow: see Lineage.__init__

        now = int(time.time() * 1000)
        # MLflow refuses "@" in a metric name: pass@1 and decode_tokens_per_s@128 are logged as pass_at_1 and
        # decode_tokens_per_s_at_128 (the manifest and eval.json keep the factory's names)
        batch = [Metric(k.replace("@", "_at_"), float(v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 500])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dataset(self, name: str, uri: str, digest: str, context: str, profile: Mapping[str, Any] | None = None) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag  # mlflow: see Lineage.__init__

        entity = Dataset(
            name=name,
            digest=digest[:36],  # MLflow's digest column is short; the full fingerprint is in the source
            source_type="factory_store",
            source=json.dumps({"uri": uri, "fingerprint": digest}),
            schema=None,
            profile=json.dumps(dict(profile)) if profile else None,
        )
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])])


class Lineage:
    """MLflow runs for one pipeline: `start_pipeline`, then `step_run` per step, then `end_pipeline`."""

    def __init__(self, tracking_uri: str, experiment: str):
        artifact_location = None
        if tracking_uri.startswith("sqlite:///"):
            db_dir = Path(tracking_uri[len("sqlite:///") :]).parent
            try:
                db_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ServiceError(f"tracking.uri: cannot create the folder of the tracking database {db_dir} ({e.strerror})") from None
            # MLflow retries a database it cannot open for about 100 s before it says why
            if not os.access(db_dir, os.W_OK | os.X_OK):
                raise ServiceError(f"tracking.uri: the folder of the tracking database {db_dir} is not writable by this user "
                                   "(or is on a read-only file system)")
            # Without this MLflow puts run artifacts (plots, the spec) in ./mlruns of whatever folder we run from.
            artifact_location = (db_dir.resolve() / "mlartifacts").as_uri()
        check_tracking_uri(tracking_uri)
        # Quiet MLflow's alembic migration chatter on a fresh SQLite database.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        # mlflow takes 2-3 s to import; the executor and the manifests import this module, and `factory explain`
        # and `factory curate` never track, so only a Lineage pays for it
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
                experiment, artifact_location=artifact_location, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND})
            if exp is not None and exp.tags.get(TAG_EXPERIMENT_KIND) != EXPERIMENT_KIND:
                self.client.set_experiment_tag(self.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
        except Exception as e:  # noqa: BLE001 - any failure here is the tracking store being unusable
            if type(e).__name__ == "ServiceError":
                raise
            raise ServiceError(f"tracking.uri: cannot use the MLflow tracking store at {tracking_uri}: {e}") from None

    def start_pipeline(self, run_name: str, spec_yaml: str, tags: Mapping[str, str] | None = None,
                       params: Mapping[str, str] | None = None) -> str:
        """The pipeline's parent run: the spec as an artifact, and `params` (the spec's name, digest, code commit)."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={TAG_PIPELINE: run_name, **(tags or {})})
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "spec.yaml"
            p.write_text(spec_yaml)
            self.client.log_artifact(run.info.run_id, str(p))
        for key, value in (params or {}).items():
            self.client.log_param(run.info.run_id, key, value)
        return run.info.run_id

    def run_url(self, run_id: str) -> str:
        """Where a person opens a run: the server's page for it, or, for a local store, the `mlflow ui` command and the
        page it serves."""
        path = f"#/experiments/{self.experiment_id}/runs/{run_id}?{UI_VIEW}"
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"{self.tracking_uri.rstrip('/')}/{path}"
        return f"mlflow ui --backend-store-uri {self.tracking_uri}  then  http://127.0.0.1:5000/{path}"

    def end_pipeline(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def kill_children(self, parent_run_id: str) -> list[str]:
        """Mark the step runs under `parent_run_id` still RUNNING as KILLED; returns their ids.

        A KFP pipeline's exit handler calls it (`factory.orchestrate.finish_pipeline`): it runs once every step task
        has ended, so a step run still RUNNING is one whose pod died (OOM, eviction, a lost node) before it could
        close the run. KILLED, as `mark_killed` marks them locally, so the next attempt's run links to it.
        """
        stale = self.client.search_runs([self.experiment_id], max_results=1000, filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'"))
        killed = [run.info.run_id for run in stale if TAG_STAGE in run.data.tags]
        for run_id in killed:
            self.client.set_terminated(run_id, status="KILLED")
        if killed:
            log.info("lineage.killed_runs", runs=killed, parent=parent_run_id)
        return killed

    def mark_killed(self) -> list[str]:
        """Mark the factory's runs still RUNNING in this experiment as KILLED; returns their ids.

        Call it only while holding the work folder's run lock (`factory run` does): then no other attempt
        is alive, so a RUNNING run is one whose process died (SIGKILL, lost node) without closing it.
        """
        stale = self.client.search_runs([self.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
        killed = []
        for run in stale:
            if TAG_STAGE in run.data.tags or TAG_PIPELINE in run.data.tags:
                self.client.set_terminated(run.info.run_id, status="KILLED")
                killed.append(run.info.run_id)
        if killed:
            log.info("lineage.killed_runs", runs=killed)
        return killed

    def killed_attempt(self, fingerprint: str) -> str | None:
        """The latest KILLED run of the step with this fingerprint (the attempt a resumed step continues)."""
        runs = self.client.search_runs([self.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                                       filter_string=f"tags.`{TAG_FINGERPRINT}` = '{fingerprint}' and attributes.status = 'KILLED'")
        return runs[0].info.run_id if runs else None

    @contextmanager
    def step_run(self, parent_run_id: str | None, stage: str, config: Mapping[str, Any], fingerprint: str,
                 libraries: Mapping[str, str] | None = None) -> Iterator[StepTracker]:
        """A nested run for a step that runs: its config as params, and the versions of the libraries its code calls
        as tags (`lib.<name>`) and `environment.json`, whatever the spec lets its fingerprint hold."""
        tags = {TAG_STAGE: stage, TAG_FINGERPRINT: fingerprint, **{f"lib.{k}": v for k, v in (libraries or {}).items()}}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        killed = self.killed_attempt(fingerprint)
        if killed:
            tags[TAG_RESUMED] = killed
        run = self.client.create_run(self.experiment_id, run_name=stage, tags=tags)
        run_id = run.info.run_id
        params = flatten_params(config)
        from mlflow.entities import Param  # mlflow: see Lineage.__init__

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])
        if libraries:
            self.client.log_dict(run_id, {"python": sys.version.split()[0], "libraries": dict(libraries)}, "environment.json")
        tracker = StepTracker(self.client, run_id)
        try:
            yield tracker
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED")

    def record_reuse(self, parent_run_id: str | None, stage: str, manifest: Mapping[str, Any]) -> str:
        """A nested run for a step whose artifact was reused, pointing at the run that produced it."""
        tags = {
            TAG_STAGE: stage,
            TAG_FINGERPRINT: manifest["fingerprint"],
            TAG_ARTIFACT: manifest.get("uri", ""),
            TAG_REUSED: manifest.get("producer", {}).get("mlflow_run_id") or "",
        }
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=f"{stage} (reused)", tags=tags)
        self.client.set_terminated(run.info.run_id, status="FINISHED")
        return run.info.run_id

    def finish_step(self, run_id: str, manifest: Mapping[str, Any]) -> None:
        self.client.set_tag(run_id, TAG_ARTIFACT, manifest["uri"])
        summary = {"fingerprint": manifest["fingerprint"], "uri": manifest["uri"], "kind": manifest["kind"], "inputs": manifest["inputs"]}
        self.client.log_dict(run_id, summary, "artifact_ref.json")

    def register(self, name: str, source_uri: str, run_id: str, fingerprint: str) -> str:
        """Register an artifact as a new version of model `name`; returns the version number."""
        from mlflow.exceptions import MlflowException  # mlflow: see Lineage.__init__

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description="Registered by the model factory")
        mv = self.client.create_model_version(name, source=source_uri, run_id=run_id, tags={TAG_FINGERPRINT: fingerprint})
        return str(mv.version)


def lineage_entry(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """One artifact as a lineage entry: stage, kind, the stage kind that made it and its config, fingerprint, uri, run
    id, raw sources, metrics, inputs."""
    return {
        "stage": manifest.get("stage"),
        "kind": manifest.get("kind"),
        "stage_kind": manifest.get("stage_kind"),
        "config": manifest.get("config", {}),
        "fingerprint": manifest["fingerprint"],
        "uri": manifest.get("uri"),
        "sources": manifest.get("sources", []),
        "mlflow_run_id": manifest.get("producer", {}).get("mlflow_run_id"),
        "metrics": manifest.get("metrics", {}),
        "inputs": {k: v.get("fingerprint") for k, v in manifest.get("inputs", {}).items()},
    }


def walk(manifests: list[Mapping[str, Any]], direct_first: bool = False) -> list[dict[str, Any]]:
    """The lineage walk: each artifact and every ancestor its manifest records, nearest first, once each
    (by fingerprint), in the order given. The one place that reads a manifest's `lineage`.

    With `direct_first`, the given artifacts all come before any ancestor (a release lists its own
    inputs first, then what they were built from)."""
    direct = [lineage_entry(m) for m in manifests]
    ancestors = [[{"stage": "?", "kind": "?", "uri": "?", **e} for e in m.get("lineage", [])] for m in manifests]
    if direct_first:
        entries = [*direct, *(e for group in ancestors for e in group)]
    else:
        entries = [e for d, group in zip(direct, ancestors) for e in (d, *group)]
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for entry in entries:
        if entry.get("fingerprint") and entry["fingerprint"] not in seen:
            seen.add(entry["fingerprint"])
            out.append(entry)
    return out


def chain(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The artifact and every ancestor, nearest first."""
    return walk([manifest])
