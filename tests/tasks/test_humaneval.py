"""HumanEval in the sandbox: canonical solutions pass, broken variants fail (a spread subset; all 164 in
bench/humaneval.py)."""

from __future__ import annotations

import shutil

import pytest

from factory.tasks.humaneval import broken, canonical, humaneval, version
from factory.verify.sandbox import SandboxConfig, run_many_tests

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (tests/setup.sh installs it)")


def test_the_package_ships_164_problems():
    tasks = humaneval()
    assert len(tasks) == 164 and tasks[0].id == "HumanEval/0" and version()
    assert all(t.entry_point in t.prompt for t in tasks)


def test_canonical_passes_and_broken_fails_in_the_sandbox():
    subset = humaneval()[::11]  # 15 problems spread over the set
    config = SandboxConfig(timeout_s=20, cpu_s=10, memory_mb=1024)
    good = run_many_tests([t.case(canonical(t)) for t in subset], config, workers=4)
    bad = run_many_tests([t.case(broken(t)) for t in subset], config, workers=4)
    assert [v.passed for v in good] == [True] * len(subset), [t.id for t, v in zip(subset, good) if not v.passed]
    assert all(v.tests_passed == v.tests_total for v in good)
    assert [v.passed for v in bad] == [False] * len(subset)
    assert all("AssertionError" in v.stderr and v.tests_passed < v.tests_total for v in bad)
