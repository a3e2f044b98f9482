"""Lineage against a real `mlflow server` process (what the Helm chart deploys), over HTTP."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from factory.spec import load_spec
from factory.steps import Executor
from tests.spine import free_port, wait_healthy, write_spec


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    if not wait_healthy(url, proc, 120):
        proc.kill()
        pytest.fail(f"mlflow server did not become healthy: {proc.stderr.read()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_steps_log_to_an_http_tracking_server(mlflow_server, tmp_path):
    spec_path = write_spec(tmp_path)
    data = yaml.safe_load(spec_path.read_text())
    data["tracking"] = {"uri": mlflow_server, "experiment": "http-lineage"}
    spec_path.write_text(yaml.safe_dump(data))
    executor = Executor(load_spec(spec_path))
    executor.parent_run_id = executor.lineage.start_pipeline("http", "name: spine\n")
    manifests = executor.run(["tokenize"])
    executor.lineage.end_pipeline(executor.parent_run_id)

    client = executor.lineage.client
    children = client.search_runs([executor.lineage.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{executor.parent_run_id}'")
    by_stage = {r.data.tags["factory.stage"]: r for r in children}
    assert set(by_stage) == {"curate", "tokenize"}
    tok = by_stage["tokenize"]
    assert tok.data.tags["factory.fingerprint"] == manifests["tokenize"]["fingerprint"]
    assert tok.data.params["vocab_size"] == "512"
    assert tok.data.metrics["docs_train"] == manifests["tokenize"]["metrics"]["docs_train"]
    assert [d.dataset.name for d in tok.inputs.dataset_inputs][:1] == ["corpus:curate"]
    # Artifacts go through the server's proxied artifact store.
    names = [a.path for a in client.list_artifacts(tok.info.run_id)]
    assert "artifact_ref.json" in names
    assert client.get_run(executor.parent_run_id).info.status == "FINISHED"
