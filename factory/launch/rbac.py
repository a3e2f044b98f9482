"""The namespaced RBAC rules the launcher's ServiceAccount needs, and nothing more.

REQUIRED_RULES lists each API call a launcher makes (factory/launch/launcher.py, through
`factory.orchestrate.launch_step`): create the job, read it and watch it to its end, delete it on
cancel or timeout; create the spec ConfigMap beside it and delete it on cancel; list the job's pods
by label and read their logs. A plain batch/v1 Job (`cluster.training_operator: job`) is created, read, watched and
deleted the same way (its dry-run create, which asks whether the server keeps Indexed Jobs, is a `create`), with a
headless Service created beside it and deleted on cancel. tests/launch proves the rules are enough by running the launcher as a
ServiceAccount bound to exactly them, and that every rule is used by recording the launcher's calls.
The Helm chart's and the kustomize base's Role must grant exactly these: `missing_rules` says what a
Role lacks, `extra_rules` what it grants beyond them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_JOB_VERBS = ["create", "get", "watch", "delete"]  # create, read and watch to its end, delete on cancel

REQUIRED_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": _JOB_VERBS},
    {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": _JOB_VERBS},
    {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": _JOB_VERBS},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": _JOB_VERBS},
    # A plain Job's headless Service (its pods' DNS names): created next to it, deleted with it on cancel.
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "delete"]},
    # The spec ConfigMap: created next to the job, deleted with it on cancel.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "delete"]},
    # Finding the job's pods and streaming their logs.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


def grants(rules: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """Every (apiGroup, resource, verb) a list of Role rules grants, wildcards kept as "*".

    A rule that names `resourceNames` or `nonResourceURLs` is refused: the launcher's Role uses neither,
    and counting them as plain grants would hide what they mean.
    """
    out: set[tuple[str, str, str]] = set()
    for r in rules:
        if r.get("resourceNames") or r.get("nonResourceURLs"):
            raise ValueError(f"rule {dict(r)}: resourceNames and nonResourceURLs are not expected in the launcher's Role")
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    out.add((g, res, v))
    return out


def _label(g: str, res: str, v: str) -> str:
    return f"{g or 'core'}/{res}:{v}"


def missing_rules(rules: Iterable[Mapping[str, Any]], required: Iterable[Mapping[str, Any]] = REQUIRED_RULES) -> list[str]:
    """`group/resource:verb` triples that `required` needs and `rules` (a Role's rules) do not grant."""
    granted = grants(rules)
    out = []
    for g, res, v in sorted(grants(required)):
        if not ({(g, res, v), ("*", res, v), (g, "*", v), (g, res, "*"), ("*", "*", "*")} & granted):
            out.append(_label(g, res, v))
    return out


def extra_rules(rules: Iterable[Mapping[str, Any]], required: Iterable[Mapping[str, Any]] = REQUIRED_RULES) -> list[str]:
    """`group/resource:verb` triples that `rules` grant beyond `required`; any wildcard counts as extra."""
    needed = grants(required)
    return [_label(g, res, v) for g, res, v in sorted(grants(rules)) if (g, res, v) not in needed]
