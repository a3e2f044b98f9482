"""Run an untrusted Python program under bubblewrap with hard limits, and say what happened.

    verdict = run_program("print(1)", SandboxConfig(timeout_s=5, memory_mb=256))
    verdict.passed, verdict.exit_code, verdict.stdout, verdict.limit

Isolation comes from Debian's `bubblewrap` (namespaces) and the kernel's rlimits, not from code of our own:
- its own network, PID, IPC and UTS namespaces: no network at all (not even the host's loopback), and it
  can see or signal no process outside;
- a read-only view of `/usr` and the interpreter's install, nothing else of the host's file system: the
  caller's files, home and environment variables are absent (`--clearenv`); the program's private folder
  (`/sandbox`, its working directory and `$TMPDIR`) is the only writable place, and the root is read-only;
- as root, the program runs as `nobody` with no capabilities and `no_new_privs` (util-linux `setpriv`), so
  `RLIMIT_NPROC` holds (the kernel exempts root from it);
- rlimits: CPU seconds, address space, processes, size of any file written (its stdout and stderr
  files included), no core files;
- a wall clock: on timeout the whole process group is killed; bubblewrap's PID namespace ends with its
  first process, so no background process outlives the run.

Where `bwrap` is missing or cannot create namespaces, `run_program` raises `SandboxUnavailable` rather than
running the program unsandboxed. `isolation="none"` (rlimits, a private folder and a clean environment,
but the host's network and file system) is for trusted code only.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from factory.errors import UserError

NOBODY = 65534
SANDBOX_DIR = "/sandbox"

# what a limit looks like from outside: a signal, or the message Python prints when a syscall is refused
_SIGNAL_LIMITS = {signal.SIGXCPU: "cpu_time", signal.SIGXFSZ: "file_size"}
_STDERR_LIMITS = [
    ("MemoryError", "memory"),
    ("Cannot allocate memory", "memory"),
    ("File too large", "file_size"),
    ("Resource temporarily unavailable", "processes"),  # fork() refused by RLIMIT_NPROC
]


class SandboxUnavailable(UserError):
    """The sandbox tool is missing or cannot isolate here; nothing was run."""


class SandboxConfig(BaseModel):
    """Limits and isolation for one sandboxed program."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    isolation: Literal["bwrap", "none"] = Field(
        "bwrap", description="'bwrap': bubblewrap namespaces (no network, private folder); 'none': trusted code only.")
    timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit in seconds; the process group is killed past it.")
    cpu_s: int = Field(10, ge=1, description="CPU-time limit in seconds (RLIMIT_CPU).")
    memory_mb: int = Field(512, ge=16, description="Address-space limit in MiB (RLIMIT_AS).")
    max_procs: int = Field(32, ge=1, description="Processes the program may run at once (RLIMIT_NPROC, as nobody).")
    file_size_mb: int = Field(16, ge=1, description="Largest file the program may write, stdout and stderr included (RLIMIT_FSIZE).")
    output_chars: int = Field(8192, ge=0, description="Characters of stdout and stderr kept in the verdict.")
    python: str = Field("", description="Interpreter that runs the program; '' for this one (without its venv).")


class Verdict(BaseModel):
    """What happened to one program: how it ended, what it printed, which limit stopped it."""

    model_config = ConfigDict(frozen=True)

    exit_code: int | None = Field(description="Exit status; None when a signal ended it.")
    signal: str | None = Field(None, description="Name of the signal that ended it, if any.")
    limit: str | None = Field(
        None, description="The limit hit: wall_clock, cpu_time, memory, processes or file_size; None if none.")
    stdout: str = Field("", description="Start of its standard output.")
    stderr: str = Field("", description="Start of its standard error.")
    wall_s: float = Field(0.0, description="Seconds from start to end.")
    isolation: str = Field("bwrap", description="How it was isolated.")

    @property
    def passed(self) -> bool:
        """It exited with status 0 and hit no limit."""
        return self.exit_code == 0 and self.limit is None


def interpreter(config: SandboxConfig) -> Path:
    """The real interpreter file (a venv's `python` is a link to its base install)."""
    return Path(os.path.realpath(config.python or sys.executable))


def _bwrap_command(config: SandboxConfig, workdir: Path, python: Path, as_root: bool) -> list[str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "the code sandbox needs bubblewrap (`bwrap`), which is not installed: `apt-get install bubblewrap`; "
            "set the sandbox's isolation to 'none' only for trusted code")
    cmd = [bwrap, "--ro-bind", "/usr", "/usr"]
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
    cmd += [
        "--proc", "/proc", "--dev", "/dev",
        "--bind", str(workdir), SANDBOX_DIR, "--chdir", SANDBOX_DIR,
        "--remount-ro", "/",
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", SANDBOX_DIR, "--setenv", "TMPDIR", SANDBOX_DIR,
        "--setenv", "LANG", "C.UTF-8",
    ]
    if as_root:
        # drop to nobody inside: root ignores RLIMIT_NPROC, and nobody owns nothing on the host
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        cmd += ["--", setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    else:
        cmd += ["--unshare-user", "--cap-drop", "ALL", "--"]
    return cmd


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


def _limits(config: SandboxConfig, as_root: bool):
    # as root the program runs as nobody, who runs nothing else; otherwise the limit sits above what the
    # caller's user already runs, so the sandbox gets max_procs more
    procs = config.max_procs if as_root else config.max_procs + _user_processes(os.getuid())

    def apply() -> None:
        cpu = config.cpu_s
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        memory = config.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        size = config.file_size_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NPROC, (procs, procs))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _read_start(path: Path, chars: int) -> str:
    with open(path, "rb") as f:
        return f.read(chars * 4).decode("utf-8", errors="replace")[:chars]


def run_program(source: str, config: SandboxConfig | None = None, stdin: str = "") -> Verdict:
    """Run Python `source` as `main.py` in a fresh private folder under `config`'s limits; never raises for
    anything the program does (only `SandboxUnavailable` when it cannot be isolated)."""
    config = config or SandboxConfig()
    python = interpreter(config)
    as_root = os.geteuid() == 0
    with tempfile.TemporaryDirectory(prefix="factory-sandbox-") as tmp:
        host = Path(tmp)
        workdir = host / "work"
        workdir.mkdir()
        (workdir / "main.py").write_text(source, encoding="utf-8")
        (host / "stdin").write_text(stdin, encoding="utf-8")
        if config.isolation == "bwrap":
            if as_root:
                os.chown(workdir, NOBODY, NOBODY)
                os.chown(workdir / "main.py", NOBODY, NOBODY)
            cmd = _bwrap_command(config, workdir, python, as_root) + [str(python), "-I", "-B", f"{SANDBOX_DIR}/main.py"]
            env = {}
            cwd = host
        else:
            cmd = [str(python), "-I", "-B", str(workdir / "main.py")]
            env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
            cwd = workdir
        # bubblewrap writes the program's exit code to --json-status-fd when the program ends; without it
        # (and no timeout) the sandbox itself failed, whatever the program might print to look like bwrap
        info_read, info_write = os.pipe()
        if config.isolation == "bwrap":
            cmd = [cmd[0], "--json-status-fd", str(info_write), *cmd[1:]]
        started = time.monotonic()
        timed_out = False
        with open(host / "stdin", "rb") as fin, open(host / "stdout", "wb") as fout, open(host / "stderr", "wb") as ferr:
            try:
                proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=cwd, env=env,
                                        start_new_session=True, pass_fds=(info_write,),
                                        preexec_fn=_limits(config, as_root and config.isolation == "bwrap"))
            finally:
                os.close(info_write)
            try:
                proc.wait(timeout=config.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
        with os.fdopen(info_read, "rb") as info:
            started_child = b"exit-code" in info.read()
        wall = time.monotonic() - started
        stdout = _read_start(host / "stdout", config.output_chars)
        stderr = _read_start(host / "stderr", config.output_chars)
    code = proc.returncode
    if config.isolation == "bwrap" and not started_child and not timed_out:
        raise SandboxUnavailable(f"bubblewrap cannot isolate programs here: {stderr.strip()[:500]}")
    sig = None
    if code is not None and code < 0:
        sig = -code
    elif code is not None and code > 128 and config.isolation == "bwrap":
        sig = code - 128  # bubblewrap reports a child ended by signal N as 128 + N
    limit = None
    if timed_out:
        limit = "wall_clock"
    elif sig in _SIGNAL_LIMITS:
        limit = _SIGNAL_LIMITS[sig]
    elif sig == signal.SIGKILL and wall >= config.cpu_s:
        limit = "cpu_time"  # past the hard CPU limit the kernel sends SIGKILL
    elif code != 0:
        tail = stderr[-2000:]
        limit = next((name for needle, name in _STDERR_LIMITS if needle in tail), None)
    return Verdict(
        exit_code=None if sig else code,
        signal=signal.Signals(sig).name if sig and sig in signal.Signals._value2member_map_ else (str(sig) if sig else None),
        limit=limit, stdout=stdout, stderr=stderr, wall_s=round(wall, 3), isolation=config.isolation)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the program's whole process group (bubblewrap's PID namespace dies with it) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_tests(solution: str, tests: str, config: SandboxConfig | None = None) -> Verdict:
    """Run `solution` followed by `tests` (asserts, or a `check(...)` call) as one program; passed iff it exits 0."""
    return run_program(f"{solution}\n\n{tests}\n", config)


def run_many(programs: list[str], config: SandboxConfig | None = None, workers: int = 2) -> list[Verdict]:
    """Verdicts of several programs, in order, `workers` sandboxes at a time (threads only wait on them)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda source: run_program(source, config), programs))
