"""The images docker/build-local.sh builds, by the names it tags them with, and whether they exist here.

Tests that run them (test_images.py, test_node.py) skip in one line where podman or an image is missing, or where
an image was built from other code than this checkout's (its `factory.source-digest` label, docker/source-digest.py):
a stale image would test the code it was built from, not this code."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from tests.deploy.conftest import REPO

VERSION = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE).group(1)
CPU = f"docker.io/nemotron-factory/factory-cpu:{VERSION}"
GPU = f"docker.io/nemotron-factory/factory-gpu:{VERSION}"
POSTGRES = "docker.io/nemotron-factory/postgres-debian:15"
BUILD = "bash docker/build-local.sh"
# Each image's Dockerfile and build context, as build-local.sh builds it.
SOURCES = {CPU: ("docker/Dockerfile.cpu", "."), GPU: ("docker/Dockerfile.gpu", "."),
           POSTGRES: ("docker/postgres/Dockerfile", "docker/postgres")}


def stale(image: str) -> bool:
    """Whether `image` was built from other sources than this checkout's (or carries no digest label)."""
    label = subprocess.run(["podman", "image", "inspect", "--format", '{{ index .Labels "factory.source-digest" }}', image],
                           check=False, capture_output=True, text=True).stdout.strip()
    dockerfile, context = SOURCES[image]
    here = subprocess.run([sys.executable, str(REPO / "docker" / "source-digest.py"), str(REPO / dockerfile), str(REPO / context)],
                          check=True, capture_output=True, text=True).stdout.strip()
    return label != here


def missing(*images: str) -> str | None:
    """Why the images cannot be run here (one line), or None when podman has them all."""
    if shutil.which("podman") is None:
        return "podman is not installed"
    absent = [i for i in images if subprocess.run(["podman", "image", "exists", i], check=False, capture_output=True).returncode]
    if absent:
        return f"image {absent[0]} is not built ({BUILD})"
    old = [i for i in images if stale(i)]
    return f"image {old[0]} was built from other code than this checkout's: rebuild it ({BUILD})" if old else None
