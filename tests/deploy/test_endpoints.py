"""One way to name the store and tracking endpoints: the spec's settings, else the chart's ConfigMap variables.

`factory lineage s3://...` runs as a subprocess against moto's S3 server (tests/conftest.py `s3_endpoint`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
import yaml

from factory.endpoints import ClusterDefaults, cluster_environ, with_cluster_defaults
from factory.spec import parse_spec
from tests.deploy.conftest import REPO
from tests.spine import free_port, small_spec_data

CHART_ENV = {
    "FACTORY_STORE_ROOT": "s3://factory/store",
    "FACTORY_S3_ENDPOINT_URL": "http://factory-minio.factory.svc.cluster.local:9000",
    "FACTORY_S3_REGION": "eu-west-1",
    "FACTORY_TRACKING_URI": "http://factory-mlflow.factory.svc.cluster.local:5000",
}


def test_empty_variables_mean_unset():
    # The chart writes FACTORY_S3_ENDPOINT_URL: "" for AWS S3.
    defaults = ClusterDefaults.from_environ({"FACTORY_S3_ENDPOINT_URL": "", "FACTORY_S3_REGION": " us-east-1 "})
    assert defaults == ClusterDefaults(s3_region="us-east-1")


def test_launched_jobs_get_the_variables_that_are_set():
    assert cluster_environ({**CHART_ENV, "FACTORY_S3_ENDPOINT_URL": "", "HOME": "/root"}) == {
        k: v for k, v in CHART_ENV.items() if k != "FACTORY_S3_ENDPOINT_URL"}


def test_a_spec_without_storage_settings_takes_the_clusters(tmp_path):
    data = small_spec_data(tmp_path)
    del data["storage"]
    spec = with_cluster_defaults(parse_spec(data), CHART_ENV)
    assert spec.storage.root == "s3://factory/store"
    assert spec.storage.endpoint_url == CHART_ENV["FACTORY_S3_ENDPOINT_URL"]
    assert spec.storage.region == "eu-west-1"
    assert spec.tracking_uri() == CHART_ENV["FACTORY_TRACKING_URI"]
    # Without the variables (a laptop) nothing changes.
    assert with_cluster_defaults(parse_spec(data), {}) == parse_spec(data)


def test_what_the_spec_writes_wins(tmp_path):
    data = small_spec_data(tmp_path)
    data["storage"] = {"root": "runs/store", "endpoint_url": "http://minio.local:9000"}  # the default root, written out
    data["tracking"] = {"uri": "http://mlflow.local:5000"}
    spec = with_cluster_defaults(parse_spec(data), CHART_ENV)
    assert (spec.storage.root, spec.storage.endpoint_url) == ("runs/store", "http://minio.local:9000")
    assert spec.storage.region == "eu-west-1"  # left out, so the cluster's
    assert spec.tracking_uri() == "http://mlflow.local:5000"


def factory(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACTORY_")}
    run_env = {**clean, **env, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=run_env, timeout=120, cwd=REPO)


@pytest.fixture
def published_release(s3_endpoint, s3_bucket) -> str:
    """A release manifest and its ancestor's lineage entry, as the store publishes them, on the S3 endpoint."""
    uri = f"s3://{s3_bucket}/store/release/0123456789abcdef"
    manifest = {
        "stage": "release", "kind": "release", "fingerprint": "0123456789abcdef" * 4, "uri": uri,
        "producer": {"mlflow_run_id": "run-release"}, "files": [],
        "lineage": [{"stage": "pretrain", "kind": "checkpoint", "fingerprint": "fedcba9876543210" * 4,
                     "uri": f"s3://{s3_bucket}/store/pretrain/fedcba9876543210", "mlflow_run_id": "run-pretrain", "sources": []}],
    }
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.put_object(Bucket=s3_bucket, Key="store/release/0123456789abcdef/manifest.json", Body=json.dumps(manifest).encode())
    return uri


def test_lineage_reaches_the_endpoint_the_chart_names(published_release, s3_endpoint):
    result = factory("lineage", published_release, env={"FACTORY_S3_ENDPOINT_URL": s3_endpoint, "FACTORY_S3_REGION": "us-east-1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["release", "release", "0123456789abcdef"] and lines[0].endswith(published_release)
    assert lines[1].split()[:3] == ["pretrain", "checkpoint", "fedcba9876543210"] and "run=run-pretrain" in lines[1]


def test_lineage_takes_the_endpoint_from_a_spec(published_release, s3_endpoint, tmp_path):
    data = small_spec_data(tmp_path)
    data["storage"] = {"root": "s3://elsewhere/store", "endpoint_url": s3_endpoint, "region": "us-east-1"}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    # The spec wins over a variable pointing elsewhere.
    result = factory("lineage", published_release, "--spec", str(spec), env={"FACTORY_S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    assert "0123456789abcdef" in result.stdout


def test_unreachable_endpoint_is_one_line_naming_it(s3_endpoint):
    closed = f"http://127.0.0.1:{free_port()}"
    result = factory("lineage", "s3://factory/store/release/0123", env={"FACTORY_S3_ENDPOINT_URL": closed})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot read s3://factory/store/release/0123 from " + closed)
    assert "FACTORY_S3_ENDPOINT_URL" in line and "Traceback" not in result.stderr


def test_missing_manifest_is_one_line(s3_endpoint, s3_bucket):
    result = factory("lineage", f"s3://{s3_bucket}/store/release/none", env={"FACTORY_S3_ENDPOINT_URL": s3_endpoint})
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: s3://{s3_bucket}/store/release/none: no manifest.json there"
