"""Run a distributed job on the cluster from a KFP step: create it, follow it, map its end to the step's.

    launcher = Launcher(kubernetes.config.new_client_from_config(), namespace="factory")
    result = launcher.launch(trainjob_manifest(...), {"spec.yaml": spec_yaml}, timeout_s=86400)

`launch` creates the job (a TrainJob, PyTorchJob or RayJob), then the spec ConfigMap owned by the job
(so garbage collection removes it with the job), watches the job's status, streams its pods' logs to
the step's log, and returns when the job succeeds. A failed job (kept for inspection) raises `LaunchError` with the
operator's reason and message; a job that outlives `timeout_s` is deleted and raises `LaunchTimeout`;
cancellation (the `cancel` event, SIGTERM from KFP, Ctrl-C) deletes the job and the ConfigMap with
foreground propagation, then raises `LaunchCancelled` (or re-raises the KeyboardInterrupt).

A plain batch/v1 Job (`indexed_job_manifest`, for clusters without Kubeflow Trainer) needs no operator: the Job
controller runs its pods and writes its Complete/Failed conditions, and nothing removes it after success, so the
launcher deletes its Jobs, Service and ConfigMap once all succeed (a failed one stays for inspection, as with the
operators). The launcher creates its headless Service beside the ConfigMap (owned the same way), after asking the
server, by a dry-run create, whether it keeps `completionMode: Indexed`: a server that drops the field (Kubernetes
before 1.21; 1.21 without the IndexedJob feature gate) would run N unindexed pods, so there the launcher creates one
single-pod Job per rank instead (`per_rank_jobs`) and the step succeeds when all of them do, fails when any fails.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from factory.launch.manifests import JOB_LABEL, configmap_manifest, headless_service_manifest, per_rank_jobs
from factory.logs import get_logger

log = get_logger("factory.launch")


class LaunchError(RuntimeError):
    """The job failed, vanished or could not be created; the message says which job and why."""

    def __init__(self, message: str, reason: str = "", job: str = ""):
        super().__init__(message)
        self.reason = reason
        self.job = job


class LaunchTimeout(LaunchError):
    """The job did not finish in time; it was deleted."""


class LaunchCancelled(LaunchError):
    """The step was cancelled; the job and its ConfigMap were deleted."""


@dataclass(frozen=True)
class JobKind:
    """How one operator's custom resource is addressed, found and judged."""

    kind: str
    group: str
    version: str
    plural: str
    pod_label: str  # label the operator puts on the job's pods, valued with the job's name
    outcome: Callable[[Mapping[str, Any]], tuple[str, str, str]]  # status -> (state, reason, message)


def _condition_outcome(success: str) -> Callable[[Mapping[str, Any]], tuple[str, str, str]]:
    """Outcome from `status.conditions` (TrainJob: Complete/Failed; PyTorchJob: Succeeded/Failed)."""

    def outcome(obj: Mapping[str, Any]) -> tuple[str, str, str]:
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c.get("status") != "True":
                continue
            if c.get("type") == "Failed":
                return "failed", c.get("reason") or "Failed", c.get("message") or ""
            if c.get("type") == success:
                return "succeeded", c.get("reason") or success, c.get("message") or ""
        return "running", "", ""

    return outcome


def _rayjob_outcome(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """KubeRay: `jobDeploymentStatus` Complete/Failed is terminal; `jobStatus` says how the driver ended."""
    st = obj.get("status") or {}
    deploy, job = st.get("jobDeploymentStatus", ""), st.get("jobStatus", "")
    reason, message = st.get("reason") or "", st.get("message") or ""
    if deploy == "Failed" or (deploy == "Complete" and job in ("FAILED", "STOPPED")):
        return "failed", reason or f"Job{job.title() or 'Failed'}", message
    if deploy == "Complete":
        return "succeeded", reason or "Complete", message
    return "running", "", ""


KINDS: dict[str, JobKind] = {
    "TrainJob": JobKind("TrainJob", "trainer.kubeflow.org", "v1alpha1", "trainjobs",
                        "jobset.sigs.k8s.io/jobset-name", _condition_outcome("Complete")),
    "PyTorchJob": JobKind("PyTorchJob", "kubeflow.org", "v1", "pytorchjobs",
                          "training.kubeflow.org/job-name", _condition_outcome("Succeeded")),
    "RayJob": JobKind("RayJob", "ray.io", "v1", "rayjobs",
                      "ray.io/originated-from-cr-name", _rayjob_outcome),
    # batch/v1 through the same generic object API; its pods carry the launch's own label (see JOB_LABEL)
    "Job": JobKind("Job", "batch", "v1", "jobs", JOB_LABEL, _condition_outcome("Complete")),
}


@dataclass
class JobResult:
    """How a launched job ended."""

    name: str
    kind: str
    uid: str
    reason: str
    message: str
    duration_s: float
    pods: list[str] = field(default_factory=list)  # pods whose logs were followed or looked for
    jobs: list[str] = field(default_factory=list)  # the objects created: the job, or a plain Job per rank


class _LogFollower:
    """Streams the logs of the job's pods to the step's log, one `job.log` event per line.

    Pods appear late (the operator creates them) and a pod that has not started has no logs yet; such a
    read fails and is retried on the next poll, never fatal. A pod's stream is followed once to its end.
    """

    def __init__(self, core: client.CoreV1Api, namespace: str, selector: str, poll_s: float):
        self.core, self.namespace, self.selector, self.poll_s = core, namespace, selector, poll_s
        self.stop = threading.Event()
        self.seen: dict[str, str] = {}  # pod -> "waiting" | "following" | "done"
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._poll, name="launch-logs", daemon=True)
        self.streams: list[threading.Thread] = []

    def start(self) -> None:
        self.thread.start()

    def close(self, grace_s: float = 2.0) -> None:
        self.stop.set()
        self.thread.join(grace_s)
        for t in self.streams:  # let finished pods' last lines arrive; a live stream is abandoned (daemon)
            t.join(grace_s)

    def _poll(self) -> None:
        while not self.stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
            except ApiException as e:
                log.warning("job.pods_unlisted", selector=self.selector, status=e.status, reason=e.reason)
                pods = []
            for pod in pods:
                name = pod.metadata.name
                with self.lock:
                    state = self.seen.setdefault(name, "waiting")
                if state == "waiting":
                    self._try_follow(name)
            self.stop.wait(self.poll_s)

    def _try_follow(self, pod: str) -> None:
        try:
            resp = self.core.read_namespaced_pod_log(pod, self.namespace, follow=True, _preload_content=False)
        except ApiException as e:
            # 400 "container is waiting to start" / "pod has no host": no logs yet, try again later.
            log.debug("job.no_logs_yet", pod=pod, status=e.status)
            return
        with self.lock:
            self.seen[pod] = "following"
        t = threading.Thread(target=self._stream, args=(pod, resp), name=f"logs-{pod}", daemon=True)
        self.streams.append(t)
        t.start()

    def _stream(self, pod: str, resp: Any) -> None:
        buf = b""
        try:
            for chunk in resp.stream(4096):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    log.info("job.log", pod=pod, line=line.decode("utf-8", "replace"))
            if buf:
                log.info("job.log", pod=pod, line=buf.decode("utf-8", "replace"))
        except Exception as e:  # a broken stream loses log lines, never the job
            log.warning("job.log_stream_broken", pod=pod, error=str(e))
        finally:
            resp.release_conn()
            with self.lock:
                self.seen[pod] = "done"


class Launcher:
    """Creates distributed jobs in `namespace` through `api_client` and follows them to their end."""

    def __init__(self, api_client: client.ApiClient, namespace: str, poll_s: float = 5.0):
        self.api_client = api_client
        self.namespace = namespace
        self.poll_s = poll_s  # also the longest wait before a cancellation is acted on
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def launch(
        self,
        manifest: Mapping[str, Any],
        configmap_data: Mapping[str, str],
        configmap_name: str | None = None,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> JobResult:
        """Create the job and its spec ConfigMap (`configmap_name`, default `<job>-spec`), wait for the end."""
        kind = kind_of(manifest)
        name = manifest["metadata"]["name"]
        cm_name = configmap_name or f"{name}-spec"
        service = headless_service_manifest(manifest) if kind.kind == "Job" else None
        service_name = name if service is not None else False  # what `delete` removes beside the job
        cancel = cancel or threading.Event()
        start = time.monotonic()
        # Installed before the job exists, so a SIGTERM during creation still leads to its deletion.
        restore = _on_sigterm(cancel)
        names: list[str] = []
        try:
            objects = self._plain_jobs(manifest) if kind.kind == "Job" else [dict(manifest)]
            names = [o["metadata"]["name"] for o in objects]
            created = self._create(kind, objects, cm_name, configmap_data, service)
            uid = created[0]["metadata"]["uid"]
            log.info("job.created", kind=kind.kind, job=name, namespace=self.namespace, uid=uid, objects=names)
            follower = _LogFollower(self.core, self.namespace, f"{kind.pod_label}={name}", self.poll_s)
            follower.start()
            try:
                reason, message = self._wait(kind, names, start, timeout_s, cancel)
            except (LaunchTimeout, LaunchCancelled):
                self.delete(kind, names, cm_name, service=service_name)
                raise
            except LaunchError:
                raise  # a failed job stays for inspection; the operator's TTL or a person removes it
            except BaseException:
                # KeyboardInterrupt, or the API failing under us: leave nothing running behind the step.
                self._delete_quietly(kind, names, cm_name, service=service_name)
                raise
            finally:
                follower.close()
        finally:
            restore()
        duration = time.monotonic() - start
        log.info("job.succeeded", kind=kind.kind, job=name, reason=reason, duration_s=round(duration, 1))
        if kind.kind == "Job":
            # Nothing removes a finished plain Job (no operator; ttlSecondsAfterFinished is off by default before
            # 1.21), so every rank's pod would stay. Its logs are in the step's log already: the launcher removes what
            # it made. A failed cleanup is logged, never a failed step (the artifact is published by now).
            self._delete_quietly(kind, names, cm_name, service=service_name)
        return JobResult(name, kind.kind, uid, reason, message, duration, sorted(follower.seen), names)

    def indexed_jobs(self, manifest: Mapping[str, Any]) -> bool:
        """Whether the server keeps `completionMode: Indexed` on this Job: a dry-run create (nothing persisted, the
        `create` grant suffices) returns the object as it would be stored, without the field where the server does
        not know it (its version and feature gates decide, so this asks rather than reading /version)."""
        name = manifest["metadata"]["name"]
        try:
            stored = self.custom.create_namespaced_custom_object("batch", "v1", self.namespace, "jobs", dict(manifest),
                                                                 dry_run="All")
        except ApiException as e:
            raise LaunchError(f"cannot create Job {self.namespace}/{name}: {e.status} {_api_message(e)}", "CreateFailed", name) from e
        return (stored.get("spec") or {}).get("completionMode") == "Indexed"

    def _plain_jobs(self, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The Job objects to create for a plain-Job launch: the Indexed Job, or one Job per rank where the server
        has no Indexed Jobs (said in the log)."""
        if manifest["spec"].get("completionMode") != "Indexed" or self.indexed_jobs(manifest):
            return [dict(manifest)]
        log.warning("job.indexed_unsupported", job=manifest["metadata"]["name"],
                    action=f"the API server drops completionMode (Indexed Jobs need Kubernetes 1.21 with the IndexedJob "
                           f"feature gate, on by default from 1.22): one Job per rank, {manifest['spec']['completions']} Jobs")
        return per_rank_jobs(manifest)

    def _create(self, kind: JobKind, objects: list[dict[str, Any]], cm_name: str, data: Mapping[str, str],
                service: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        created: list[dict[str, Any]] = []
        for obj in objects:
            name = obj["metadata"]["name"]
            try:
                created.append(self.custom.create_namespaced_custom_object(kind.group, kind.version, self.namespace,
                                                                           kind.plural, obj))
            except ApiException as e:
                self._delete_quietly(kind, [c["metadata"]["name"] for c in created], None)
                raise LaunchError(f"cannot create {kind.kind} {self.namespace}/{name}: {e.status} {_api_message(e)}", "CreateFailed", name) from e
        names = [c["metadata"]["name"] for c in created]
        # The ConfigMap (and a plain Job's Service) is created after the job so it can name the job as its owner
        # (garbage collected with it; with one Job per rank, once all are gone); pods wait for a missing ConfigMap
        # volume, so the order costs nothing.
        owners = [{"apiVersion": objects[0]["apiVersion"], "kind": kind.kind, "name": c["metadata"]["name"],
                   "uid": c["metadata"]["uid"]} for c in created]
        cm = configmap_manifest(cm_name, self.namespace, data)
        dependents = [("ConfigMap", cm_name, cm, self.core.create_namespaced_config_map)]
        if service is not None:
            dependents.append(("Service", service["metadata"]["name"], service, self.core.create_namespaced_service))
        made: list[str] = []
        for what, dep_name, body, create in dependents:
            body = {**body, "metadata": {**body["metadata"], "ownerReferences": owners}}
            try:
                create(self.namespace, body)
            except ApiException as e:
                self._delete_quietly(kind, names, cm_name if made else None,
                                     service=service["metadata"]["name"] if "Service" in made else False)
                raise LaunchError(f"cannot create {what} {self.namespace}/{dep_name}: {e.status} {_api_message(e)}",
                                  "CreateFailed", names[0]) from e
            made.append(what)
        return created

    def _wait(self, kind: JobKind, names: list[str], start: float, timeout_s: float | None,
              cancel: threading.Event) -> tuple[str, str]:
        """Watch the jobs until they end; returns (reason, message) of the first when all succeed, raises when any
        fails, vanishes, outlives the deadline or is cancelled."""
        deadline = None if timeout_s is None else start + timeout_s
        args = (kind.group, kind.version, self.namespace, kind.plural)
        what = f"{kind.kind} {self.namespace}/{names[0]}" + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")
        while True:
            # A fresh read of each job every round: nothing is missed between two watches.
            objs = []
            for name in names:
                try:
                    objs.append(self.custom.get_namespaced_custom_object(*args, name))
                except ApiException as e:
                    if e.status == 404:
                        raise LaunchError(f"{kind.kind} {self.namespace}/{name} was deleted while the step waited for it", "Deleted", name) from e
                    raise
            running = [o for o in objs if kind.outcome(o)[0] == "running"]
            events = objs
            if running:
                self._raise_failed(kind, objs)  # a failed rank ends the step at once, the others still running
                wait_s = self.poll_s if deadline is None else max(0.0, min(self.poll_s, deadline - time.monotonic()))
                if cancel.is_set():
                    raise LaunchCancelled(f"{what} cancelled; deleted it", "Cancelled", names[0])
                if deadline is not None and time.monotonic() >= deadline:
                    raise LaunchTimeout(f"{what} did not finish within {timeout_s:g} s; deleted it", "Timeout", names[0])
                first = running[0]["metadata"]
                events = self._watch(args, first["name"], first["resourceVersion"], wait_s, cancel)
            self._raise_failed(kind, events)
            if not running:
                return kind.outcome(objs[0])[1:]

    def _raise_failed(self, kind: JobKind, objs: list[dict[str, Any]]) -> None:
        for obj in objs:
            state, reason, message = kind.outcome(obj)
            if state == "failed":
                name = obj["metadata"]["name"]
                log.error("job.failed", kind=kind.kind, job=name, reason=reason, message=message)
                raise LaunchError(f"{kind.kind} {self.namespace}/{name} failed: {reason}: {message}".rstrip(": "), reason, name)

    def _watch(self, args: tuple, name: str, rv: str, wait_s: float, cancel: threading.Event) -> list[dict[str, Any]]:
        """Job objects seen by a watch of at most `wait_s` seconds (ends early on a decisive event or cancel)."""
        seen: list[dict[str, Any]] = []
        w = watch.Watch()
        try:
            for ev in w.stream(self.custom.list_namespaced_custom_object, *args, field_selector=f"metadata.name={name}",
                               resource_version=rv, timeout_seconds=max(1, int(wait_s)), _request_timeout=wait_s + 10):
                if ev["type"] in ("ADDED", "MODIFIED"):
                    seen.append(ev["object"])
                    if KINDS[ev["object"]["kind"]].outcome(ev["object"])[0] != "running":
                        break
                if ev["type"] == "DELETED" or cancel.is_set():
                    break
        except ApiException as e:
            if e.status != 410:  # 410 Gone: the resourceVersion expired; the next round re-reads
                raise
        finally:
            w.stop()
        return seen

    def delete(self, kind: JobKind, name: str | list[str], configmap_name: str | None, service: str | bool = False) -> None:
        """Delete the job or jobs (foreground: their pods go first), the spec ConfigMap and a plain Job's Service
        (`service`, its name); absent ones are fine."""
        body = client.V1DeleteOptions(propagation_policy="Foreground")
        for one in [name] if isinstance(name, str) else name:
            try:
                self.custom.delete_namespaced_custom_object(kind.group, kind.version, self.namespace, kind.plural, one, body=body)
                log.info("job.deleted", kind=kind.kind, job=one)
            except ApiException as e:
                if e.status != 404:
                    raise
        deletes = [(configmap_name, self.core.delete_namespaced_config_map)] if configmap_name else []
        if service:
            deletes.append((service, self.core.delete_namespaced_service))
        for dependent, delete in deletes:
            try:
                delete(dependent, self.namespace, body=body)
            except ApiException as e:
                if e.status != 404:
                    raise

    def _delete_quietly(self, kind: JobKind, name: str | list[str], configmap_name: str | None, service: str | bool = False) -> None:
        """Cleanup on the way out of another error: a failing delete is logged, the first error wins."""
        try:
            self.delete(kind, name, configmap_name, service)
        except Exception as e:
            log.error("job.cleanup_failed", kind=kind.kind, job=name, error=str(e))


def kind_of(manifest: Mapping[str, Any]) -> JobKind:
    kind = KINDS.get(manifest.get("kind", ""))
    if kind is None or manifest.get("apiVersion") != f"{kind.group}/{kind.version}":
        raise ValueError(f"cannot launch {manifest.get('apiVersion')} {manifest.get('kind')}: expected one of "
                         + ", ".join(f"{k.group}/{k.version} {k.kind}" for k in KINDS.values()))
    return kind


def _api_message(e: ApiException) -> str:
    try:
        return json.loads(e.body).get("message", e.reason)
    except (TypeError, ValueError, AttributeError):
        return str(e.reason)


def _on_sigterm(cancel: threading.Event) -> Callable[[], None]:
    """Make SIGTERM (KFP's cancellation) set `cancel` while the job runs; returns the undo.

    Only the main thread may install signal handlers; elsewhere the caller's event is the only way in.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        log.warning("job.sigterm", action="cancelling the job")
        cancel.set()

    signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)
