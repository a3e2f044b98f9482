"""The cluster configuration end to end, on real parts on 127.0.0.1.

- PostgreSQL: Debian's server (tests/setup.sh installs `postgresql`), a private cluster in a temporary folder;
- S3: moto's server;
- MLflow: the command, args and env of the Helm chart's rendered Deployment (`helm template`), credentials
  filled in from the Secrets the chart names, after its init container's `mlflow db upgrade`;
- the factory: a tiny spec run twice with `factory run` against that server and an S3 store whose root and
  endpoint come from the chart's ConfigMap variables, then `explain`, `step` and `lineage` on the release.

    .venv/bin/python -m pytest -q tests/integration      (about 2 minutes; skips without PostgreSQL or helm)
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml

from tests.deploy.conftest import CHART, REPO, find_tool
from tests.deploy.kube import load_documents
from tests.spine import free_port, small_corpus, small_spec_data, wait_healthy

pytestmark = pytest.mark.slow

BUCKET = "factory"
RELEASE_NS = "factory"


# -- PostgreSQL ---------------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Debian's PostgreSQL server binaries (initdb, pg_ctl, pg_dump), newest version first."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if os.access(Path(candidate) / "initdb", os.X_OK):
            return Path(candidate)
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def as_db_owner(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: under root, run as Debian's `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL cluster on 127.0.0.1 with database `mlflow` owned by role `mlflow` (random password)."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; tests/setup.sh does so as root)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as a non-root user")
    # Under /tmp itself (not pytest's 0700 folder) so the `postgres` user can reach it.
    root = Path(tempfile.mkdtemp(prefix="factory-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    admin_password, password = secrets.token_hex(16), secrets.token_hex(16)
    pwfile = root / "pw"
    pwfile.write_text(admin_password)
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    run = lambda *args: subprocess.run(as_db_owner([str(bindir / args[0]), *args[1:]]), capture_output=True, text=True, timeout=120)  # noqa: E731
    init = run("initdb", "-D", str(data), "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C")
    assert init.returncode == 0, init.stderr
    pwfile.unlink()
    start = run("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                "-o", f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}", "start")
    assert start.returncode == 0, start.stderr + (root / "server.log").read_text()
    env = {**os.environ, "PGPASSWORD": admin_password}
    for sql in (f"CREATE ROLE mlflow LOGIN PASSWORD '{password}'", "CREATE DATABASE mlflow OWNER mlflow"):
        created = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                                  "-c", sql], capture_output=True, text=True, env=env, timeout=60)
        assert created.returncode == 0, created.stderr
    yield {"host": "127.0.0.1", "port": port, "password": password, "admin_password": admin_password, "bindir": bindir, "root": root}
    run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
    shutil.rmtree(root, ignore_errors=True)


# -- S3 -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server with the chart's bucket; the keys are random so the test can look for them."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    keys = {"AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(), "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=keys["AWS_ACCESS_KEY_ID"], aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])
    # moto keeps its buckets in the process, not the server: another module's server may have left this bucket full
    # (tests/deploy/test_node.py uses the chart's bucket too, where its cluster is built)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if BUCKET in existing:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for o in page.get("Contents", []):
                client.delete_object(Bucket=BUCKET, Key=o["Key"])
    else:
        client.create_bucket(Bucket=BUCKET)
    yield {"endpoint": endpoint, "keys": keys, "client": client}
    server.stop()


# -- the chart's MLflow server ------------------------------------------------------------------------


def render(helm: str, *settings: str) -> list[dict]:
    result = subprocess.run([helm, "template", "factory", str(CHART), "--namespace", RELEASE_NS, *(a for s in settings for a in ("--set", s))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return load_documents(result.stdout)


def one(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def container_env(container: dict, secret_values: dict[tuple[str, str], str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: values, and Secret keys resolved."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secret_values[(ref["name"], ref["key"])]
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def process_env(env: dict[str, str]) -> dict[str, str]:
    """Only the chart's variables, plus PATH to find `mlflow` in this virtualenv."""
    return {**env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}


@pytest.fixture(scope="module")
def chart(postgres, s3, tmp_path_factory):
    helm = find_tool("helm")
    if helm is None:
        pytest.skip("helm is not installed: run `bash helm/install-helm.sh`")
    mlflow_port = free_port()
    settings = [
        "postgresql.enabled=false", f"externalDatabase.host={postgres['host']}", f"externalDatabase.port={postgres['port']}",
        "externalDatabase.existingSecret=mlflow-db", "externalDatabase.sslMode=disable",
        "minio.enabled=false", "s3.existingSecret=factory-s3", f"s3.endpoint={s3['endpoint']}", f"s3.bucket={BUCKET}",
        f"mlflow.port={mlflow_port}", "mlflow.workers=1",
    ]
    docs = render(helm, *settings)
    secret_values = {("mlflow-db", "password"): postgres["password"],
                     **{("factory-s3", k): v for k, v in s3["keys"].items()}}
    return {"helm": helm, "settings": settings, "docs": docs, "secrets": secret_values, "port": mlflow_port,
            "logs": tmp_path_factory.mktemp("mlflow-logs")}


@pytest.fixture(scope="module")
def mlflow_server(chart):
    pod = one(chart["docs"], "Deployment", "factory-mlflow")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    env = container_env(init, chart["secrets"])
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow@127.0.0.1:")
    assert chart["secrets"][("mlflow-db", "password")] not in env["MLFLOW_BACKEND_STORE_URI"]  # libpq reads PGPASSWORD
    upgrade = subprocess.run([expand(a, env) for a in init["command"]], capture_output=True, text=True, env=process_env(env),
                             cwd=chart["logs"], timeout=300)
    (chart["logs"] / "db-upgrade.log").write_text(upgrade.stdout + upgrade.stderr)
    assert upgrade.returncode == 0, upgrade.stderr[-3000:]

    (server,) = pod["containers"]
    env = container_env(server, chart["secrets"])
    argv = [expand(a, env) for a in server["command"] + server["args"]]
    # The one change from the chart: listen on loopback, not on every interface of a shared machine.
    argv = ["--host=127.0.0.1" if a == "--host=0.0.0.0" else a for a in argv]
    assert argv[:3] == ["mlflow", "server", "--host=127.0.0.1"]
    log = open(chart["logs"] / "server.log", "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=process_env(env), cwd=chart["logs"], start_new_session=True)
    url = f"http://127.0.0.1:{chart['port']}"
    if not wait_healthy(url, proc, 150):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the chart's mlflow server did not become healthy: {(chart['logs'] / 'server.log').read_text()[-3000:]}")
    yield {"url": url, "env": env}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def status_with_host(url: str, host: str) -> int:
    request = urllib.request.Request(url + "/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_server_accepts_both_host_forms_on_any_service_port(chart, mlflow_server):
    """A client of the service on port 80 sends `Host: name`, on 5000 `Host: name:5000`: both are accepted."""
    allowed = {}
    for port in (80, 5000):
        docs = render(chart["helm"], *chart["settings"], f"mlflow.service.port={port}")
        (server,) = one(docs, "Deployment", "factory-mlflow")["spec"]["template"]["spec"]["containers"]
        allowed[port] = {e["name"]: e.get("value") for e in server["env"]}["MLFLOW_SERVER_ALLOWED_HOSTS"]
        tracking = one(docs, "ConfigMap", "factory-config")["data"]["FACTORY_TRACKING_URI"]
        assert tracking == f"http://factory-mlflow.factory.svc.cluster.local:{port}"
    # The running server has exactly the allowed hosts of both renderings.
    assert allowed[80] == allowed[5000] == mlflow_server["env"]["MLFLOW_SERVER_ALLOWED_HOSTS"]
    for name in ("factory-mlflow", "factory-mlflow.factory", "factory-mlflow.factory.svc.cluster.local"):
        for host in (name, f"{name}:80", f"{name}:5000"):
            assert status_with_host(mlflow_server["url"], host) == 200, host
    for host in ("evil.example.com", "evil.example.com:5000", "factory-mlflow.evil.example.com"):
        assert status_with_host(mlflow_server["url"], host) == 403, host


# -- the factory against them -------------------------------------------------------------------------


def factory(*args: str, env: dict[str, str], cwd: Path, log: Path) -> subprocess.CompletedProcess:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    with open(log, "a") as f:
        f.write(f"$ factory {' '.join(args)}   # exit {result.returncode} after {time.monotonic() - start:.1f} s\n{result.stdout}\n{result.stderr}\n")
    return result


@pytest.fixture(scope="module")
def factory_runs(chart, mlflow_server, s3, tmp_path_factory):
    """Two `factory run`s of a tiny spec, then explain, step and lineage; the store's root and endpoint come
    from the chart's ConfigMap variables, the tracking URI from the spec (the ConfigMap's names the cluster DNS)."""
    tmp = tmp_path_factory.mktemp("factory")
    small_corpus(tmp / "html")
    data = small_spec_data(tmp)
    del data["storage"]
    data["name"] = "cluster"
    data["tracking"] = {"uri": mlflow_server["url"]}
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    config = one(chart["docs"], "ConfigMap", "factory-config")["data"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "AWS_", "MLFLOW_"))}
    env.update({k: config[k] for k in ("FACTORY_STORE_ROOT", "FACTORY_S3_ENDPOINT_URL", "FACTORY_S3_REGION")})
    env.update(s3["keys"])
    env["PYTHONPATH"] = str(REPO)
    log = tmp / "commands.log"
    out = {"spec": spec, "env": env, "log": log, "work": Path(data["work_dir"]), "config": config}
    for name, args in (("run1", ("run", str(spec))), ("run2", ("run", str(spec))), ("explain", ("explain", str(spec))),
                       ("step", ("step", "release", str(spec)))):
        out[name] = factory(*args, env=env, cwd=tmp, log=log)
        assert out[name].returncode == 0, f"factory {' '.join(args)}: {out[name].stderr[-3000:]}"
    out["release_uri"] = out["step"].stdout.strip().splitlines()[-1]
    out["lineage"] = factory("lineage", out["release_uri"], env=env, cwd=tmp, log=log)
    return out


def objects(s3) -> dict[str, bytes]:
    client = s3["client"]
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page.get("Contents", [])]
    return {k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def test_store_holds_every_step_on_s3_and_the_second_run_reuses_them(factory_runs, s3):
    config = factory_runs["config"]
    assert config["FACTORY_STORE_ROOT"] == f"s3://{BUCKET}/store" and config["FACTORY_S3_ENDPOINT_URL"] == s3["endpoint"]
    stored = objects(s3)
    manifests = sorted(k for k in stored if k.startswith("store/") and k.endswith("/manifest.json"))
    steps = {k.split("/")[1] for k in manifests}
    assert {"curate", "tokenize", "pretrain", "evaluate", "release"} <= steps
    assert len(manifests) == len(steps)  # the second run published nothing new
    release = factory_runs["release_uri"]
    assert release.startswith(f"s3://{BUCKET}/store/release/")
    assert release.removeprefix(f"s3://{BUCKET}/") + "/manifest.json" in stored
    assert any(k.startswith(release.removeprefix(f"s3://{BUCKET}/") + "/") and k.endswith(".safetensors") for k in stored)
    # explain after the runs: every step is reused.
    explained = [line.split() for line in factory_runs["explain"].stdout.splitlines() if line and not line.startswith(" ")]
    assert explained and all(words[1] == "reuse" for words in explained), factory_runs["explain"].stdout


def test_mlflow_on_postgres_holds_both_runs_and_artifacts_on_s3(factory_runs, mlflow_server, s3):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server["url"])
    experiment = client.get_experiment_by_name("cluster")
    assert experiment is not None and experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    plans = {r.info.run_id: r for r in runs if r.data.tags.get("factory.kind") == "plan"}
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.info.run_id not in plans]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    # Two pipeline runs and `factory step`: three parents, each finished; every step has a run under each.
    assert len(parents) == 3 and all(r.info.status == "FINISHED" for r in parents)
    # each `factory run` logged its plan first, as a run of its own that the pipeline's parent run links to
    linked = [r.data.tags["factory.plan_run"] for r in parents if "factory.plan_run" in r.data.tags]
    assert len(linked) == 2 and set(linked) == set(plans)
    step_of = {r.info.run_id: r.data.tags.get("factory.step") or r.data.tags.get("factory.stage") for r in children}
    assert {"curate", "tokenize", "pretrain", "evaluate", "release"} <= set(step_of.values())
    pretrain = [r for r in children if step_of[r.info.run_id] == "pretrain"]
    assert any(any("loss" in m for m in r.data.metrics) for r in pretrain)  # the run that trained logged its loss
    # Artifacts go through the server to the chart's MLflow prefix in the bucket.
    mlflow_objects = [k for k in objects(s3) if k.startswith("mlflow/")]
    assert mlflow_objects, "no MLflow artifact reached s3://factory/mlflow"
    versions = client.search_model_versions()
    assert versions
    for version in versions:
        location = client.get_model_version_download_uri(version.name, version.version)
        assert location.startswith(("s3://", "mlflow-artifacts:")), location


def test_lineage_of_the_release_on_s3_prints_the_chain(factory_runs):
    result = factory_runs["lineage"]
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "release" and lines[0].endswith(factory_runs["release_uri"])
    chain = [line.split()[0] for line in lines if not line.lstrip().startswith("source")]
    assert {"pretrain", "tokenize", "curate"} <= set(chain)
    assert all(f"s3://{BUCKET}/store/" in line for line in lines if not line.lstrip().startswith("source"))


def test_no_credential_in_database_buckets_or_logs(factory_runs, postgres, s3, chart, mlflow_server):
    dump = subprocess.run([str(postgres["bindir"] / "pg_dump"), "-h", postgres["host"], "-p", str(postgres["port"]), "-U", "postgres",
                           "mlflow"], capture_output=True, env={**os.environ, "PGPASSWORD": postgres["admin_password"]}, timeout=120)
    assert dump.returncode == 0, dump.stderr
    assert b"CREATE TABLE public.runs" in dump.stdout and b"cluster" in dump.stdout  # a real dump, with the runs
    places = {"pg_dump": dump.stdout, **{f"s3://{BUCKET}/{k}": v for k, v in objects(s3).items()}}
    for path in [*chart["logs"].rglob("*"), *factory_runs["work"].rglob("*"), factory_runs["log"]]:
        if path.is_file() and path.stat().st_size < 50_000_000:
            places[str(path)] = path.read_bytes()
    assert len(places) > 20
    credentials = [postgres["password"], postgres["admin_password"], *s3["keys"].values()]
    leaks = [(where, secret[:4] + "...") for where, blob in places.items() for secret in credentials if secret.encode() in blob]
    assert leaks == []
