"""The curate stage on Ray: a real Ray head node started with `ray start --head`, joined by address.

The per-page steps run as datatrove `RayPipelineExecutor` tasks on that cluster; the corpus they write must
be byte-identical to the local executor's on the same pages.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factory.stages.curate import Config, run
from factory.errors import InputError
from factory.stage import StepContext
from tests.spine import corpus_records, free_port

SMOKE = Path(__file__).resolve().parents[3] / "examples" / "data" / "smoke-html"
HAS_RAY = importlib.util.find_spec("ray") is not None


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray head node on 127.0.0.1 (2 CPUs, no dashboard) with token authentication, as a secured
    cluster runs; this process gets the token the way a client does (RAY_AUTH_MODE / RAY_AUTH_TOKEN)."""
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)
    subprocess.run([*ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
                    "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp)],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        subprocess.run([*ray_cli, "stop", "--force"], capture_output=True, timeout=60)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pages(tmp_path: Path, n: int = 40) -> Path:
    pages = tmp_path / "pages"
    pages.mkdir()
    for src in sorted(SMOKE.glob("page-*.html"))[:n]:
        shutil.copy(src, pages / src.name)
    return pages


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'ray[default]'; the test extra has it)")
def test_ray_cluster_by_address_gives_the_local_result(ray_head, tmp_path):
    pages = _pages(tmp_path)
    outs = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        out.mkdir()
        config = Config(sources=[str(pages)], executor=executor, ray_address=ray_head if executor == "ray" else None, workers=2)
        outs[executor] = (run(config, {}, out, StepContext("curate", scratch=tmp_path / f"scratch-{executor}")), out)

    (local_metrics, local_out), (ray_metrics, ray_out) = outs["local"], outs["ray"]
    import ray

    # it joined the given cluster (which reports its address by the node's IP, so compare the port)
    assert ray.is_initialized() and ray.get_runtime_context().gcs_address.rsplit(":", 1)[1] == ray_head.rsplit(":", 1)[1]
    assert len(corpus_records(local_out)) > 20
    assert (ray_out / "documents" / "part-00000.jsonl.gz").read_bytes() == (local_out / "documents" / "part-00000.jsonl.gz").read_bytes()
    timings = {k for k in local_metrics if k.startswith("seconds.")}
    assert {k: v for k, v in ray_metrics.items() if k not in timings} == {k: v for k, v in local_metrics.items() if k not in timings}
    assert ray_metrics["docs_out"] == len(corpus_records(ray_out))


def test_ray_executor_without_ray_names_the_install(tmp_path, monkeypatch):
    # Ray made unimportable for this test (sys.modules entry None), as on a machine without it.
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"pip install 'ray\[default\]'"):
        run(Config(sources=[str(SMOKE / "page-0000.html")], executor="ray"), {}, tmp_path, StepContext("curate"))
