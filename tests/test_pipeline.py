"""The whole pipeline through kfp.local, for real: killed mid-pretrain, resumed (a partial rerun: only the
missing steps go through kfp.local), then fully reused.

One test on purpose: the three runs share a store, and each run takes tens of seconds on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from factory.lineage import Lineage
from factory.store import LocalStore
from tests.spine import ROOT, small_corpus, small_spec_data

pytestmark = pytest.mark.slow


def _events(log: str) -> list[dict]:
    out = []
    for line in log.splitlines():
        line = line.strip()
        if line.startswith("{") and '"event"' in line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def _factory(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def test_kill_resume_reuse_lineage_release(tmp_path):
    small_corpus(tmp_path / "html", n=60)
    data = small_spec_data(tmp_path, pretrain={"steps": 60, "checkpoint_interval": 10})
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    store = LocalStore(tmp_path / "store")

    # Run 1: kill the whole process group once pretrain has written a checkpoint.
    proc = _factory(["run", str(spec)])
    staging = tmp_path / "store" / ".staging" / "pretrain"
    deadline = time.monotonic() + 400
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        # Nothing half-written is ever visible: no pretrain artifact until the step publishes.
        assert store.keys("pretrain") == []
        ckpts = sorted(staging.glob("*/checkpoints/step-*")) if staging.exists() else []
        if ckpts:
            killed_at = ckpts[-1].name
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait(timeout=60)
    assert killed_at is not None, "pretrain finished or failed before a checkpoint was seen:\n" + proc.stdout.read()[-3000:]
    assert store.keys("pretrain") == [] and store.keys("release") == []
    assert store.keys("curate") and store.keys("tokenize")  # finished steps stay published

    # Run 2, a partial rerun: finished steps are reused in-process, and kfp.local runs only the others
    # (pretrain resumes from its checkpoint), fed the published curate and tokenize artifacts by importers.
    proc = _factory(["run", str(spec)])
    out2, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out2[-3000:]
    summary = json.loads(out2.strip().splitlines()[-1])
    assert (summary["reused"], summary["ran"]) == (2, 3)
    assert {e["step"] for e in _events(out2) if e["event"] == "step.reuse"} == {"curate", "tokenize"}
    kfp_log = re.sub(r"\x1b\[[0-9;]*m", "", Path(summary["log"]).read_text())
    assert sorted(re.findall(r"Executing task '([^']+)'", kfp_log)) == ["evaluate", "finish", "importer", "pretrain", "release"]  # tokenize imported
    ev2 = _events(kfp_log)  # the rerun steps' own events are in kfp.local's log
    assert not [e for e in ev2 if e["event"] == "step.reuse"]
    assert {e["step"] for e in ev2 if e["event"] == "step.run"} == {"pretrain", "evaluate", "release"}
    # MLflow: one parent run for the attempt, closed by the exit handler, holding the reused and the rerun steps.
    lineage = Lineage(f"sqlite:///{tmp_path / 'work' / 'mlflow.db'}", "spine")
    parent2 = lineage.client.get_run(summary["mlflow_run_id"])
    assert parent2.info.status == "FINISHED"
    children2 = {r.data.tags["factory.stage"]: r for r in lineage.client.search_runs(
        [lineage.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent2.info.run_id}'")
        if r.data.tags.get("factory.kind") != "plan"}
    assert sorted(children2) == ["curate", "evaluate", "pretrain", "release", "tokenize"]
    assert sorted(k for k, r in children2.items() if "factory.reused_from_run" in r.data.tags) == ["curate", "tokenize"]
    resumed = [e for e in ev2 if e["event"] == "resumed"]
    assert resumed and resumed[0]["step"] >= 10
    # MLflow: the killed attempt's parent and pretrain runs are KILLED, and the resumed pretrain run links to it.
    runs = lineage.client.search_runs([lineage.experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    killed = {r.info.run_id: r for r in runs if r.info.status == "KILLED"}
    assert sorted(r.data.tags.get("factory.stage", "parent") for r in killed.values()) == ["parent", "pretrain"]
    pretrain_runs = [r for r in runs if r.data.tags.get("factory.stage") == "pretrain" and r.info.status == "FINISHED"]
    assert [r.data.tags.get("factory.resumed_from_run") for r in pretrain_runs] == [
        next(k for k, r in killed.items() if r.data.tags.get("factory.stage") == "pretrain")]

    # Run 3: everything reused, decided before kfp.local starts (no log, no KFP output folder for it).
    runs_before = set((tmp_path / "work" / "kfp").iterdir())
    proc = _factory(["run", str(spec)])
    out3, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out3[-3000:]
    summary = json.loads(out3.strip().splitlines()[-1])
    assert (summary["reused"], summary["ran"]) == (5, 0) and "log" not in summary
    assert set((tmp_path / "work" / "kfp").iterdir()) == runs_before
    ev3 = _events(out3)
    assert sorted(e["step"] for e in ev3 if e["event"] == "step.reuse") == ["curate", "evaluate", "pretrain", "release", "tokenize"]
    assert not [e for e in ev3 if e["event"] == "step.run"]

    # MLflow: a parent run per pipeline run, named by its start time and closed, a nested run per step.
    parent = lineage.client.get_run(summary["mlflow_run_id"])
    assert parent.info.status == "FINISHED" and parent.info.run_name.startswith("spine-20")
    # the plan the pipeline ran under is a run nested under it, and the parent links to it
    plan_run = lineage.client.get_run(parent.data.tags["factory.plan_run"])
    assert plan_run.data.tags["factory.kind"] == "plan" and plan_run.data.metrics["fits"] == 1.0
    assert plan_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    # the parent run says what ran: the spec, its digest, the code's commit, the time it took, the release
    assert parent.data.params["spec"] == "spine" and parent.data.params["spec_digest"].startswith("sha256:")
    assert parent.data.params["git_commit"] and parent.data.metrics["total_seconds"] > 0
    assert parent.data.tags["factory.release.release"] == summary["releases"]["release"]
    # the command ends with where the release is and where MLflow shows the run, then the JSON summary
    assert f"release release: {summary['releases']['release'].removeprefix('file://')}" in out3.splitlines()[-3]
    assert out3.splitlines()[-2].startswith("mlflow: ") and summary["mlflow_url"] in out3.splitlines()[-2]
    children = [r for r in lineage.client.search_runs([lineage.experiment_id],
                                                      filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
                if r.data.tags.get("factory.kind") != "plan"]
    assert sorted(r.data.tags["factory.stage"] for r in children) == ["curate", "evaluate", "pretrain", "release", "tokenize"]
    curate_run = next(r for r in children if r.data.tags["factory.stage"] == "curate")
    assert "factory.reused_from_run" in curate_run.data.tags
    assert lineage.client.search_model_versions("name = 'spine-release'")

    # The release loads where only torch and transformers are imported, and generates.
    (release_key,) = store.keys("release")
    release = store.folder(release_key)
    code = (
        "import sys, torch, transformers\n"
        f"m = transformers.AutoModelForCausalLM.from_pretrained({str(release)!r})\n"
        f"t = transformers.AutoTokenizer.from_pretrained({str(release)!r})\n"
        "ids = t('The module', return_tensors='pt').input_ids\n"
        "out = m.generate(ids, max_new_tokens=8, do_sample=False)\n"
        "assert out.shape[1] == ids.shape[1] + 8, out.shape\n"
        "assert 'factory' not in sys.modules\n"
        "print(t.decode(out[0]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

    # `factory lineage` prints the chain from the release back to the raw HTML.
    r = subprocess.run([sys.executable, "-m", "cli", "lineage", str(release)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    stages = [line.split()[0] for line in r.stdout.splitlines() if not line.startswith("    source")]
    assert stages == ["release", "pretrain", "tokenize", "curate", "evaluate"]
    assert f"source {tmp_path / 'html'}" in r.stdout
