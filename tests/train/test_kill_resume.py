"""A real trainer process killed with SIGKILL at a random step resumes in the same folder and reproduces
the uninterrupted run's loss at every later step."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import torch

from factory.stage import StepContext
from factory.stages import pretrain
from factory.train import read_metrics
from tests.kill9 import driver_env, kill_after_checkpoint

DRIVER = Path(__file__).with_name("pretrain_driver.py")
CONFIG = dict(seq_len=32, micro_batch_size=4, steps=20, lr=3e-3, warmup_steps=2, decay_fraction=0.25,
              checkpoint_interval=2, keep_checkpoints=2, log_interval=4)


def driver(tokens: Path, out: Path, log: Path, *extra: str) -> subprocess.Popen:
    # output to a file, never an unread pipe: a full pipe would stall the trainer
    with open(log, "a") as fh:
        return subprocess.Popen([sys.executable, str(DRIVER), str(tokens), str(out), json.dumps(CONFIG), *extra],
                                env=driver_env(), stdout=fh, stderr=subprocess.STDOUT)


def test_kill_9_and_resume_reproduces_the_uninterrupted_losses(tokens_artifact, tmp_path):
    torch.set_num_threads(1)
    straight = tmp_path / "straight"
    pretrain.run(pretrain.Config(**CONFIG), {"tokens": tokens_artifact}, straight, StepContext("straight"))
    want = [r["loss"] for r in read_metrics(straight / "metrics.jsonl")]

    kill_at = random.Random().randrange(4, 14)  # any step: the claim holds for all of them
    out = tmp_path / "killed"
    log = tmp_path / "log.txt"
    proc = driver(tokens_artifact.path, out, log, "--step-sleep", "0.1")
    saved = kill_after_checkpoint(proc, out / "checkpoints", kill_at, log)
    assert saved < CONFIG["steps"] and not (out / "model").exists()  # killed mid-run, before the end

    resumed = driver(tokens_artifact.path, out, log)
    assert resumed.wait(timeout=120) == 0, log.read_text()[-2000:]
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, CONFIG["steps"] + 1))
    got = [r["loss"] for r in records]
    assert got[saved:] == want[saved:]  # bitwise, every step after the checkpoint (and the ones before it)
    assert got == want
    assert (out / "model/model.safetensors").read_bytes() == (straight / "model/model.safetensors").read_bytes()
