"""The images, built and run (docker/build-local.sh builds them where no registry image can be pulled).

Each container runs as the chart runs it: its numeric user, a read-only root filesystem, /tmp and one data
volume writable. Skips in one line where podman or an image is missing (CI builds no image).

    bash docker/build-local.sh && python -m pytest -q tests/deploy/test_images.py   # -m "not slow": 1 minute
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

from tests.deploy.conftest import REPO
from tests.deploy.local_images import CPU, GPU, POSTGRES, missing

if (why := missing(CPU, POSTGRES)) is not None:
    pytest.skip(why, allow_module_level=True)

# How the chart runs the factory's containers (values.yaml: podSecurityContext, containerSecurityContext).
# Explicit limits: as root, podman raises open files and processes to the maximum, which a host without
# CAP_SYS_RESOURCE (itself a container) refuses ("error setting rlimit type 7: operation not permitted").
LOCKED_DOWN = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               "--ulimit", "nofile=16384:16384", "--ulimit", "nproc=16384:16384"]


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=False, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cpu_image_runs_the_cli_as_its_non_root_user_on_a_read_only_root():
    config = json.loads(podman("image", "inspect", CPU).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    result = podman("run", "--rm", *LOCKED_DOWN, CPU, "sh", "-c", "id -u; id -g; factory --help")
    assert result.returncode == 0, result.stderr
    uid, gid, usage = result.stdout.split("\n", 2)
    assert (uid, gid) == ("10001", "10001")
    assert "Usage: factory" in usage and "run" in usage
    # The root filesystem refuses writes, the working directory too: only volumes and /tmp take them.
    result = podman("run", "--rm", *LOCKED_DOWN, CPU, "sh", "-c", "touch /workspace/x 2>&1; touch /tmp/x && echo tmp-ok")
    assert "Read-only file system" in result.stdout and "tmp-ok" in result.stdout


def test_gpu_image_python_layer_runs_the_cli_as_its_non_root_user():
    """The GPU image as a CPU machine builds it (build-local.sh: CUDA=0, no CUDA-only wheels): its Python layer."""
    if (why := missing(GPU)) is not None:
        pytest.skip(why)
    result = podman("run", "--rm", *LOCKED_DOWN, GPU, "sh", "-c", "id -u; python -c 'import factory, torch, mlflow'; factory --help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("10001\n") and "Usage: factory" in result.stdout


@pytest.mark.slow
def test_cpu_image_runs_the_smoke_recipe_and_its_release_loads(tmp_path):
    """The whole smoke recipe as UID 10001 with one writable volume (5 to 15 minutes on 2 shared cores)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o777)  # what a volume's fsGroup gives the pod's user
    workspace = ["--volume", f"{REPO / 'examples'}:/workspace/examples:ro", "--volume", f"{runs}:/workspace/runs"]
    result = podman("run", "--rm", *LOCKED_DOWN, *workspace, CPU, "factory", "run", "examples/smoke.yaml", timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (config,) = (runs / "smoke").rglob("release*/**/config.json") or [None]
    assert config is not None, sorted(p.relative_to(runs) for p in runs.rglob("*"))[:50]
    folder = "/workspace/runs/" + str(config.parent.relative_to(runs))
    load = ("from transformers import AutoModelForCausalLM as M; import sys; "
            "m = M.from_pretrained(sys.argv[1], trust_remote_code=True); print(sum(p.numel() for p in m.parameters()))")
    result = podman("run", "--rm", *LOCKED_DOWN, *workspace, CPU, "python", "-c", load, folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 0


def test_mlflow_server_of_the_cpu_image_serves_against_postgres_from_debian(tmp_path):
    """The chart's two server containers, on the host's network: PostgreSQL (uid 999) and `mlflow server`."""
    name, pg_port, port = uuid.uuid4().hex[:8], free_port(), free_port()
    data, sockets = tmp_path / "pgdata", tmp_path / "run"
    for folder in (data, sockets):  # world-writable, as the chart's emptyDir and a volume with its fsGroup
        folder.mkdir()
        folder.chmod(0o777)
    started = []
    try:
        result = podman("run", "-d", "--name", f"pg-{name}", "--network", "host", *LOCKED_DOWN,
                        "--volume", f"{sockets}:/var/run/postgresql", "--volume", f"{data}:/var/lib/postgresql/data",
                        "-e", "PGDATA=/var/lib/postgresql/data/pgdata",  # as the chart sets it
                        "-e", "POSTGRES_USER=mlflow", "-e", "POSTGRES_PASSWORD=secret", "-e", "POSTGRES_DB=mlflow",
                        POSTGRES, "postgres", "-c", f"port={pg_port}")
        assert result.returncode == 0, result.stderr
        started.append(f"pg-{name}")
        deadline = time.monotonic() + 60
        while podman("exec", f"pg-{name}", "pg_isready", "-h", "127.0.0.1", "-p", str(pg_port)).returncode:
            assert time.monotonic() < deadline, podman("logs", f"pg-{name}").stderr
            time.sleep(1)
        uri = f"postgresql+psycopg2://mlflow@127.0.0.1:{pg_port}/mlflow"
        env = ["-e", "PGPASSWORD=secret"]
        result = podman("run", "--rm", "--network", "host", *LOCKED_DOWN, *env, CPU, "mlflow", "db", "upgrade", uri)
        assert result.returncode == 0, result.stderr[-3000:]
        result = podman("run", "-d", "--name", f"mlflow-{name}", "--network", "host", *LOCKED_DOWN, *env, CPU,
                        "mlflow", "server", "--host=127.0.0.1", f"--port={port}", "--workers=1",
                        f"--backend-store-uri={uri}", "--serve-artifacts", "--artifacts-destination=/tmp/artifacts")
        assert result.returncode == 0, result.stderr
        started.append(f"mlflow-{name}")
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    assert r.read() == b"OK"
                    break
            except OSError:
                assert time.monotonic() < deadline, podman("logs", f"mlflow-{name}").stderr[-3000:]
                time.sleep(1)
        # A real round trip through the database: an experiment created, then read back by name.
        body = json.dumps({"name": "images-test"}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/create", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            experiment_id = json.load(r)["experiment_id"]
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=images-test"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert json.load(r)["experiment"]["experiment_id"] == experiment_id
    finally:
        for container in started:
            podman("rm", "-f", "-t", "2", container)
