"""A real Kubernetes API server (etcd + kube-apiserver 1.20) for the launcher tests, once per session.

The binary comes from shared/tools/kube-apiserver/build.sh (default location
~/.cache/kube-apiserver-debian/bin/kube-apiserver, or $KUBE_APISERVER_BIN); tests that need it skip with
the reason when it, etcd or start.sh is missing. Nothing runs pods: the tests play the operators'
part by patching job status, and a tiny HTTPS server plays the kubelet that serves container logs.
"""

from __future__ import annotations

import copy
import http.server
import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

CRDS = Path(__file__).parent / "crds"
REPO = Path(__file__).resolve().parents[2]


def _apiserver_bin() -> Path:
    env = os.environ.get("KUBE_APISERVER_BIN")
    return Path(env) if env else Path.home() / ".cache" / "kube-apiserver-debian" / "bin" / "kube-apiserver"


def _start_script() -> Path:
    env = os.environ.get("KUBE_APISERVER_START")
    return Path(env) if env else REPO.parent / "shared" / "tools" / "kube-apiserver" / "start.sh"


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory) -> Path:
    binary, start = _apiserver_bin(), _start_script()
    if not os.access(binary, os.X_OK):
        pytest.skip(f"no kube-apiserver binary at {binary}: run shared/tools/kube-apiserver/build.sh or set KUBE_APISERVER_BIN")
    if not start.is_file():
        pytest.skip(f"no {start}: set KUBE_APISERVER_START to the kube-apiserver tool's start.sh")
    for tool in ("etcd", "openssl", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install etcd-server openssl curl)")
    run_dir = tmp_path_factory.mktemp("kube")
    out = subprocess.run(["bash", str(start), str(run_dir), str(binary)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        _stop(run_dir)
        raise RuntimeError(f"start.sh failed: {out.stderr.strip()}")
    yield Path(out.stdout.strip().splitlines()[-1])
    _stop(run_dir)


def _stop(run_dir: Path) -> None:
    pids = run_dir / "pids"
    for pid in (pids.read_text().split() if pids.exists() else []):
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def admin(kubeconfig):
    """An admin `ApiClient`, with the three job CRDs installed and established."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    ext = client.ApiextensionsV1Api(api)
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        ext.create_custom_resource_definition(crd)
        wait_for(lambda: any(c.type == "Established" and c.status == "True"
                             for c in (ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or [])),
                 what=f"CRD {crd['metadata']['name']} established")
    return api


@pytest.fixture
def namespace(admin) -> str:
    """A fresh namespace with its `default` ServiceAccount (no controller-manager creates it here)."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_service_account(name, {"metadata": {"name": "default"}})
    return name


def client_as(admin, token: str):
    """A copy of the admin client's connection that authenticates with `token` instead."""
    from kubernetes import client

    cfg = copy.copy(admin.configuration)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    cfg.refresh_api_key_hook = None  # the kubeconfig loader's hook would put the admin token back
    return client.ApiClient(cfg)


def wait_for(check, timeout_s: float = 20.0, what: str = "condition"):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            got = check()
        except Exception:  # the object is not there yet
            got = None
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class _LogHandler(http.server.BaseHTTPRequestHandler):
    logs: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        # The apiserver proxies pods/log to GET /containerLogs/{namespace}/{pod}/{container}?follow=true
        parts = self.path.split("?")[0].strip("/").split("/")
        body = self.logs.get(parts[2], b"") if len(parts) >= 3 and parts[0] == "containerLogs" else None
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def kubelet(admin, tmp_path_factory):
    """A fake kubelet on 127.0.0.1 serving container logs, registered as Node `fake-node`.

    Returns its `logs` dict (pod name -> bytes); a pod scheduled to `fake-node` gets these as its log.
    """
    from kubernetes import client

    d = tmp_path_factory.mktemp("kubelet")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=fake-node",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LogHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    core = client.CoreV1Api(admin)
    core.create_node({"metadata": {"name": "fake-node"}})
    # The apiserver reaches a kubelet at the node's address and daemon endpoint port (TLS unverified
    # when it has no kubelet CA, as here).
    core.patch_node_status("fake-node", {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": server.server_address[1]}},
    }})
    yield _LogHandler.logs
    server.shutdown()
