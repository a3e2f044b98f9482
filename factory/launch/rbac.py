"""The namespaced RBAC rules the launcher's ServiceAccount needs, and nothing more.

The Helm chart's and the kustomize base's Role must grant at least these (tests/launch proves they are
enough by running the launcher as a ServiceAccount bound to exactly them); `missing_rules` says what a
given Role lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_JOB_VERBS = ["create", "get", "watch", "delete"]  # create, read and watch to its end, delete on cancel

REQUIRED_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": _JOB_VERBS},
    {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": _JOB_VERBS},
    {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": _JOB_VERBS},
    # The spec ConfigMap: created next to the job, deleted with it on cancel.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "delete"]},
    # Finding the job's pods and streaming their logs.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


def missing_rules(rules: Iterable[Mapping[str, Any]], required: Iterable[Mapping[str, Any]] = REQUIRED_RULES) -> list[str]:
    """`group/resource:verb` triples that `required` needs and `rules` (a Role's rules) do not grant."""
    granted = set()
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    granted.add((g, res, v))
    out = []
    for r in required:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                for v in r["verbs"]:
                    if not ({(g, res, v), ("*", res, v), (g, "*", v), (g, res, "*"), ("*", "*", "*")} & granted):
                        out.append(f"{g or 'core'}/{res}:{v}")
    return out
