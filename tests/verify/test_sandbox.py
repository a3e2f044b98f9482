"""The code sandbox: real programs under bubblewrap, and an escape suite that must count 0 escapes."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from factory.verify.sandbox import SandboxConfig, SandboxUnavailable, run_program, run_tests

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (tests/setup.sh installs it)")
LIMITS = SandboxConfig(timeout_s=2, cpu_s=1, memory_mb=256, max_procs=16, file_size_mb=1)


@needs_bwrap
def test_a_passing_and_a_failing_program():
    ok = run_tests("def add(a, b):\n    return a + b", "assert add(2, 3) == 5\nprint('fine')", LIMITS)
    assert ok.passed and ok.stdout == "fine\n" and ok.limit is None
    bad = run_tests("def add(a, b):\n    return a - b", "assert add(2, 3) == 5", LIMITS)
    assert not bad.passed and bad.exit_code == 1 and "AssertionError" in bad.stderr
    broken = run_program("def f(:\n", LIMITS)
    assert not broken.passed and "SyntaxError" in broken.stderr


@needs_bwrap
def test_escape_suite_counts_zero_escapes(tmp_path: Path, monkeypatch):
    """Every attempt must fail, with the reason in the verdict."""
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("TOP-SECRET-FILE")
    monkeypatch.setenv("FACTORY_TEST_SECRET", "TOP-SECRET-ENV")
    outside = tmp_path / "written_from_sandbox"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    sleeper = "31.4159"  # a unique argument, to find a left-behind process by its command line

    # each attempt: (name, program, check(verdict) -> reason the attempt failed, or None when it escaped)
    attempts = [
        ("network", f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('CONNECTED')",
         lambda v: None if "CONNECTED" in v.stdout else v.stderr.strip().splitlines()[-1]),
        ("network_outside", "import socket\ns = socket.create_connection(('1.1.1.1', 53), timeout=2)\nprint('CONNECTED')",
         lambda v: None if "CONNECTED" in v.stdout else v.stderr.strip().splitlines()[-1]),
        ("write_outside", f"open({str(outside)!r}, 'w').write('x')",
         lambda v: None if outside.exists() else v.stderr.strip().splitlines()[-1]),
        ("write_system", "open('/usr/escaped', 'w').write('x')",
         lambda v: None if Path("/usr/escaped").exists() else v.stderr.strip().splitlines()[-1]),
        ("read_env", "import os\nprint(os.environ.get('FACTORY_TEST_SECRET', 'absent'))",
         lambda v: None if "TOP-SECRET-ENV" in v.stdout else f"environment cleared: {v.stdout.strip()}"),
        ("read_file", f"print(open({str(secret_file)!r}).read())",
         lambda v: None if "TOP-SECRET" in v.stdout else v.stderr.strip().splitlines()[-1]),
        ("fork_bomb", "import os\nwhile True:\n    os.fork()",
         lambda v: None if v.limit is None else f"limit {v.limit}"),
        ("memory_bomb", "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 2**20))",
         lambda v: None if v.limit is None else f"limit {v.limit}"),
        ("infinite_loop", "while True:\n    pass",
         lambda v: None if v.limit is None else f"limit {v.limit}"),
        ("signal_parent", f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)\nprint('SIGNALLED')",
         lambda v: None if "SIGNALLED" in v.stdout else v.stderr.strip().splitlines()[-1]),
        ("background_process",
         f"import os, subprocess\nsubprocess.Popen(['sleep', '{sleeper}'], start_new_session=True)\nprint('LEFT')",
         lambda v: None if _running(sleeper) else "its process namespace ended with it"),
    ]
    escapes = {}
    reasons = {}
    for name, program, check in attempts:
        verdict = run_program(program, LIMITS)
        time.sleep(0.05)
        reason = check(verdict)
        reasons[name] = reason
        if reason is None:
            escapes[name] = verdict
    listener.close()
    print("sandbox escape suite:", reasons)
    assert escapes == {}, f"escaped: {list(escapes)}"
    assert "Network is unreachable" in reasons["network_outside"]
    assert "Connection refused" in reasons["network"] or "unreachable" in reasons["network"]
    assert "No such file or directory" in reasons["read_file"]
    assert "Read-only file system" in reasons["write_system"]
    assert reasons["fork_bomb"] == "limit processes"
    assert reasons["memory_bomb"] == "limit memory"
    assert reasons["infinite_loop"] in ("limit cpu_time", "limit wall_clock")
    assert not outside.exists()


def _running(needle: str) -> bool:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle.encode() in (proc / "cmdline").read_bytes():
                    return True
            except OSError:
                pass
    return False


@needs_bwrap
def test_output_past_the_file_size_limit_is_cut():
    verdict = run_program("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", LIMITS)
    assert verdict.limit == "file_size" and not verdict.passed
    assert len(verdict.stdout) == LIMITS.output_chars


def test_missing_bwrap_refuses_to_run(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        run_program("print('ran unsandboxed')", LIMITS)


def test_isolation_none_runs_trusted_code_with_limits():
    trusted = LIMITS.model_copy(update={"isolation": "none"})
    verdict = run_program("import os\nprint(os.environ.get('HOME') == os.getcwd())", trusted)
    assert verdict.passed and verdict.stdout == "True\n" and verdict.isolation == "none"
    assert run_program("x = bytearray(1 << 30)", trusted).limit == "memory"


@needs_bwrap
def test_a_program_posing_as_bwrap_is_just_a_failed_program():
    verdict = run_program("import sys\nsys.stderr.write('bwrap: Creating new namespace failed\\n')\nsys.exit(1)", LIMITS)
    assert verdict.exit_code == 1 and not verdict.passed


@needs_bwrap
def test_bwrap_that_cannot_set_up_raises(monkeypatch):
    # a bwrap that fails before starting the program (as in a container without namespaces)
    import factory.verify.sandbox as sandbox

    real = sandbox._bwrap_command
    monkeypatch.setattr(sandbox, "_bwrap_command", lambda *a: real(*a)[:1] + ["--bind", "/nonexistent-src", "/x"] + real(*a)[1:])
    with pytest.raises(SandboxUnavailable, match="bubblewrap cannot isolate programs here: bwrap: Can't find source path"):
        run_program("print('never')", LIMITS)
