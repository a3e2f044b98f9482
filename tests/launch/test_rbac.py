"""`missing_rules` and `extra_rules`: what a Role lacks, and what it grants beyond the launchers' calls."""

from __future__ import annotations

import pytest

from factory.launch import REQUIRED_RULES, extra_rules, grants, missing_rules

# The Role the chart and the kustomize base granted before issue 9: 13 grants no launcher call uses.
BROAD = [
    {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": ["ray.io"], "resources": ["rayjobs", "rayclusters"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
]


def test_required_rules_have_no_extra_and_miss_nothing():
    assert missing_rules(REQUIRED_RULES) == [] and extra_rules(REQUIRED_RULES) == []
    assert len(grants(REQUIRED_RULES)) == 4 * 4 + 2 + 2 + 1 + 1


def test_extra_rules_names_each_unused_grant_of_the_old_role():
    extra = extra_rules(BROAD)
    # it was enough, which is all the old tests checked, until plain Jobs (issue 32) needed their own grants
    assert missing_rules(BROAD) == ["core/services:create", "core/services:delete",
                                    *(f"batch/jobs:{v}" for v in ("create", "delete", "get", "watch"))]
    assert extra == sorted([
        "core/events:list", "core/events:watch", "core/pods:delete", "core/pods:get", "core/pods:watch",
        "kubeflow.org/pytorchjobs:list",
        "ray.io/rayclusters:create", "ray.io/rayclusters:delete", "ray.io/rayclusters:get", "ray.io/rayclusters:list",
        "ray.io/rayclusters:watch", "ray.io/rayjobs:list", "trainer.kubeflow.org/trainjobs:list",
    ])  # the 13 grants issue 9 counted
    assert len(extra) == 13


def test_wildcards_count_as_extra_and_as_enough():
    star = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    assert missing_rules(star) == []
    assert extra_rules(star) == ["*/*:*"]
    one_short = [dict(r, verbs=[v for v in r["verbs"] if v != "watch"]) for r in REQUIRED_RULES]
    assert missing_rules(one_short) == ["batch/jobs:watch", "kubeflow.org/pytorchjobs:watch", "ray.io/rayjobs:watch", "trainer.kubeflow.org/trainjobs:watch"]


def test_rules_with_resource_names_are_refused():
    with pytest.raises(ValueError, match="resourceNames"):
        extra_rules([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["mlflow-0"]}])
