"""`torchrun -m cli step pretrain SPEC`, as the launchers run it, with 2 real processes (gloo, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from factory.lineage import Lineage
from factory.spec import load_spec
from factory.steps import Executor
from tests.spine import ROOT, write_spec

pytestmark = pytest.mark.slow


def test_two_ranks_train_and_rank0_publishes_once(tmp_path):
    spec_path = write_spec(tmp_path, pretrain={"steps": 6, "micro_batch_size": 2, "data_parallel": "ddp"})
    executor = Executor(load_spec(spec_path))
    executor.run(["tokenize"])  # upstream steps, built once before the job (as the pipeline does)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "cli", "step", "pretrain", str(spec_path), "--parent-run-id", "none"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    step = executor.plan()["pretrain"]
    manifest = executor.store.complete(step.key)
    assert manifest is not None and manifest["fingerprint"] == step.fingerprint
    assert manifest["metrics"]["steps"] == 6
    assert executor.store.keys("pretrain") == [step.key]
    lineage = Lineage(executor.spec.tracking_uri(), executor.spec.experiment())
    runs = lineage.client.search_runs([lineage.experiment_id], filter_string="tags.`factory.stage` = 'pretrain'")
    assert len(runs) == 1  # rank 0 alone tracked it
    assert runs[0].data.tags["factory.artifact_uri"] == manifest["uri"]
