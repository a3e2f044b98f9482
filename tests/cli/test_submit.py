"""`factory submit` and `factory status` through kfp.Client, against a stand-in KFP API server.

No KFP server can run here (it needs a cluster), so the test serves the few KFP v2beta1 REST endpoints
that kfp.Client calls, over real HTTP on 127.0.0.1, and checks what the client sent.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from tests.spine import ROOT
from tests.cli.test_cli import factory


class _KfpApi(http.server.BaseHTTPRequestHandler):
    runs: dict = {}
    experiments: dict = {}
    auth: list = []

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's name
        self.auth.append(self.headers.get("Authorization"))
        path = self.path.split("?")[0]
        if path == "/apis/v2beta1/healthz":
            return self._send(200, {"multi_user": False, "pipeline_store": "database"})
        if path == "/apis/v2beta1/experiments":
            return self._send(200, {"experiments": list(self.experiments.values()), "total_size": len(self.experiments)})
        if path.startswith("/apis/v2beta1/runs/"):
            run = self.runs.get(path.rsplit("/", 1)[-1])
            return self._send(200, run) if run else self._send(404, {"error": "run not found", "code": 5})
        self._send(404, {"error": f"no route {path}"})

    def do_POST(self):  # noqa: N802
        self.auth.append(self.headers.get("Authorization"))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path.startswith("/apis/v2beta1/experiments"):
            exp = {**body, "experiment_id": f"exp-{len(self.experiments) + 1}"}
            self.experiments[exp["experiment_id"]] = exp
            return self._send(200, exp)
        if self.path.startswith("/apis/v2beta1/runs"):
            run = {**body, "run_id": f"run-{len(self.runs) + 1}", "state": "PENDING", "created_at": "2026-11-22T00:00:00Z"}
            self.runs[run["run_id"]] = run
            return self._send(200, run)
        self._send(404, {"error": f"no route {self.path}"})

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_api():
    _KfpApi.runs, _KfpApi.experiments, _KfpApi.auth = {}, {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KfpApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _KfpApi
    server.shutdown()


def test_submit_sends_the_compiled_pipeline_and_status_reads_it_back(kfp_api):
    host, api = kfp_api
    r = factory("submit", str(ROOT / "examples" / "smoke.yaml"), "--host", host, "--experiment", "nightly",
                "--run-name", "smoke-1", "--existing-token", "s3cret")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    run = api.runs[out["run_id"]]
    assert run["display_name"] == "smoke-1"
    assert run["experiment_id"] == next(e["experiment_id"] for e in api.experiments.values() if e["display_name"] == "nightly")
    assert run["service_account"] == "factory-pipeline"
    # The compiled pipeline goes inline, with its Kubernetes platform spec (the pod labels) beside it.
    assert sorted(run["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]) == ["exit-handler-1", "finish"]
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]
    assert "Bearer s3cret" in api.auth

    run.update({"state": "RUNNING", "run_details": {"task_details": [
        {"task_id": "t1", "display_name": "curate", "state": "SUCCEEDED"},
        {"task_id": "t2", "display_name": "tokenize", "state": "RUNNING"},
    ]}})
    r = factory("status", out["run_id"], "--host", host)
    assert r.returncode == 0, r.stderr[-2000:]
    status = json.loads(r.stdout.strip().splitlines()[-1])
    assert status["state"] == "RUNNING"
    assert status["steps"] == [{"step": "curate", "state": "SUCCEEDED"}, {"step": "tokenize", "state": "RUNNING"}]


def test_unreachable_kfp_host_is_one_clear_error():
    r = factory("status", "run-1", "--host", "http://127.0.0.1:9")
    assert r.returncode == 2
    assert "--host: cannot read run run-1 from KFP at http://127.0.0.1:9" in r.stderr
