"""Every resumable kind, killed with SIGKILL at a seeded step in a real process, resumes in the same folder and
reproduces the uninterrupted run: the same loss at every step, the same records of its own (rl's rollouts, which a
kill in the middle of a rollout batch must restore; preference's pairs) and the same exported weights, bit for bit."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from factory.kinds import KINDS
from factory.train import read_metrics
from tests.kill9 import driver_env, kill_after_checkpoint
from tests.train.trainer_kinds import BASE, TRAINERS, records_digest, run_kind

DRIVER = Path(__file__).with_name("kind_driver.py")
# long enough to be killed in the middle; rl takes two optimizer steps per rollout and checkpoints every step, so a
# kill can land in the middle of a rollout batch
KILL = {kind: {**BASE[kind], "steps": 10, "checkpoint_interval": 2, "keep_checkpoints": 2} for kind in TRAINERS}
KILL["rl"] = {**BASE["rl"], "steps": 6, "steps_per_rollout": 2, "checkpoint_interval": 1, "keep_checkpoints": 2}


@pytest.fixture(scope="module")
def inputs(trainer_inputs):
    return trainer_inputs


def test_every_resumable_kind_is_covered():
    assert {k for k, entry in KINDS.items() if entry.resumable} <= set(KILL)


@pytest.mark.parametrize("kind", TRAINERS)
def test_kill_9_and_resume_reproduces_the_uninterrupted_run(inputs, kind, tmp_path):
    config = KILL[kind]
    straight = run_kind(kind, config, inputs, tmp_path / "straight")
    assert "error" not in straight, straight.get("error")
    want = [r["loss"] for r in read_metrics(tmp_path / "straight" / "metrics.jsonl")]

    kill_at = random.Random(kind).randrange(2, config["steps"] - 2)  # seeded per kind: any step, the claim holds
    out, log = tmp_path / "killed", tmp_path / "log.txt"
    folders = json.dumps({kind: {name: str(a.path) for name, a in inputs[kind].items()}})

    def driver(*extra: str) -> subprocess.Popen:
        with open(log, "a") as fh:  # a file, never an unread pipe: a full pipe would stall the trainer
            return subprocess.Popen([sys.executable, str(DRIVER), folders, kind, str(out), json.dumps(config), *extra],
                                    env=driver_env(), stdout=fh, stderr=subprocess.STDOUT)

    saved = kill_after_checkpoint(driver("--step-sleep", "0.2"), out / "checkpoints", kill_at, log, timeout=300)
    assert saved < config["steps"] and not (out / "model").exists()  # killed mid-run, before the end
    assert driver().wait(timeout=300) == 0, log.read_text()[-3000:]
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, config["steps"] + 1))
    assert [r["loss"] for r in records] == want  # bitwise, before and after the kill
    assert records_digest(out) == straight["records"]  # the stage's own records too: rollouts, pairs, summaries
    assert (out / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "straight" / "model" / "model.safetensors").read_bytes()
