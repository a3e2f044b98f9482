"""Reading rendered Kubernetes manifests: documents, their pod specs, label selectors, validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# The Kubernetes version whose OpenAPI schemas the manifests must meet (helm 4.1 / kubectl 1.35).
KUBERNETES_VERSION = "1.35.0"
# Kinds from CRDs: kubernetes-validate has no schema for them; CRD_SCHEMAS checks their shape and
# their pod templates are validated as core PodTemplates.
_CRD_FILE = json.loads((Path(__file__).parent / "crd_schemas.json").read_text())
CRD_SCHEMAS = {kind: schema for kind, schema in _CRD_FILE.items() if kind != "$comment"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def load_documents(text: str) -> list[dict]:
    """The non-empty YAML documents of a multi-document manifest."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def pod_templates(doc: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod template) for every pod a resource creates; a bare Pod counts as its own template."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    spec = doc.get("spec", {})
    if kind == "Pod":
        yield f"Pod/{name}", {"metadata": doc["metadata"], "spec": spec}
    elif kind in WORKLOAD_KINDS:
        yield f"{kind}/{name}", spec["template"]
    elif kind == "PyTorchJob":
        for role, replica in spec["pytorchReplicaSpecs"].items():
            yield f"PyTorchJob/{name}/{role}", replica["template"]
    elif kind == "RayJob":
        cluster = spec["rayClusterSpec"]
        yield f"RayJob/{name}/head", cluster["headGroupSpec"]["template"]
        for group in cluster["workerGroupSpecs"]:
            yield f"RayJob/{name}/{group['groupName']}", group["template"]
        if "submitterPodTemplate" in spec:
            yield f"RayJob/{name}/submitter", spec["submitterPodTemplate"]


def all_pod_templates(docs: list[dict]) -> list[tuple[str, dict]]:
    return [item for doc in docs for item in pod_templates(doc)]


def containers(pod_spec: dict) -> list[dict]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def selects(selector: dict, labels: dict) -> bool:
    """Whether a matchLabels selector picks an object with these labels."""
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def validate(docs: list[dict]) -> list[str]:
    """Strict schema validation of every document; the errors, one line each (empty: all valid).

    Core kinds are checked against the Kubernetes OpenAPI schemas; CRD kinds against CRD_SCHEMAS,
    and each pod template inside them as a core PodTemplate."""
    errors = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            if doc["kind"] in CRD_SCHEMAS:
                jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
                for path, template in pod_templates(doc):
                    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
                    kubernetes_validate.validate(wrapper, KUBERNETES_VERSION, strict=True)
            else:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as error:
            errors.append(f"{where}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{where}: no schema ({error})")
    return errors
