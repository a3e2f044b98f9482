"""Run an untrusted Python program under bubblewrap with hard limits, and say what happened.

    verdict = run_program("print(1)", SandboxConfig(timeout_s=5, memory_mb=256))
    verdict.passed, verdict.exit_code, verdict.stdout, verdict.limit, verdict.scopes
    verdict = run_tests(solution, "assert add(2, 3) == 5")      # passed: every test statement ran to its end

Isolation comes from Debian's `bubblewrap` (namespaces), the kernel's cgroups, rlimits and a seccomp filter, not
from code of our own:
- its own network, PID, IPC and UTS namespaces: no network at all (not even the host's loopback), and it can see
  or signal no process outside;
- a read-only view of `/usr` and the interpreter's install, nothing else of the host's file system: the caller's
  files, home and environment variables are absent (`--clearenv`); the program's private folder (`/sandbox`, its
  working directory, `$HOME` and `$TMPDIR`) is a tmpfs of `disk_mb` and the only writable place, so nothing it
  writes reaches the host's disk and it vanishes with the sandbox;
- as root, the program runs as a uid of its own (random, per sandbox) with no capabilities and `no_new_privs`
  (util-linux `setpriv`), so `RLIMIT_NPROC` counts this sandbox alone (the kernel exempts root from it);
- a seccomp filter refuses new user namespaces (`clone`/`unshare` with `CLONE_NEWUSER`), `ptrace` and
  `process_vm_readv`/`writev`, on x86_64 and aarch64 (elsewhere user namespaces stay allowed, and the verdict says so);
- a wall clock: on timeout everything is killed; bubblewrap's PID namespace ends with its first process, so no
  background process outlives the run.

What each limit applies to, and what happens where a mechanism is missing (the verdict's `scopes` says which held):

| limit | the sandbox as a whole | where that cannot be had |
|---|---|---|
| memory | a cgroup (v2, or v1's memory hierarchy) under the factory's own: root, or a delegated subtree | RLIMIT_AS per process only: a program that forks holds up to max_procs x memory_mb |
| processes | the cgroup's `pids.max`; as root also a uid of its own | RLIMIT_NPROC on the caller's uid, above what it already runs: concurrent sandboxes share it |
| disk | the tmpfs size | (`isolation: none`) RLIMIT_FSIZE per file only |
| user namespaces | refused by seccomp | allowed (other architectures) |

CPU seconds, the size of any one file (stdout and stderr included) and core files are rlimits of every process.

`run_tests` runs the solution and then the tests under `factory.verify.harness`, which reports each test
statement that ran to its end on a descriptor, with a nonce the program cannot read: passing means every
statement was reported, whatever the exit status (a program that calls `sys.exit(0)` or `os._exit(0)` before
the asserts fails). `run_program` judges a plain program by its exit status.

Where `bwrap` is missing or cannot create namespaces, `run_program` raises `SandboxUnavailable` rather than
running the program unsandboxed. `isolation="none"` (rlimits, a private folder and a clean environment, but the
host's network and file system) is for trusted code only. Nothing a program does makes these functions raise:
cleanup finishes whatever it left (any depth, folders it made unreadable), and `run_many` turns the sandbox's own
failure on one program into that program's failed verdict (`error`), so one sample never costs a batch.
"""

from __future__ import annotations

import errno
import os
import platform
import re
import resource
import secrets
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field

from factory.errors import UserError
from factory.logs import get_logger
from factory.verify.cgroups import SandboxCgroup

log = get_logger("factory.verify.sandbox")

SANDBOX_DIR = "/sandbox"
HARNESS = Path(__file__).with_name("harness.py")
REPORT_BYTES = 1 << 20  # the harness writes a few lines; what a program floods the report pipe with is cut here

# what a limit looks like from outside: a signal, or the message Python prints when a syscall is refused
_SIGNAL_LIMITS = {signal.SIGXCPU: "cpu_time", signal.SIGXFSZ: "file_size"}
_STDERR_LIMITS = [
    ("MemoryError", "memory"),
    ("Cannot allocate memory", "memory"),
    ("File too large", "file_size"),
    ("No space left on device", "disk"),
    ("Resource temporarily unavailable", "processes"),  # fork() refused by RLIMIT_NPROC
    ("can't start new thread", "processes"),
]


class SandboxUnavailable(UserError):
    """The sandbox tool is missing or cannot isolate here; nothing was run."""


class SandboxConfig(BaseModel):
    """Limits and isolation for one sandboxed program."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    isolation: Literal["bwrap", "none"] = Field(
        "bwrap", description="'bwrap': bubblewrap namespaces (no network, private folder); 'none': trusted code only.")
    timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit in seconds; everything it started is killed past it.")
    cpu_s: int = Field(10, ge=1, description="CPU-time limit in seconds of each process (RLIMIT_CPU).")
    memory_mb: int = Field(512, ge=16, description="Memory limit in MiB: of the sandbox as a whole where a cgroup can be "
                                                    "made (see the verdict's scopes), and of each process's address space.")
    max_procs: int = Field(32, ge=1, description="Processes and threads the sandbox may run at once (its cgroup's "
                                                 "pids.max, and RLIMIT_NPROC).")
    file_size_mb: int = Field(16, ge=1, description="Largest file the program may write, stdout and stderr included (RLIMIT_FSIZE).")
    disk_mb: int = Field(64, ge=1, description="Writable space of the private folder as a whole, in MiB (a tmpfs this "
                                               "size; isolation 'none' has only file_size_mb).")
    cgroup: bool = Field(True, description="Limit memory and processes of the sandbox as a whole through a cgroup where "
                                           "one can be made; False: per-process rlimits only.")
    output_chars: int = Field(8192, ge=0, description="Characters of stdout and stderr kept in the verdict.")
    python: str = Field("", description="Interpreter that runs the program; '' for this one (without its venv).")


class Verdict(BaseModel):
    """What happened to one program: how it ended, what it printed, which limit stopped it, which tests ran."""

    model_config = ConfigDict(frozen=True)

    exit_code: int | None = Field(description="Exit status; None when a signal ended it.")
    signal: str | None = Field(None, description="Name of the signal that ended it, if any.")
    limit: str | None = Field(
        None, description="The limit hit: wall_clock, cpu_time, memory, processes, file_size or disk; None if none.")
    stdout: str = Field("", description="Start of its standard output.")
    stderr: str = Field("", description="Start of its standard error.")
    wall_s: float = Field(0.0, description="Seconds from start to end.")
    isolation: str = Field("bwrap", description="How it was isolated.")
    tests_total: int | None = Field(None, description="Top-level statements of the tests (`run_tests`); None for a plain program.")
    tests_passed: int | None = Field(
        None, description="Test statements the harness saw run to their end, in order; None when the solution itself "
                          "did not (or for a plain program).")
    scopes: dict[str, str] = Field(
        default_factory=dict, description="What each limit applied to: memory 'sandbox' or 'process', processes "
        "'sandbox' or 'user', disk 'sandbox' or 'file', user_namespaces 'refused' or 'allowed'.")
    error: str | None = Field(None, description="The sandbox's own failure on this program, if any (it then failed).")

    @property
    def passed(self) -> bool:
        """Tests: every test statement was reported run to its end, and no limit was hit. A plain program: it
        exited with status 0 and hit no limit."""
        if self.error is not None or self.limit is not None:
            return False
        if self.tests_total is None:
            return self.exit_code == 0
        return self.tests_passed == self.tests_total


def interpreter(config: SandboxConfig) -> Path:
    """The real interpreter file (a venv's `python` is a link to its base install)."""
    return Path(os.path.realpath(config.python or sys.executable))


# seccomp: a classic BPF program over `struct seccomp_data` (nr at offset 0, arch at 4, args[i] at 16 + 8 i)
_BPF_LD_ABS, _BPF_JEQ, _BPF_JGE, _BPF_JSET, _BPF_RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_CLONE_NEWUSER = 0x10000000
_SYSCALLS = {  # audit arch, syscall numbers
    "x86_64": (0xC000003E, {"clone": 56, "unshare": 272, "clone3": 435, "ptrace": 101, "process_vm_readv": 310,
                            "process_vm_writev": 311, "pidfd_getfd": 438}),
    "aarch64": (0xC00000B7, {"clone": 220, "unshare": 97, "clone3": 435, "ptrace": 117, "process_vm_readv": 270,
                             "process_vm_writev": 271, "pidfd_getfd": 438}),
}


@cache
def seccomp_filter() -> bytes | None:
    """The sandbox's seccomp program (bubblewrap's `--seccomp` format), or None on an architecture it does not know.

    Refuses with EPERM: a new user namespace (`unshare`, `clone` with CLONE_NEWUSER), `ptrace`,
    `process_vm_readv`/`writev`, `pidfd_getfd` (reading another process), and any syscall of another ABI (i386,
    x32), whose numbers differ. `clone3` gets ENOSYS, since its flags sit in memory a filter cannot read; libc
    then falls back to `clone`."""
    machine = platform.machine()
    if machine not in _SYSCALLS:
        return None
    arch, nr = _SYSCALLS[machine]

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    deny = op(_BPF_RET, _ERRNO | errno.EPERM)
    prog = [op(_BPF_LD_ABS, 4), op(_BPF_JEQ, arch, 1, 0), deny, op(_BPF_LD_ABS, 0)]
    if machine == "x86_64":
        prog += [op(_BPF_JGE, 0x40000000, 0, 1), deny]  # the x32 ABI's numbers
    prog += [op(_BPF_JEQ, nr["clone3"], 0, 1), op(_BPF_RET, _ERRNO | errno.ENOSYS)]
    for name in ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd"):
        prog += [op(_BPF_JEQ, nr[name], 0, 1), deny]
    prog += [op(_BPF_JEQ, nr["clone"], 1, 0), op(_BPF_JEQ, nr["unshare"], 0, 3),
             op(_BPF_LD_ABS, 16), op(_BPF_JSET, _CLONE_NEWUSER, 0, 1), deny,
             op(_BPF_RET, _ALLOW)]
    return b"".join(prog)


def _bwrap_command(config: SandboxConfig, python: Path, as_root: bool, uid: int, fds: dict[str, int], tests: bool) -> list[str]:
    """bubblewrap's command line; `fds` holds the descriptors it reads: status, seccomp, program or harness."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "the code sandbox needs bubblewrap (`bwrap`), which is not installed: `apt-get install bubblewrap`; "
            "set the sandbox's isolation to 'none' only for trusted code")
    cmd = [bwrap, "--json-status-fd", str(fds["status"])]
    if "seccomp" in fds:
        cmd += ["--seccomp", str(fds["seccomp"])]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "lib", "lib32", "lib64", "sbin"):
        host = Path("/") / top
        if host.is_symlink():
            cmd += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            cmd += ["--ro-bind", str(host), str(host)]
    # the interpreter's install (stdlib) when it lives outside /usr, e.g. pyenv or conda
    prefix = Path(sys.base_prefix).resolve() if not config.python else python.parent.parent
    if not str(prefix).startswith("/usr/") and str(prefix) != "/usr":
        cmd += ["--ro-bind", str(prefix), str(prefix)]
    if not str(python).startswith(("/usr/", str(prefix) + "/")):
        cmd += ["--ro-bind", str(python), str(python)]
    cmd += ["--dev", "/dev", "--remount-ro", "/dev"]  # /dev/shm would be a second, unbounded tmpfs
    if not tests:
        # tests run without /proc: /proc/self/mem would show the harness's memory, nonce included
        cmd += ["--proc", "/proc"]
    cmd += ["--perms", "01777", "--size", str(config.disk_mb * 2**20), "--tmpfs", SANDBOX_DIR]
    # the program (or the harness) is a read-only file of its own, outside the tmpfs and its size
    cmd += ["--perms", "0444", "--ro-bind-data", str(fds["code"]), "/harness.py" if tests else f"{SANDBOX_DIR}/main.py"]
    cmd += [
        "--chdir", SANDBOX_DIR, "--remount-ro", "/",
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", SANDBOX_DIR, "--setenv", "TMPDIR", SANDBOX_DIR,
        "--setenv", "LANG", "C.UTF-8",
    ]
    if as_root:
        # drop to a uid of this sandbox's own: root ignores RLIMIT_NPROC, and a uid per sandbox gives each its own count
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        cmd += ["--", setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    else:
        cmd += ["--unshare-user", "--cap-drop", "ALL", "--"]
    return cmd


def _sandbox_uid() -> int:
    """A uid no account uses, drawn per sandbox (2^30 of them: two concurrent sandboxes share one by chance
    about once in a billion pairs)."""
    return 2**30 + secrets.randbelow(2**30)


def _user_processes(uid: int) -> int:
    """Processes the user runs now (RLIMIT_NPROC counts them all, not only the sandbox's)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += os.stat(entry.path).st_uid == uid
            except OSError:
                pass
    return count


def _limits(config: SandboxConfig, own_uid: bool, cgroup: SandboxCgroup | None) -> Callable[[], None]:
    # with a uid of its own the sandbox runs nothing else; otherwise the limit sits above what the caller's user
    # already runs, so the sandbox gets max_procs more (shared with every other sandbox of that user)
    procs = config.max_procs if own_uid else config.max_procs + _user_processes(os.getuid())

    # in the child, between fork and exec (so everything it starts inherits them): only system calls, no locks the
    # parent's other threads (run_many's) could hold
    def apply() -> None:
        if cgroup is not None:
            cgroup.join()
        cpu = config.cpu_s
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        memory = config.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        size = config.file_size_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NPROC, (procs, procs))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _data_fd(data: bytes) -> IO[bytes]:
    """An unnamed temporary file holding `data`, at offset 0: a descriptor the sandbox reads and no path names."""
    f = tempfile.TemporaryFile()  # noqa: SIM115 - returned open: the caller passes its descriptor on, then closes it
    f.write(data)
    f.flush()
    f.seek(0)
    return f


def _read_start(path: Path, chars: int) -> str:
    with open(path, "rb") as f:
        return f.read(chars * 4).decode("utf-8", errors="replace")[:chars]


def _drain(fd: int) -> bytes:
    """What is in a pipe whose writers are gone (or stopped), up to REPORT_BYTES, without blocking."""
    os.set_blocking(fd, False)
    data = b""
    while len(data) < REPORT_BYTES:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _tests_result(report: bytes, nonce: str) -> tuple[int, int | None]:
    """(test statements, how many ran to their end in order; None when the solution did not) from the harness's
    lines: only those carrying the nonce count, whatever else the program wrote there."""
    mark = re.escape(nonce.encode())
    total = re.search(mark + rb" tests (\d+)\n", report)
    ok = {int(i) for i in re.findall(mark + rb" ok (\d+)\n", report)}
    if total is None or 0 not in ok:
        return int(total.group(1)) if total else 0, None
    passed = 0
    while passed + 1 in ok:
        passed += 1
    return int(total.group(1)), passed


def run_program(source: str, config: SandboxConfig | None = None, stdin: str = "") -> Verdict:
    """Run Python `source` as `main.py` in a fresh private folder under `config`'s limits; passed when it exits 0.
    Never raises for anything the program does (only `SandboxUnavailable` when it cannot be isolated)."""
    return _run(config or SandboxConfig(), source.encode("utf-8", errors="surrogatepass"), None, stdin)


def run_tests(solution: str, tests: str, config: SandboxConfig | None = None) -> Verdict:
    """Run `solution`, then each top-level statement of `tests` (asserts, or a `check(...)` call), under the test
    harness; passed when every statement ran to its end (see `factory.verify.harness`)."""
    nonce = secrets.token_hex(16)
    code = solution.encode("utf-8", errors="surrogatepass")
    setup = b"%s\n%d\n%s%s" % (nonce.encode(), len(code), code, tests.encode("utf-8", errors="surrogatepass"))
    return _run(config or SandboxConfig(), setup, nonce, "")


def _run(config: SandboxConfig, code: bytes, nonce: str | None, stdin: str) -> Verdict:
    """One program (`nonce` None: `code` is its source) or one harness run (`code` is the harness's setup)."""
    python = interpreter(config)
    as_root = os.geteuid() == 0
    bwrap = config.isolation == "bwrap"
    tests = nonce is not None
    # tmpfs pages are charged to the cgroup too: its memory is the program's plus its disk
    cgroup = None
    if config.cgroup:
        cgroup = SandboxCgroup.create((config.memory_mb + (config.disk_mb if bwrap else 0)) * 2**20, config.max_procs)
    host = Path(tempfile.mkdtemp(prefix="factory-sandbox-"))
    try:
        return _run_in(config, code, nonce, stdin, python, as_root, bwrap, tests, cgroup, host)
    finally:
        if cgroup is not None:
            cgroup.kill()
            cgroup.remove()
        try:
            remove_tree(host)
        except OSError as e:  # never the program's verdict: what it left is logged, not raised
            log.warning("sandbox.cleanup_failed", folder=str(host), error=str(e))


def _run_in(config: SandboxConfig, code: bytes, nonce: str | None, stdin: str, python: Path, as_root: bool, bwrap: bool,
            tests: bool, cgroup: SandboxCgroup | None, host: Path) -> Verdict:
    (host / "stdin").write_text(stdin, encoding="utf-8")
    opened: list[IO[bytes]] = []  # files whose descriptors the child reads
    child_ends: list[int] = []  # our copies of the pipe ends only the child writes: closed once it has started
    our_ends: dict[str, int] = {}  # the ends we read after it ended
    fds: dict[str, int] = {}
    uid = _sandbox_uid() if bwrap and as_root else os.getuid()

    def data(name: str, content: bytes) -> None:
        f = _data_fd(content)
        opened.append(f)
        fds[name] = f.fileno()

    def pipe(name: str) -> None:
        read, write = os.pipe()
        our_ends[name] = read
        child_ends.append(write)
        fds[name] = write

    try:
        data("code", HARNESS.read_bytes() if tests else code)
        if tests:
            data("setup", code)
            pipe("report")
        if bwrap:
            # bubblewrap writes the program's exit code to --json-status-fd when the program ends; without it (and no
            # timeout) the sandbox itself failed, whatever the program might print to look like bwrap
            pipe("status")
            if (bpf := seccomp_filter()) is not None:
                data("seccomp", bpf)
            cmd = _bwrap_command(config, python, as_root, uid, fds, tests) + [str(python), "-I", "-B"]
            cmd += ["/harness.py", str(fds["setup"]), str(fds["report"])] if tests else [f"{SANDBOX_DIR}/main.py"]
            env: dict[str, str] = {}
            cwd = host
        else:
            workdir = host / "work"
            workdir.mkdir()
            target = host / "harness.py" if tests else workdir / "main.py"
            target.write_bytes(HARNESS.read_bytes() if tests else code)
            cmd = [str(python), "-I", "-B", str(target)] + ([str(fds["setup"]), str(fds["report"])] if tests else [])
            env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
            cwd = workdir
        started = time.monotonic()
        timed_out = False
        with open(host / "stdin", "rb") as fin, open(host / "stdout", "wb") as fout, open(host / "stderr", "wb") as ferr:
            try:
                proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=cwd, env=env,
                                        start_new_session=True, pass_fds=tuple(fds.values()),
                                        preexec_fn=_limits(config, bwrap and as_root, cgroup))  # noqa: PLW1509 - see _limits
            finally:
                while child_ends:
                    os.close(child_ends.pop())
            try:
                timed_out = not _wait(proc, config.timeout_s)
            finally:
                _kill_group(proc)
                if cgroup is not None:
                    cgroup.kill()  # whatever left the process group, before the pipes are read
        wall = time.monotonic() - started
        started_child = b"exit-code" in _drain(our_ends["status"]) if bwrap else True
        report = _drain(our_ends["report"]) if tests else b""
        stdout = _read_start(host / "stdout", config.output_chars)
        stderr = _read_start(host / "stderr", config.output_chars)
    finally:
        for fd in [*child_ends, *our_ends.values()]:
            os.close(fd)
        for f in opened:
            f.close()
    code_ = proc.returncode
    if bwrap and not started_child and not timed_out:
        raise SandboxUnavailable(f"bubblewrap cannot isolate programs here: {stderr.strip()[:500]}")
    sig = None
    if code_ is not None and code_ < 0:
        sig = -code_
    elif code_ is not None and code_ > 128 and bwrap:
        sig = code_ - 128  # bubblewrap reports a child ended by signal N as 128 + N
    tests_total, tests_passed = _tests_result(report, nonce) if nonce is not None else (None, None)
    failed = code_ != 0 or (tests_total is not None and tests_passed != tests_total)
    limit = None
    if timed_out:
        limit = "wall_clock"
    elif sig in _SIGNAL_LIMITS:
        limit = _SIGNAL_LIMITS[sig]
    elif cgroup is not None and cgroup.oom_kills():
        limit = "memory"  # the kernel killed a process of the sandbox for its cgroup's memory limit
    elif sig == signal.SIGKILL and wall >= config.cpu_s:
        limit = "cpu_time"  # past the hard CPU limit the kernel sends SIGKILL
    elif failed:
        tail = stderr[-2000:]
        limit = next((name for needle, name in _STDERR_LIMITS if needle in tail), None)
        if limit is None and cgroup is not None and cgroup.hit_process_limit():
            limit = "processes"
    return Verdict(
        exit_code=None if sig else code_,
        signal=signal.Signals(sig).name if sig and sig in signal.Signals._value2member_map_ else (str(sig) if sig else None),
        limit=limit, stdout=stdout, stderr=stderr, wall_s=round(wall, 3), isolation=config.isolation,
        tests_total=tests_total, tests_passed=tests_passed, scopes=_scopes(bwrap, as_root, cgroup))


def _scopes(bwrap: bool, as_root: bool, cgroup: SandboxCgroup | None) -> dict[str, str]:
    scopes = {"memory": "process", "processes": "user", "disk": "file", "user_namespaces": "allowed"}
    if bwrap:
        scopes["disk"] = "sandbox"
        if as_root:
            scopes["processes"] = "sandbox"
        if seccomp_filter() is not None:
            scopes["user_namespaces"] = "refused"
    if cgroup is not None:
        scopes.update(cgroup.scopes)
    return scopes


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Whether the process ended within `timeout_s`. Through a pidfd where the kernel has them: `Popen.wait` with a
    timeout polls with sleeps that grow to 50 ms, which a 40 ms program pays on every run."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            if time.monotonic() >= deadline:
                return False
        return True
    finally:
        os.close(pidfd)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the program's whole process group (bubblewrap's PID namespace dies with it) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def remove_tree(path: Path) -> None:
    """Delete a folder and whatever a program left in it: any depth (no recursion, no path longer than a name),
    folders it made unreadable or unwritable, names of any bytes. Symlinks are removed, never followed.

    Each folder's entries are moved up into the top folder (renamed: no copying), so the walk never holds more
    than two open folders however deep the tree goes."""
    top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    moved = 0
    try:
        os.fchmod(top, 0o700)
        while names := os.listdir(top):
            for name in names:
                try:
                    st = os.stat(name, dir_fd=top, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=top)
                    continue
                try:
                    os.rmdir(name, dir_fd=top)
                    continue
                except OSError:
                    pass
                os.chmod(name, 0o700, dir_fd=top)  # a folder, as lstat said: chmod cannot follow a link here
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
                try:
                    for child in os.listdir(sub):
                        while True:
                            moved += 1
                            try:
                                os.rename(child, f".removing-{moved}", src_dir_fd=sub, dst_dir_fd=top)
                                break
                            except OSError as e:  # that name is taken by a folder: take the next one
                                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                                    raise
                finally:
                    os.close(sub)
                os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)
    os.rmdir(path)


def _many(calls: Sequence[Callable[[], Verdict]], workers: int, isolation: str) -> list[Verdict]:
    """Each call's verdict, in order, `workers` at a time; the sandbox's own failure on one is that one's failed
    verdict (a missing sandbox, which fails them all, raises)."""

    def one(call: Callable[[], Verdict]) -> Verdict:
        try:
            return call()
        except SandboxUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - one program's trouble (a full disk, say) costs that program only
            log.warning("sandbox.failed", error=f"{type(e).__name__}: {e}")
            return Verdict(exit_code=None, error=f"{type(e).__name__}: {e}", isolation=isolation)

    with ThreadPoolExecutor(max_workers=workers) as pool:  # threads only wait on the sandboxes
        return list(pool.map(one, calls))


def run_many(programs: Sequence[str], config: SandboxConfig | None = None, workers: int = 2) -> list[Verdict]:
    """Verdicts of several plain programs (`run_program`), in order, `workers` sandboxes at a time."""
    config = config or SandboxConfig()
    return _many([partial(run_program, p, config) for p in programs], workers, config.isolation)


def run_many_tests(cases: Sequence[tuple[str, str]], config: SandboxConfig | None = None, workers: int = 2) -> list[Verdict]:
    """Verdicts of several (solution, tests) pairs (`run_tests`), in order, `workers` sandboxes at a time."""
    config = config or SandboxConfig()
    return _many([partial(run_tests, solution, tests, config) for solution, tests in cases], workers, config.isolation)
