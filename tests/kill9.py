"""Kill -9 and resume, shared by the tests that run a stage in a real process (tests/train/kind_driver.py): the driver
processes' environment, and the test side's wait for a checkpoint, then SIGKILL.

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

ROOT = Path(__file__).resolve().parents[1]


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
