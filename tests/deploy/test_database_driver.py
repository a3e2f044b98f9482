"""The chart's PostgreSQL URI and the image's driver agree, and stay pinned together.

A bare `postgresql://` means psycopg2 in SQLAlchemy 2.0 and psycopg 3 in 2.1, so the chart names the
driver in the URI and docker/requirements-mlflow.txt installs that driver with a SQLAlchemy range.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from sqlalchemy.dialects import registry
from sqlalchemy.engine import make_url

from tests.deploy.conftest import REPO, helm_template
from tests.deploy.kube import load_documents
from tests.deploy.test_chart import by_kind

REQUIREMENTS = REPO / "docker" / "requirements-mlflow.txt"
# The distribution that provides each SQLAlchemy PostgreSQL driver module.
DRIVER_DISTRIBUTIONS = {"psycopg2": {"psycopg2", "psycopg2-binary"}, "psycopg": {"psycopg"}}


def pinned() -> dict[str, Requirement]:
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    return {Requirement(line).name.lower(): Requirement(line) for line in lines if line}


def backend_uris(helm) -> list[str]:
    """MLFLOW_BACKEND_STORE_URI of the server and of its db-upgrade init container, bundled and external."""
    uris = []
    for options in ((), ("--set", "postgresql.enabled=false,externalDatabase.host=db,externalDatabase.existingSecret=db")):
        pod = by_kind(load_documents(helm_template(helm, *options)), "Deployment")["factory-mlflow"]["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            uris += [e["value"] for e in container["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI"]
    return uris


def test_chart_uri_names_the_driver_the_image_installs(helm):
    uris = backend_uris(helm)
    assert len(uris) == 4
    requirements = pinned()
    for uri in uris:
        url = make_url(uri)
        assert url.get_backend_name() == "postgresql"
        assert "+" in url.drivername, f"{uri}: name the driver; a bare postgresql:// changes meaning with SQLAlchemy"
        driver = url.get_driver_name()
        provided = DRIVER_DISTRIBUTIONS[driver] & set(requirements)
        assert len(provided) == 1, f"docker/requirements-mlflow.txt must pin the {driver} driver of {uri}"
        assert str(requirements[provided.pop()].specifier).startswith("=="), "pin the driver exactly"
    assert "sqlalchemy" in requirements, "pin SQLAlchemy with the driver"


def test_installed_sqlalchemy_and_driver_match_the_pins():
    requirements = pinned()
    for name, requirement in requirements.items():
        installed = importlib.metadata.version(name)
        assert requirement.specifier.contains(installed), f"{name} {installed} is outside {requirement} (docker/requirements-mlflow.txt)"
    # The test extra installs the same driver the image does (tests/integration uses it).
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    tested = {Requirement(r).name.lower(): Requirement(r) for r in extra}
    for name in {"psycopg2", "psycopg2-binary", "psycopg"} & set(requirements):
        assert str(tested[name].specifier) == str(requirements[name].specifier)


def test_the_dialect_loads_its_driver(helm):
    """SQLAlchemy resolves the chart's URI to a dialect whose DBAPI module imports here."""
    for uri in set(backend_uris(helm)):
        url = make_url(uri)
        dialect = registry.load(f"{url.get_backend_name()}.{url.get_driver_name()}")
        dbapi = dialect.import_dbapi()
        assert dbapi.__name__ == url.get_driver_name()


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_images_install_the_pinned_requirements(name):
    text = (REPO / "docker" / name).read_text()
    assert "COPY docker/requirements-mlflow.txt" in text
    assert re.search(r"pip install .*--requirement /tmp/src/docker/requirements-mlflow.txt", text)
    assert "psycopg" not in re.sub(r"#.*", "", text).replace("requirements-mlflow", ""), "pin drivers in docker/requirements-mlflow.txt only"
