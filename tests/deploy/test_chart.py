"""The Helm chart (helm/factory): lint, schema, golden renderings, security, RBAC, network policies.

    .venv/bin/python -m pytest tests/deploy -q          (UPDATE_GOLDEN=1 rewrites the goldens)
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest

from tests.deploy.conftest import CHART, NAMESPACE, VALUE_SETS, helm_template, run
from tests.deploy.kube import all_pod_templates, containers, load_documents, selects, validate

GOLDEN = Path(__file__).parent / "golden"

PIPELINE_LABELS = {"nemotron-factory/pipeline-step": "true"}


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def assert_grants_exactly_what_launchers_call(role: dict) -> None:
    """The Role grants every call the launchers make (REQUIRED_RULES) and nothing else."""
    from factory.launch import REQUIRED_RULES, extra_rules, grants, missing_rules

    assert missing_rules(role["rules"]) == []
    assert extra_rules(role["rules"]) == []
    assert grants(role["rules"]) == grants(REQUIRED_RULES)


def strip_generated_secrets(text: str) -> str:
    """The rendering with the values of chart-generated Secrets (random) replaced by a marker."""
    docs = text.split("\n---\n")
    for i, doc in enumerate(docs):
        if re.search(r"^kind: Secret$", doc, re.M):
            head, _, data = doc.partition("\ndata:\n")
            docs[i] = head + "\ndata:\n" + re.sub(r"^(  \S+): \S+$", r"\1: <generated>", data, flags=re.M)
    return "\n---\n".join(docs)


# -- helm lint and the values schema -----------------------------------------------------------------


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_lint_strict_passes(helm, value_set):
    result = run(helm, "lint", "--strict", str(CHART), *VALUE_SETS[value_set])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_bad_values_file_is_refused_naming_the_field(helm):
    bad = str(CHART / "ci" / "bad-values.yaml")
    template = run(helm, "template", "factory", str(CHART), "--values", bad)
    lint = run(helm, "lint", "--strict", str(CHART), "--values", bad)
    assert template.returncode != 0 and lint.returncode != 0
    assert "/mlflow/workers" in template.stderr and "want integer" in template.stderr
    assert "/mlflow/workers" in lint.stdout + lint.stderr


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (("--set", "mlfow.workers=2"), "'mlfow' not allowed"),  # a typo of a top-level key
        (("--set", "minio.enabled=false"), "/s3/existingSecret"),  # external S3 without its Secret
        (("--set", "postgresql.enabled=false"), "/externalDatabase/host"),
        (("--set", "podSecurityContext.runAsNonRoot=false"), "/podSecurityContext/runAsNonRoot"),
        (("--set", "s3.bucket=Bad_Bucket"), "/s3/bucket"),
    ],
)
def test_schema_refuses_bad_values_naming_the_field(helm, options, named):
    result = run(helm, "template", "factory", str(CHART), *options)
    assert result.returncode != 0
    assert named in result.stderr


# -- what the renderings contain ---------------------------------------------------------------------


def test_renderings_pass_strict_kubernetes_schema_validation(rendered):
    name, docs = rendered
    assert validate(docs) == [], name


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_rendering_matches_golden(renders, value_set):
    text = strip_generated_secrets(renders[value_set])
    golden = GOLDEN / f"helm-{value_set}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"missing {golden.name}: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"rendering differs from {golden.name}; if intended, rerun with UPDATE_GOLDEN=1"


@pytest.mark.parametrize(
    "settings",
    [
        "networkPolicy.enabled=false,pipeline.rbac.create=false,pipeline.serviceAccount.create=false,pipeline.serviceAccount.name=kfp-runner",
        "postgresql.enabled=false,externalDatabase.host=db,externalDatabase.existingSecret=db",
        "minio.enabled=false,s3.existingSecret=s3,s3.endpoint=https://s3.example.com,images.pullSecrets={regcred},mlflow.upgradeDatabase=false",
    ],
)
def test_other_value_combinations_render_valid_manifests(helm, settings):
    docs = load_documents(helm_template(helm, "--set", settings))
    assert validate(docs) == []
    config = by_kind(docs, "ConfigMap")["factory-config"]["data"]
    if "s3.endpoint" in settings:
        assert config["FACTORY_S3_ENDPOINT_URL"] == "https://s3.example.com"
    if "serviceAccount.name" in settings:
        assert config["FACTORY_SERVICE_ACCOUNT"] == "kfp-runner" and not by_kind(docs, "NetworkPolicy")


def test_default_deploys_bundled_services_and_external_none(renders):
    default, external = (load_documents(renders[name]) for name in ("default", "external"))
    assert set(by_kind(default, "StatefulSet")) == {"factory-postgresql", "factory-minio"}
    assert set(by_kind(default, "Secret")) == {"factory-postgresql", "factory-s3"}
    assert by_kind(external, "StatefulSet") == {} and by_kind(external, "Secret") == {}
    assert set(by_kind(external, "Deployment")) == {"factory-mlflow"}


def test_every_pod_is_locked_down(rendered):
    name, docs = rendered
    templates = all_pod_templates(docs)
    assert len(templates) >= (5 if name == "default" else 2)
    for where, template in templates:
        pod = template["spec"]
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert security["runAsUser"] > 0 and security["fsGroup"] > 0, where
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False, where
        for container in containers(pod):
            at = f"{where}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, at
            assert context["capabilities"]["drop"] == ["ALL"], at
            assert context["readOnlyRootFilesystem"] is True, at
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory"}, at
            # The read-only root needs a writable /tmp.
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, at


def test_probes(renders):
    docs = load_documents(renders["default"])
    mlflow = by_kind(docs, "Deployment")["factory-mlflow"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert mlflow[probe]["httpGet"] == {"path": "/health", "port": "http"}
    statefulsets = by_kind(docs, "StatefulSet")
    postgres = statefulsets["factory-postgresql"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        assert "pg_isready" in postgres[probe]["exec"]["command"][-1]
    minio = statefulsets["factory-minio"]["spec"]["template"]["spec"]["containers"][0]
    assert minio["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    assert minio["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"


def test_rbac_is_namespaced_and_grants_exactly_what_launchers_call(rendered):
    _, docs = rendered
    kinds = {doc["kind"] for doc in docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    (role,) = by_kind(docs, "Role").values()
    # tests/launch proves REQUIRED_RULES suffice against a real API server, and that each is used.
    assert_grants_exactly_what_launchers_call(role)
    (binding,) = by_kind(docs, "RoleBinding").values()
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    (account,) = by_kind(docs, "ServiceAccount").values()
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}]


def test_network_policies_admit_only_the_intended_pods(renders):
    docs = load_documents(renders["default"])
    policies = by_kind(docs, "NetworkPolicy")
    pods = {where: template["metadata"]["labels"] for where, template in all_pod_templates(docs)}
    mlflow_pods = pods["Deployment/factory-mlflow"]

    def admitted(policy: dict) -> tuple[set[str], set]:
        (rule,) = policy["spec"]["ingress"]
        peers = rule["from"]
        assert all(set(peer) == {"podSelector"} for peer in peers)  # same namespace, by label
        admitted_pods = {where for where, labels in pods.items() if any(selects(p["podSelector"], labels) for p in peers)}
        return admitted_pods, {port["port"] for port in rule["ports"]}

    # Each policy guards exactly its own component's pods.
    guarded = {name: {where for where, labels in pods.items() if selects(p["spec"]["podSelector"], labels)} for name, p in policies.items()}
    assert guarded == {
        "factory-mlflow": {"Deployment/factory-mlflow"},
        "factory-postgresql": {"StatefulSet/factory-postgresql"},
        "factory-minio": {"StatefulSet/factory-minio"},
    }
    assert admitted(policies["factory-postgresql"]) == ({"Deployment/factory-mlflow"}, {"postgresql"})
    # MLflow: pipeline-step pods only (the chart's own test pod is labelled as one).
    assert admitted(policies["factory-mlflow"]) == ({"Pod/factory-test-mlflow"}, {"http"})
    assert policies["factory-mlflow"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == PIPELINE_LABELS
    assert admitted(policies["factory-minio"]) == (
        {"Deployment/factory-mlflow", "Job/factory-minio-bucket", "Pod/factory-test-mlflow"},
        {"s3"},
    )
    assert not selects(policies["factory-postgresql"]["spec"]["ingress"][0]["from"][0]["podSelector"], pods["Pod/factory-test-mlflow"])
    assert mlflow_pods["app.kubernetes.io/component"] == "mlflow"


def test_network_policy_extra_clients_from_values(renders):
    policies = by_kind(load_documents(renders["external"]), "NetworkPolicy")
    assert set(policies) == {"factory-mlflow"}  # no bundled database or MinIO to guard
    peers = policies["factory-mlflow"]["spec"]["ingress"][0]["from"]
    assert peers[1] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}},
        "podSelector": {"matchLabels": PIPELINE_LABELS},
    }


# -- configuration and credentials -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value_set", "store_root", "endpoint"),
    [
        ("default", "s3://factory/store", "http://factory-minio.factory.svc.cluster.local:9000"),
        ("external", "s3://nemotron-factory-artifacts/store", ""),
    ],
)
def test_factory_configmap(renders, value_set, store_root, endpoint):
    docs = load_documents(renders[value_set])
    config = by_kind(docs, "ConfigMap")["factory-config"]["data"]
    service = by_kind(docs, "Service")["factory-mlflow"]
    port = service["spec"]["ports"][0]["port"]
    assert config["FACTORY_TRACKING_URI"] == f"http://factory-mlflow.factory.svc.cluster.local:{port}"
    assert config["FACTORY_STORE_ROOT"] == store_root
    assert config["FACTORY_S3_ENDPOINT_URL"] == endpoint
    assert config["FACTORY_IMAGE_CPU"] == "nemotron-factory/factory-cpu:0.1.0"
    assert config["FACTORY_IMAGE_GPU"] == "nemotron-factory/factory-gpu:0.1.0"
    assert config["FACTORY_SERVICE_ACCOUNT"] in by_kind(docs, "ServiceAccount")
    assert config["FACTORY_S3_SECRET"] == "factory-s3"


def test_mlflow_server_configuration(renders):
    docs = load_documents(renders["external"])
    container = by_kind(docs, "Deployment")["factory-mlflow"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    assert container["command"] == ["mlflow", "server"]
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in container["args"]
    assert "--artifacts-destination=$(MLFLOW_ARTIFACTS_DESTINATION)" in container["args"]
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"] == "postgresql+psycopg2://mlflow@mlflow-db.example.internal:5432/mlflow?sslmode=require"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-db", "key": "password"}
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"] == "s3://nemotron-factory-artifacts/mlflow"
    assert "MLFLOW_S3_ENDPOINT_URL" not in env  # AWS S3: boto3's default endpoint
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "factory-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    allowed = env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    # Each name bare (a service on port 80: clients send no port) and with any port; never a bare "*".
    for name in ("factory-mlflow", "factory-mlflow.factory.svc.cluster.local", "localhost"):
        assert {name, f"{name}:*"} <= set(allowed)
    assert not [h for h in allowed if h.endswith("*") and not h.endswith(":*")]


def test_no_credential_in_plain_text(renders):
    docs = load_documents(renders["default"])
    secrets = by_kind(docs, "Secret")
    values = [base64.b64decode(v).decode() for s in secrets.values() for v in s["data"].values()]
    assert len(values) == 3 and all(len(v) >= 20 and v.isalnum() for v in values)
    assert all(s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for s in secrets.values())
    non_secret_text = "\n".join(str(doc) for doc in docs if doc["kind"] != "Secret")
    assert not [v for v in values if v in non_secret_text]
    # Credential variables come from Secrets, never from literal values.
    for where, template in all_pod_templates(docs):
        for container in containers(template["spec"]):
            for item in container.get("env", []):
                if re.search(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|ROOT_USER", item["name"]):
                    assert "secretKeyRef" in item.get("valueFrom", {}), f"{where}: {item['name']}"
    for config in by_kind(docs, "ConfigMap").values():
        assert not any(re.search(r"://[^/@\s]*:[^/@\s]*@", value) for value in config["data"].values())
