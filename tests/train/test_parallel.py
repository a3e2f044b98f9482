"""Every kind that can run distributed, on 2 torchrun ranks (gloo, CPU) with DDP and FSDP2: the same global batch
gives the single process's losses, rank 0 alone writes, and the export is the full, unwrapped model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from factory.kinds import KINDS
from factory.train import read_metrics
from tests.kill9 import driver_env
from tests.train.trainer_kinds import BASE, TRAINERS, run_kind

DRIVER = Path(__file__).with_name("kind_driver.py")
DISTRIBUTED = [k for k in TRAINERS if KINDS[k].distributed]
# (kind, data parallelism): pretrain both ways, every other distributed kind once each way between them
RUNS = [("pretrain", "ddp"), ("pretrain", "fsdp"), ("sft", "fsdp"), ("distill", "ddp"), ("reward_model", "fsdp"),
        ("preference", "ddp")]


def _config(kind: str, per_rank: bool) -> dict:
    """The kind's tiny run with an even global batch: 2 ranks x m rows, or one process with 2m."""
    m = BASE[kind]["micro_batch_size"]
    return {**BASE[kind], "micro_batch_size": m // 2 if per_rank else m, "log_interval": 1}


@pytest.fixture(scope="module")
def inputs(trainer_inputs):
    return trainer_inputs


@pytest.fixture(scope="module")
def two_ranks(inputs, tmp_path_factory) -> Path:
    """One torchrun launch (2 ranks, gloo) for every run in RUNS, one after the other."""
    root = tmp_path_factory.mktemp("two_ranks")
    folders = {kind: {name: str(a.path) for name, a in inputs[kind].items()} for kind in DISTRIBUTED}
    runs = [a for kind, dp in RUNS
            for a in (kind, str(root / f"{kind}-{dp}"), json.dumps({**_config(kind, True), "data_parallel": dp}))]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(DRIVER),
           json.dumps(folders), *runs]
    with open(root / "log.txt", "w") as log:
        done = subprocess.run(cmd, env=driver_env(), stdout=log, stderr=subprocess.STDOUT, timeout=600)
    assert done.returncode == 0, (root / "log.txt").read_text()[-4000:]
    return root


def test_the_runs_cover_every_distributed_kind_and_both_layouts():
    assert {k for k, _ in RUNS} == set(DISTRIBUTED) and {dp for _, dp in RUNS} == {"ddp", "fsdp"}


@pytest.mark.parametrize("kind,data_parallel", RUNS)
def test_two_ranks_match_one_process(inputs, two_ranks, tmp_path, kind, data_parallel):
    single = run_kind(kind, _config(kind, False), inputs, tmp_path / "single")
    assert "error" not in single, single.get("error")
    out = two_ranks / f"{kind}-{data_parallel}"
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, BASE[kind]["steps"] + 1))  # one writer: rank 0
    assert [r["loss"] for r in records] == pytest.approx([s["loss"] for s in single["steps"]], rel=1e-5)
    assert [r["tokens"] for r in records] == [s["tokens"] for s in single["steps"]]  # the same global batch
    assert {"loss.png", "metrics.jsonl", "model"} <= {p.name for p in out.iterdir()}
    assert "checkpoints" not in {p.name for p in out.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(out / "model")  # full, unsharded, unwrapped weights
    assert "model.embeddings.weight" in model.state_dict()
