"""What a person sees in MLflow's UI, rendered by a real browser: the page `factory run` prints for the pipeline's
parent run opens on the training view, lists the step runs, and leads to the runs table where the pipeline run
stands alone at the top level (its steps and the plan it ran under nest beneath it).

Needs a Chromium binary (Debian: `apt-get install chromium`); without one the module skips.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from factory.cost.estimate import PlanReport
from factory.cost.tracking import log_plan
from factory.lineage import Lineage
from factory.orchestrate import pipeline_run_name
from tests.spine import free_port, wait_healthy

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (Debian: apt-get install chromium)")

STAGES = ("tokenize", "pretrain", "sft")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on a loopback port, in its own process group: it starts uvicorn beneath itself, and
    stopping only the CLI process would leave that running."""
    root = tmp_path_factory.mktemp("mlflow-ui")
    port = free_port()
    # The job runner (huey consumers) serves GenAI jobs this test never asks for; off, the server starts faster.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(url, proc, 120):
            pytest.fail(f"mlflow server did not become healthy: {(root / 'server.log').read_text()[-2000:]}")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever of the group outlived the CLI process
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        log.close()


def rendered(url: str, profile: Path) -> tuple[str, str]:
    """The page at `url` after its scripts ran, as (DOM, visible text). A fresh profile per load, so no view the
    UI kept in localStorage from an earlier load decides what opens."""
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         # virtual time runs on while the page's API calls are in flight: 20 s is the page settled, not a wait
         "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", out, flags=re.DOTALL)
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))
    return out, text


def test_the_printed_mlflow_page_shows_the_training_runs(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")  # Lineage sets it if unset; the test leaves env as it was
    # Logged as `factory run` logs: the parent run, the plan nested under it, one nested run per step.
    lineage = Lineage(mlflow_server, "smoke")
    run_name = pipeline_run_name("smoke")
    parent = lineage.start_pipeline(run_name, "name: smoke\n", params={"spec": "smoke"})
    spec = SimpleNamespace(name="smoke", to_yaml=lambda: "name: smoke\n")
    log_plan(spec, PlanReport(spec="smoke", mfu=0.4, price_per_gpu_hour=2.0, context=None, steps=[]), lineage,
             parent_run_id=parent)
    for i, stage in enumerate(STAGES):
        with lineage.step_run(parent, stage, {"lr": 1e-3}, f"sha256:{i}") as tracker:
            tracker.log_metrics({"loss": 2.0 - i}, step=1)
    lineage.end_pipeline(parent)

    url = lineage.run_url(parent)
    dom, text = rendered(url, tmp_path / "run")
    # The parent run's page, in the training view: its step runs and plan by name, no GenAI navigation.
    assert f"Run {parent} - MLflow" in text, text[:600]
    assert run_name in text
    children = re.search(r"Child runs (.*?) Source", text)
    assert children and set(children.group(1).replace(",", " ").split()) == {*STAGES, "smoke-plan"}, text[:1500]
    assert "Model registry" in text and "Observability" not in text, text[:600]

    # The sidebar's Runs link (what a person clicks next) keeps the training view and opens the runs table.
    runs_link = re.search(rf'href="(#/experiments/{lineage.experiment_id}/runs\?workflowType=machine_learning)"', dom)
    assert runs_link, "no link to the runs table in the training view"
    _, table = rendered(f"{mlflow_server}/{runs_link.group(1)}", tmp_path / "table")
    assert f"Runs - Experiment {lineage.experiment_id} - MLflow" in table, table[:600]
    assert run_name in table and f"{len(STAGES) + 2} matching runs" in table, table[:1500]
    # Only the pipeline run stands at the top level: its steps and plan are collapsed beneath it.
    assert not any(name in table for name in (*STAGES, "smoke-plan")), table[:1500]

    # Why the address names the view: the experiment's own page, without it, opens MLflow's GenAI overview
    # (traces) in a browser that never flipped the switch, whatever kind tag the experiment carries.
    _, overview = rendered(f"{mlflow_server}/#/experiments/{lineage.experiment_id}", tmp_path / "bare")
    assert f"Overview - Experiment {lineage.experiment_id} - MLflow" in overview, overview[:600]
