"""Every resumable kind, stopped at a seeded step, resumes in the same folder and reproduces the uninterrupted run: the same loss at every step, the same records of its own (rl's rollouts, which a
kill in the middle of a rollout batch must restore; preference's pairs) and the same exported weights, bit for bit.

pretrain and rl are killed with SIGKILL in a real process (tests/train/kind_driver.py); the checkpoint machinery they
exercise is the shell's, shared by every kind, so the other kinds are stopped in-process at the end of a step (a
callback through the run context raises), which tests what is theirs: the state their stage keeps beside the
shell's (pairs, records), restored on resume."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from factory.kinds import KINDS
from factory.stage import StepContext
from factory.train import read_metrics
from factory.train.trainer import Callback
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


SIGKILL = ("pretrain", "rl")


class StopAt(Callback):
    """Stops a run at the end of step `step`, after the stage's own records and before that step's checkpoint."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, metrics) -> None:
        if metrics.step == self.step:
            raise KeyboardInterrupt(f"stopped at step {self.step}")


@pytest.mark.parametrize("kind", TRAINERS)
def test_a_stopped_run_resumes_and_reproduces_the_uninterrupted_run(inputs, kind, tmp_path):
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

    if kind in SIGKILL:
        saved = kill_after_checkpoint(driver("--step-sleep", "0.2"), out / "checkpoints", kill_at, log, timeout=300)
        assert saved < config["steps"] and not (out / "model").exists()  # killed mid-run, before the end
        assert driver().wait(timeout=300) == 0, log.read_text()[-3000:]
    else:
        stage = KINDS[kind]
        with pytest.raises(KeyboardInterrupt):
            stage.run(stage.config(**config), inputs[kind], out, StepContext(kind, callbacks=[StopAt(kill_at)]))
        assert not (out / "model").exists() and (out / "checkpoints").is_dir()
        stage.run(stage.config(**config), inputs[kind], out, StepContext(kind))
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, config["steps"] + 1))
    assert [r["loss"] for r in records] == want  # bitwise, before and after the kill
    assert records_digest(out) == straight["records"]  # the stage's own records too: rollouts, pairs, summaries
    assert (out / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "straight" / "model" / "model.safetensors").read_bytes()
