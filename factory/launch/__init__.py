"""Cluster launchers for distributed stages: the KFP step creates a training or Ray job and follows it.

    from factory.launch import Launcher, training_manifest
    manifest = training_manifest("trainjob", name=..., namespace=..., image=..., spec_configmap=f"{name}-spec",
                                 nodes=2, gpus_per_node=8, ...)   # or "pytorchjob", or "job" (no operator)
    Launcher(api_client, namespace).launch(manifest, {"spec.yaml": spec_yaml}, timeout_s=...)
"""

from factory.launch.launcher import KINDS, JobKind, JobResult, LaunchCancelled, LaunchError, Launcher, LaunchTimeout, kind_of
from factory.launch.manifests import (
    JOB_LABEL,
    SPEC_PATH,
    configmap_manifest,
    headless_service_manifest,
    indexed_job_manifest,
    per_rank_jobs,
    pytorchjob_manifest,
    rayjob_manifest,
    torchrun_command,
    training_manifest,
    trainjob_manifest,
)
from factory.launch.rbac import REQUIRED_RULES, extra_rules, grants, missing_rules

__all__ = [
    "JOB_LABEL", "KINDS", "JobKind", "JobResult", "LaunchCancelled", "LaunchError", "LaunchTimeout", "Launcher", "REQUIRED_RULES",
    "SPEC_PATH", "configmap_manifest", "extra_rules", "grants", "headless_service_manifest", "indexed_job_manifest", "kind_of",
    "missing_rules", "per_rank_jobs", "pytorchjob_manifest",
    "rayjob_manifest", "torchrun_command", "training_manifest", "trainjob_manifest",
]
