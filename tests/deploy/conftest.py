"""Fixtures of the deployment tests: the helm and kubectl binaries, and chart renderings.

The binaries come from `bash helm/install-helm.sh` (into .venv/bin); without them these tests skip."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.kube import load_documents

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "factory"
RELEASE, NAMESPACE = "factory", "factory"


def find_tool(name: str) -> str | None:
    """The venv's copy of a binary (where helm/install-helm.sh puts it), else the one on PATH."""
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else shutil.which(name)


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_tool("helm")
    if path is None:
        pytest.skip("helm is not installed: run `bash helm/install-helm.sh`")
    return path


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = find_tool("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed: run `bash helm/install-helm.sh`")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO)


def helm_template(helm: str, *options: str) -> str:
    """`helm template` of the chart as release `factory` in namespace `factory`; fails on error."""
    result = run(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *options)
    assert result.returncode == 0, result.stderr
    return result.stdout


# The two configurations every chart test covers: bundled services, and external ones.
VALUE_SETS = {"default": (), "external": ("--values", str(CHART / "values-external.yaml"))}


@pytest.fixture(scope="session")
def renders(helm) -> dict[str, str]:
    return {name: helm_template(helm, *options) for name, options in VALUE_SETS.items()}


@pytest.fixture(scope="session", params=list(VALUE_SETS))
def rendered(request, renders) -> tuple[str, list[dict]]:
    """(value set name, rendered documents), once per value set."""
    return request.param, load_documents(renders[request.param])
