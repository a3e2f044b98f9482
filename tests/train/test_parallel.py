"""2-rank torchrun (gloo, CPU) with DDP and FSDP2: the same global batch gives the single-process losses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from factory.stage import StepContext
from factory.stages import pretrain
from factory.train import read_metrics
from tests.kill9 import driver_env

DRIVER = Path(__file__).with_name("pretrain_driver.py")
BASE = dict(seq_len=32, grad_accum=1, steps=6, lr=3e-3, warmup_steps=2, decay_fraction=0.25, checkpoint_interval=3,
            log_interval=3)


@pytest.fixture(scope="module")
def two_ranks(tokens_artifact, tmp_path_factory) -> Path:
    """One torchrun launch (2 ranks, gloo) training with DDP, then with FSDP2: 2 ranks x 4 sequences =
    the single process's 8 sequences per step, at the same global positions."""
    root = tmp_path_factory.mktemp("two_ranks")
    runs = [a for dp in ("ddp", "fsdp") for a in (str(root / dp), json.dumps({"micro_batch_size": 4, "data_parallel": dp, **BASE}))]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(DRIVER), str(tokens_artifact.path), *runs]
    with open(root / "log.txt", "w") as log:
        done = subprocess.run(cmd, env=driver_env(), stdout=log, stderr=subprocess.STDOUT, timeout=200)
    assert done.returncode == 0, (root / "log.txt").read_text()[-3000:]
    return root


@pytest.fixture(scope="module")
def single(tokens_artifact, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("single")
    pretrain.run(pretrain.Config(micro_batch_size=8, **BASE), {"tokens": tokens_artifact}, out, StepContext("one"))
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl")]


@pytest.mark.parametrize("data_parallel", ["ddp", "fsdp"])
def test_two_ranks_match_one_process(data_parallel, single, two_ranks):
    out = two_ranks / data_parallel
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 7))  # one writer: rank 0
    assert records[-1]["tokens_seen"] == 6 * 8 * 32
    assert [r["loss"] for r in records] == pytest.approx(single, rel=1e-5)
    assert single[-1] < single[0] - 0.5  # it learns, so matching means something
    assert sorted(p.name for p in out.iterdir()) == ["loss.png", "metrics.jsonl", "model"]

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "model")  # full, unsharded, unwrapped weights
    assert "model.embeddings.weight" in model.state_dict()
