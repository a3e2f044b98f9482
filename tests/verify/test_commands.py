"""`factory sandbox run` and `factory verify math|code`, through the real CLI process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FACTORY = [sys.executable, "-m", "cli"]


def factory(*args: str) -> tuple[int, dict | str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(FACTORY + list(args), capture_output=True, text=True, timeout=120, env=env)
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else proc.stderr)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (tests/setup.sh installs it)")
def test_sandbox_and_code_verdicts(tmp_path: Path):
    (tmp_path / "loop.py").write_text("while True:\n    pass\n")
    rc, verdict = factory("sandbox", "run", str(tmp_path / "loop.py"), "--timeout", "1", "--memory", "128")
    assert rc == 1 and verdict["limit"] == "wall_clock" and verdict["passed"] is False
    (tmp_path / "sol.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "tests.py").write_text("assert double(21) == 42\n")
    rc, verdict = factory("verify", "code", str(tmp_path / "sol.py"), str(tmp_path / "tests.py"))
    assert rc == 0 and verdict["passed"] and verdict["exit_code"] == 0


def test_math_verdict_and_a_missing_file(tmp_path: Path):
    rc, verdict = factory("verify", "math", "\\frac{1}{2}", "so the answer is \\boxed{0.5}")
    assert rc == 0 and verdict["correct"] and verdict["answer"] == "\\frac{1}{2}"
    rc, message = factory("sandbox", "run", str(tmp_path / "absent.py"))
    assert rc == 2 and "absent.py: cannot be read" in message


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (tests/setup.sh installs it)")
def test_a_solution_that_exits_before_the_asserts_fails(tmp_path: Path):
    """`sys.exit(0)` before the tests: exit status 0, which `verify code` scored as passed before the test harness."""
    (tmp_path / "sol.py").write_text("def double(x):\n    return x\n\nimport sys\nsys.exit(0)\n")
    (tmp_path / "tests.py").write_text("assert double(21) == 42\n")
    rc, verdict = factory("verify", "code", str(tmp_path / "sol.py"), str(tmp_path / "tests.py"))
    assert rc == 1 and verdict["passed"] is False and verdict["tests_passed"] is None and verdict["tests_total"] == 1
