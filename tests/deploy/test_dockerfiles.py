"""The images (docker/): read as text, since no Docker engine runs here."""

from __future__ import annotations

import re

import pytest

from tests.deploy.conftest import REPO

DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.gpu"]


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = (REPO / "docker" / name).read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_a_fixed_numeric_non_root_user(name):
    steps = instructions(name)
    users = [args for op, args in steps if op == "USER"]
    assert users and re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]), users
    # Nothing runs as root after the switch.
    assert steps[-1][0] in {"CMD", "ENTRYPOINT", "WORKDIR"} and all(op != "RUN" for op, _ in steps[steps.index(("USER", users[-1])) :])


@pytest.mark.parametrize("name", DOCKERFILES)
def test_torch_is_pinned_and_installed_before_the_package(name):
    steps = instructions(name)
    # Defaults of build arguments (a bare `ARG NAME` after FROM re-declares one, with no default).
    defaults = [re.match(r"(\w+)=(.*)", a).groups() for op, a in steps if op == "ARG" and "=" in a]
    assert dict(defaults)["TORCH_VERSION"] == "2.13.0"
    runs = [a for op, a in steps if op == "RUN"]
    torch_at = next(i for i, run in enumerate(runs) if "torch==${TORCH_VERSION}" in run)
    package_at = next(i for i, run in enumerate(runs) if re.search(r"pip install .*/tmp/src", run))
    assert torch_at < package_at
    assert "--constraint /etc/pip-constraints.txt" in runs[package_at]
    assert "-e " not in runs[package_at]  # a real install, not editable
    assert any("apt-get install" in run and "lynx" in run for run in runs)


def test_cpu_image_can_take_torch_from_a_cpu_index():
    steps = instructions("Dockerfile.cpu")
    # The public base by default; docker/build-local.sh passes a locally built one.
    assert steps[:2] == [("ARG", "BASE_IMAGE=python:3.11-slim"), ("FROM", "${BASE_IMAGE}")]
    (torch_run,) = [a for op, a in steps if op == "RUN" and "torch==" in a and "pip install" in a]
    assert '${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}' in torch_run
    assert ("ARG", 'TORCH_INDEX_URL=""') in steps


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_secrets_baked_in(name):
    for op, args in instructions(name):
        if op in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", args, re.I), args


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_compiler_for_source_only_dependencies_leaves_in_the_step_that_used_it(name):
    (package_run,) = [a for op, a in instructions(name) if op == "RUN" and re.search(r"pip install .*/tmp/src", a)]
    install = package_run.index("apt-get install -y --no-install-recommends ${BUILD_PACKAGES}")
    assert install < package_run.index("pip install") < package_run.index("apt-get purge -y --auto-remove ${BUILD_PACKAGES}")
    assert "rm -rf /tmp/src /var/lib/apt/lists/*" in package_run
