"""`factory run`'s local runner: kfp.local with its output in a log file, one line when a step fails.

    with run_lock(work_dir):                       # one `factory run` per work folder at a time
        result = run_pipeline_locally(spec, work_dir)
        result.failure  # None, or "step tokenize failed: <its own error> (full log: WORK/logs/run-....log)"

kfp.local prints every step's executor input (the whole spec, several times) and its streamed logs; all of
it goes to `WORK_DIR/logs/run-<UTC time>.log`. A failing step's own message is the last exception line of
its traceback in that log.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kfp import local

from factory.errors import UserError
from factory.logs import get_logger
from pipelines.end_to_end import build_pipeline

log = get_logger("cli.local_run")

LOCK_NAME = ".factory-run.lock"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # kfp.local colours task names
# kfp.local's RuntimeError: "... Inner task failed: 'tokenize' inside 'exit-handler-1'."
_FAILED_TASK = re.compile(r"Inner task failed: '([^']+)'")
# the last line of a Python traceback: "factory.errors.InputError: message"
_EXCEPTION_LINE = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt)|[A-Z]\w*Error\w*): (.*)$")


@dataclass(frozen=True)
class LocalRunResult:
    log: Path
    failure: str | None  # one line naming the failed step and its error; None when the pipeline succeeded


@contextmanager
def run_lock(work_dir: Path) -> Iterator[None]:
    """Hold the work folder's run lock for the life of this process (the kernel drops it if it is killed).

    While it is held no other `factory run` uses the folder, so runs left RUNNING in MLflow are dead.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / LOCK_NAME, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise UserError(f"{work_dir}: another `factory run` ({holder}) is using this work folder; wait for it "
                            f"or set a different work_dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so child processes too) to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def step_error(log_text: str, step: str) -> str | None:
    """The failed step's own error message: the last exception line logged before kfp marked it failed."""
    log_text = _ANSI.sub("", log_text)
    end = log_text.find(f"'{step}' finished with status")
    lines = (log_text[:end] if end >= 0 else log_text).splitlines()
    for line in reversed(lines):
        m = _EXCEPTION_LINE.match(line)
        if m and "Traceback" not in line:
            return m.group(2).strip()
    return None


def failure_line(error: Exception, log_text: str, log_path: Path) -> str:
    """One line: which step failed, with its own message, and where the full log is."""
    m = _FAILED_TASK.search(_ANSI.sub("", str(error)))
    if m is None:
        return f"pipeline failed: {error} (full log: {log_path})"
    step = m.group(1)
    message = step_error(log_text, step) or "see the log"
    return f"step {step} failed: {message} (full log: {log_path})"


def run_pipeline_locally(spec, work_dir: Path, plan_json: str = "", published: Mapping[str, Mapping[str, Any]] | None = None,
                         job_id: str = "") -> LocalRunResult:
    """Compile `spec`'s pipeline and run it under kfp.local's SubprocessRunner, its output in a log file.
    `plan_json` is the plan made once before the run (`Executor.plan_json()`); every step takes it from the
    pipeline instead of reading the raw inputs again.

    With `published` (manifests by step name) only the other steps run, as their own sub-DAG fed the
    published artifacts by importers (no subprocess for those), under the parent run tagged `job_id`."""
    logs = work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"run-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S-%f')}.log"
    log.info("pipeline.start", runner="kfp.local", log=str(log_path))
    error: Exception | None = None
    with output_to(log_path):
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(work_dir / "kfp"), raise_on_error=True)
        try:
            if published is None:
                build_pipeline(spec, local=True)(plan_json=plan_json)
            else:
                build_pipeline(spec, published, local=True)(job_id=job_id, plan_json=plan_json)
        except RuntimeError as e:
            error = e
    if error is None:
        return LocalRunResult(log_path, None)
    return LocalRunResult(log_path, failure_line(error, log_path.read_text(errors="replace"), log_path))
