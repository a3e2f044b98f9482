"""The code sandbox: real programs under bubblewrap, and an escape suite that must count 0 escapes."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from factory.verify.sandbox import (
    SandboxConfig,
    SandboxUnavailable,
    remove_tree,
    run_many,
    run_many_tests,
    run_program,
    run_tests,
)

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


# --- a wrong solution must not pass by how it ends, nor by forging the harness's report ---------------------------

RIGHT = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"
TESTS = "assert add(2, 3) == 5\nassert add(1, 1) == 2\n"
CHECK = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(1, 1) == 2\n    return True\n\ncheck(add)\n"
_FORGE = (  # what a forger would write on every descriptor it has, given a nonce (or none)
    "def forge(nonce=b''):\n"
    "    for fd in range(3, 256):\n"
    "        try:\n"
    "            os.write(fd, nonce + b' tests 2\\n' + nonce + b' ok 0\\n' + nonce + b' ok 1\\n' + nonce + b' ok 2\\n')\n"
    "        except OSError:\n"
    "            pass\n"
)
# each ends with status 0 (all but kill_itself), which the sandbox scored `passed` before the harness, against
# HumanEval-style tests (a `check` function, then its call)
EXIT_ATTACKS = {
    "sys_exit": WRONG + "import sys\nsys.exit(0)\n",
    "os_exit": WRONG + "import os\nos._exit(0)\n",
    "atexit": WRONG + "import atexit, os\natexit.register(os._exit, 0)\n",
    "excepthook": WRONG + "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n",
    "exit_inside_the_tests": "def add(a, b):\n    raise SystemExit(0)\n",
    "exit_from_a_thread": WRONG + "import os, threading, time\nthreading.Thread(target=os._exit, args=(0,)).start()\ntime.sleep(5)\n",
    "kill_itself": "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    "close_every_descriptor": WRONG + "import os\nos.closerange(3, 256)\nos._exit(0)\n",
    "forge_the_report": WRONG + "import os\n" + _FORGE + "forge()\nos._exit(0)\n",
    "read_the_setup": WRONG + "import os, re\n" + _FORGE
    + "for fd in range(3, 256):\n    try:\n        os.lseek(fd, 0, 0)\n        found = re.findall(rb'[0-9a-f]{32}', os.read(fd, 1 << 20))\n"
      "        [forge(n) for n in found]\n    except OSError:\n        pass\nos._exit(0)\n",
    "walk_the_frames": WRONG + "import os, re, sys\n" + _FORGE
    + "f = sys._getframe()\nwhile f:\n    for v in list(f.f_locals.values()) + list(f.f_globals.values()):\n"
      "        for n in re.findall(r'[0-9a-f]{32}', repr(v)):\n            forge(n.encode())\n    f = f.f_back\nos._exit(0)\n",
    "search_the_heap": WRONG + "import gc, os\n" + _FORGE
    + "for o in gc.get_objects():\n    forge(repr(o).encode()[:32])\nos._exit(0)\n",
    "trace_over_the_asserts": "import sys\ndef add(a, b):\n    return 0\n"
    "def skip(frame, event, arg):\n    if frame.f_code.co_name == 'check' and event == 'line':\n"
    "        last = max(line for _, _, line in frame.f_code.co_lines() if line)\n"
    "        if frame.f_lineno != last:\n            frame.f_lineno = last\n    return skip\nsys.settrace(skip)\n",
    "fork_on_every_call": "import os\ndef add(a, b):\n    return a + b if os.fork() else a - b\n",
    "read_memory_with_ctypes": WRONG + "import ctypes, os\nctypes.string_at(id(os), 64)\nos._exit(0)\n",
}


@needs_bwrap
@pytest.mark.parametrize("isolation", ["bwrap", "none"])
def test_a_wrong_solution_never_passes_by_how_it_ends(isolation):
    config = LIMITS.model_copy(update={"isolation": isolation, "timeout_s": 10, "cpu_s": 5})
    right = run_tests(RIGHT, CHECK, config)
    assert right.passed and (right.tests_passed, right.tests_total) == (2, 2)
    passed = {}
    for name, solution in EXIT_ATTACKS.items():
        verdict = run_tests(solution, CHECK, config)
        assert verdict.tests_total == 2 and (verdict.tests_passed or 0) < 2, name
        passed[name] = verdict.passed
    print("exit attacks:", passed)
    assert not any(passed.values()), [name for name, p in passed.items() if p]


@needs_bwrap
def test_the_harness_refuses_what_would_reach_the_report_and_says_so():
    for name, refused in [("search_the_heap", "gc.get_objects"), ("trace_over_the_asserts", "sys.settrace"),
                          ("fork_on_every_call", "os.fork"), ("read_memory_with_ctypes", "ctypes.")]:
        verdict = run_tests(EXIT_ATTACKS[name], CHECK, LIMITS)
        assert f"the code sandbox refuses {refused}" in verdict.stderr, name
    # a failing statement stops the count there; the traceback shows the test's own line
    verdict = run_tests(WRONG, "assert add(0, 0) == 0\nassert add(2, 3) == 5\nassert add(1, 1) == 2\n", LIMITS)
    assert (verdict.tests_passed, verdict.tests_total) == (1, 3)
    assert 'File "tests.py", line 2' in verdict.stderr and "assert add(2, 3) == 5" in verdict.stderr


# --- limits of the sandbox as a whole ---------------------------------------------------------------------------

@needs_bwrap
def test_memory_is_limited_for_the_sandbox_as_a_whole():
    """16 processes of 64 MiB each under `memory_mb=256`: before the cgroup all of them held their 1 GiB."""
    config = SandboxConfig(timeout_s=30, cpu_s=20, memory_mb=256, max_procs=32, disk_mb=16)
    holders = (  # each child holds its block 3 s, then says so: the ones that say so held theirs at once
        "import os, time\nr, w = os.pipe()\nfor _ in range(16):\n    if os.fork() == 0:\n"
        "        os.close(r)\n        block = b'x' * (64 << 20)\n        time.sleep(3)\n        os.write(w, b'1')\n"
        "        os._exit(0)\nos.close(w)\nheld = 0\nwhile chunk := os.read(r, 16):\n    held += len(chunk)\n"
        "print('held', held)\n"
    )
    verdict = run_program(holders, config)
    if verdict.scopes["memory"] != "sandbox":
        assert run_program("block = b'x' * (300 << 20)", config).limit == "memory"  # per process, RLIMIT_AS
        pytest.skip("no cgroup can be made here: memory is limited per process only")
    held = int(verdict.stdout.split()[-1]) if verdict.stdout.startswith("held") else 0
    assert verdict.limit == "memory" and not verdict.passed
    assert held * 64 <= config.memory_mb + config.disk_mb, verdict.stdout


@needs_bwrap
def test_writable_space_is_capped_as_a_whole():
    """64 files of 512 KiB, each under the per-file limit: before, all 32 MiB went to the host's temporary folder."""
    config = LIMITS.model_copy(update={"disk_mb": 4, "file_size_mb": 1, "timeout_s": 10})
    writer = ("import os\nfor i in range(64):\n    with open(f'part{i}', 'wb') as f:\n        f.write(os.urandom(512 << 10))\n"
              "    print(i, flush=True)\n")
    verdict = run_program(writer, config)
    assert verdict.scopes["disk"] == "sandbox" and verdict.limit == "disk" and not verdict.passed
    written = len(verdict.stdout.split())
    assert 0 < written <= 8, verdict.stdout  # 4 MiB
    # and not in a second tmpfs: /dev/shm is read-only
    shm = run_program("open('/dev/shm/x', 'wb').write(b'x' * (8 << 20))", config)
    assert not shm.passed and ("Read-only file system" in shm.stderr or "Permission denied" in shm.stderr)


@needs_bwrap
def test_each_concurrent_sandbox_has_its_own_process_limit():
    """A program that takes every thread it can beside five that need eight each: before, all ran as one user and
    shared one RLIMIT_NPROC, so the five failed with "can't start new thread"."""
    config = SandboxConfig(timeout_s=20, cpu_s=10, memory_mb=512, max_procs=16)
    hog = ("import threading, time\nn = 0\ntry:\n    while True:\n"
           "        threading.Thread(target=time.sleep, args=(4,), daemon=True).start()\n        n += 1\n"
           "except RuntimeError:\n    print('took', n, flush=True)\ntime.sleep(3)\n")
    worker = ("import threading, time\ntime.sleep(0.5)\nts = [threading.Thread(target=time.sleep, args=(0.2,)) for _ in range(8)]\n"
              "for t in ts:\n    t.start()\nfor t in ts:\n    t.join()\nprint('ok')\n")
    verdicts = run_many([hog] + [worker] * 5, config, workers=6)
    assert verdicts[0].passed and 0 < int(verdicts[0].stdout.split()[-1]) < config.max_procs
    if verdicts[1].scopes["processes"] != "sandbox":
        pytest.skip("no cgroup and no uid of its own here: concurrent sandboxes share the user's process limit")
    assert [v.stdout for v in verdicts[1:]] == ["ok\n"] * 5, [v.stderr[-200:] for v in verdicts[1:]]


@needs_bwrap
def test_user_namespaces_and_ptrace_are_refused_inside():
    """Before the seccomp filter, `unshare --user` worked in the sandbox, and a child could trace its parent."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux `unshare` is not installed")
    verdict = run_program("import subprocess\nr = subprocess.run(['unshare', '--user', 'true'], capture_output=True, text=True)\n"
                          "print(r.returncode, r.stderr.strip())", LIMITS)
    if verdict.scopes["user_namespaces"] != "refused":
        pytest.skip(f"no seccomp filter for this architecture: user namespaces stay allowed ({verdict.stdout.strip()})")
    assert verdict.stdout.startswith("1 ") and "Operation not permitted" in verdict.stdout
    traced = run_program("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                         "print(libc.ptrace(0, 0, 0, 0), os.strerror(ctypes.get_errno()))", LIMITS)  # PTRACE_TRACEME
    assert traced.stdout == "-1 Operation not permitted\n"


# --- cleanup always finishes, and one program's trouble costs that program only -----------------------------------

DEEP_TREE = (  # 2000 folders deep (past Python's recursion limit), every 100th made unreadable, a link out
    "import os\nos.symlink({keep!r}, 'link')\nfor _ in range(2000):\n    os.mkdir('d')\n    os.chdir('d')\n"
    "    open('f', 'w').write('x')\nfor level in range(2000):\n    os.chdir('..')\n    if level % 100 == 0:\n"
    "        os.chmod('d', 0)\nprint('built')\n"
)


@pytest.mark.parametrize("isolation", ["bwrap", "none"])
def test_cleanup_finishes_whatever_the_program_left(isolation, tmp_path, monkeypatch):
    if isolation == "bwrap" and shutil.which("bwrap") is None:
        pytest.skip("needs bubblewrap (tests/setup.sh installs it)")
    keep = tmp_path / "keep.txt"
    keep.write_text("outside")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    config = LIMITS.model_copy(update={"isolation": isolation, "timeout_s": 60, "cpu_s": 30, "file_size_mb": 1})
    verdict = run_program(DEEP_TREE.format(keep=str(keep)), config)
    assert verdict.passed and verdict.stdout == "built\n", verdict.stderr[-300:]
    assert list(scratch.iterdir()) == [] and keep.read_text() == "outside"


def test_remove_tree_takes_any_depth_and_unreadable_folders(tmp_path):
    top = tmp_path / "tree"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for level in range(3000):  # deeper than any path the kernel takes whole
        os.mkdir(b"d\xff", dir_fd=fd)
        child = os.open(b"d\xff", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
        if level % 500 == 0:
            os.fchmod(fd, 0o000)
    os.close(fd)
    remove_tree(top)
    assert not top.exists()


@needs_bwrap
def test_one_programs_sandbox_failure_costs_that_program_only(monkeypatch):
    from factory.verify import sandbox

    real = sandbox._run

    def full_disk(config, code, nonce, stdin):
        if b"BREAKS" in code:
            raise OSError(28, "No space left on device")
        return real(config, code, nonce, stdin)

    monkeypatch.setattr(sandbox, "_run", full_disk)
    verdicts = run_many_tests([(RIGHT, TESTS), (RIGHT + "# BREAKS\n", TESTS), (RIGHT, TESTS)], LIMITS)
    assert [v.passed for v in verdicts] == [True, False, True]
    assert "No space left on device" in verdicts[1].error
