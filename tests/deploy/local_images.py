"""The images docker/build-local.sh builds, by the names it tags them with, and whether they exist here.

Tests that run them (test_images.py, test_node.py) skip in one line where podman or an image is missing."""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.deploy.conftest import REPO

VERSION = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE).group(1)
CPU = f"docker.io/nemotron-factory/factory-cpu:{VERSION}"
GPU = f"docker.io/nemotron-factory/factory-gpu:{VERSION}"
POSTGRES = "docker.io/nemotron-factory/postgres-debian:15"
BUILD = "bash docker/build-local.sh"


def missing(*images: str) -> str | None:
    """Why the images cannot be run here (one line), or None when podman has them all."""
    if shutil.which("podman") is None:
        return "podman is not installed"
    absent = [i for i in images if subprocess.run(["podman", "image", "exists", i], check=False, capture_output=True).returncode]
    return f"image {absent[0]} is not built ({BUILD})" if absent else None
