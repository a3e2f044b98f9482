"""SIGTERM ends the CLI like a signal, with the stack unwound, also as PID 1 of a container.

Kubernetes stops a pod with SIGTERM; a step pod's `factory` is PID 1 of its container, and the kernel spares PID 1
every signal it has no handler for. Without the CLI's handler a deleted step pod trained on through its grace period
and published after its replacement had started (tests/deploy/test_node.py's resume test caught it). Here a
PID namespace (`unshare --pid`, root only; skipped elsewhere) makes the CLI PID 1 without a container runtime.
"""

from __future__ import annotations

import os
import signal
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.kill9 import ROOT, driver_env

# main() with its command replaced by one that signals itself and would otherwise sleep on and return normally.
DRIVER = textwrap.dedent("""
    import os, signal, sys, time
    import cli.main
    cli_main = sys.modules["cli.main"]
    def command(standalone_mode=False):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
            print("ran on", flush=True)
        finally:
            print(f"unwound as pid {os.getpid()}", flush=True)
    cli_main.app = command
    cli_main.main()
""")


def run(prefix: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-c", DRIVER], capture_output=True, text=True, timeout=60,
                          env=driver_env(), cwd=ROOT)


def test_sigterm_exits_143_after_unwinding():
    result = run([])
    assert result.returncode == 143, result.stderr[-2000:]
    assert "unwound" in result.stdout and "ran on" not in result.stdout
    assert '"event": "process.sigterm"' in result.stderr


def test_sigterm_stops_the_cli_as_pid_1():
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs `unshare --pid` as root to run the CLI as PID 1")
    result = run(["unshare", "--pid", "--fork"])
    if result.returncode != 143 and "unshare failed" in result.stderr:
        pytest.skip(f"unshare --pid is not permitted here: {result.stderr.strip()[:200]}")
    assert result.returncode == 143, result.stdout + result.stderr[-2000:]
    assert "unwound as pid 1" in result.stdout and "ran on" not in result.stdout


# main() with a command that forks a child (as a worker pool does) and signals it, then reports the handler left.
FORKING = textwrap.dedent("""
    import os, signal, sys, time
    import cli.main
    cli_main = sys.modules["cli.main"]
    def command(standalone_mode=False):
        ready, tell = os.pipe()
        child = os.fork()
        if child == 0:
            os.write(tell, b"up")  # a signal before Python's after-fork bookkeeping would be lost, not handled
            time.sleep(30)
            os._exit(0)
        os.read(ready, 2)
        time.sleep(0.2)
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
        print(f"child signalled {os.WIFSIGNALED(status) and os.WTERMSIG(status)}", flush=True)
        return 0
    cli_main.app = command
    try:
        cli_main.main()
    except SystemExit as e:
        print(f"exit {e.code}, handler left {signal.getsignal(signal.SIGTERM) is signal.SIG_DFL}", flush=True)
""")


def test_a_forked_child_dies_by_sigterm_and_main_leaves_no_handler_behind():
    """A worker pool terminates its workers with SIGTERM: a forked worker must die of it, not raise SystemExit inside
    the pool's locks (a curate pool hung so). And main() restores the handler it found: tests and programs call it
    in-process."""
    result = subprocess.run([sys.executable, "-c", FORKING], capture_output=True, text=True, timeout=60,
                            env=driver_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"child signalled {int(signal.SIGTERM)}" in result.stdout, result.stdout
    assert "exit 0, handler left True" in result.stdout, result.stdout
