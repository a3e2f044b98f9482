"""Kill -9 and resume, shared by the trainer tests (pretrain, sft, rl): the driver processes' slowed-down steps,
their environment, and the test side's wait for a checkpoint, then SIGKILL.

    # in a driver script
    slow_steps(args.step_sleep)
    # in a test
    proc = subprocess.Popen([...driver..., "--step-sleep", "0.1"], env=driver_env(), stdout=log_file, ...)
    saved = kill_after_checkpoint(proc, out / "checkpoints", kill_at, log)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from factory.train.checkpoint import latest_checkpoint
from factory.train.trainer import Callback, Trainer

ROOT = Path(__file__).resolve().parents[1]


class Sleep(Callback):
    """Slows each step down, so that a test can kill the process mid-run reliably."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, trainer, metrics) -> None:
        time.sleep(self.seconds)


class KillAt(Callback):
    """Stops a run in-process at the end of step `step` (after the stage's own records, before a checkpoint of that
    step), as a kill would; added through the run context (`StepContext.callbacks`)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, metrics) -> None:
        if metrics.step == self.step:
            raise KeyboardInterrupt(f"killed at step {self.step}")


def slow_steps(seconds: float) -> None:
    """Give every Trainer made in this process a `Sleep(seconds)` callback (nothing when seconds is 0)."""
    if not seconds:
        return
    original = Trainer.__init__

    def init(self, *a, callbacks=(), **kw):
        original(self, *a, callbacks=[*callbacks, Sleep(seconds)], **kw)

    Trainer.__init__ = init  # type: ignore[method-assign]


def driver_env() -> dict[str, str]:
    """One thread, and this checkout first on the path of the driver processes (they import `tests.kill9`)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def kill_after_checkpoint(proc: subprocess.Popen, checkpoints: Path, at: int, log: Path, timeout: float = 120) -> int:
    """SIGKILL `proc` once its latest checkpoint is at step `at` or later; the step of the checkpoint it left."""
    deadline = time.monotonic() + timeout
    while True:
        latest = latest_checkpoint(checkpoints)
        if latest is not None and int(latest.name.split("-")[1]) >= at:
            break
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    return int(latest_checkpoint(checkpoints).name.split("-")[1])
