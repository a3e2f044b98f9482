"""A cgroup per sandbox, so memory and processes are limited for the sandbox as a whole, not per process.

    group = SandboxCgroup.create(memory_bytes=512 << 20, max_procs=32)   # None where none can be made here
    Popen(..., preexec_fn=group.join)                                     # the child and all it starts
    group.kill(); group.oom_kills(), group.hit_process_limit(); group.remove()

The cgroup is made under the factory's own cgroup, in cgroup v2 (`memory.max`, `pids.max`) or, on a host still
on cgroup v1, in its `memory` and `pids` hierarchies (`memory.limit_in_bytes`, `pids.max`); each controller is
taken from whichever hierarchy offers it. That needs the right to create children there: root, or a subtree
delegated to this user (systemd's `Delegate=yes`). Where a controller cannot be had (a read-only
`/sys/fs/cgroup`, a v2 parent whose processes forbid enabling controllers for children), `create` leaves it out
and `scopes` says so; the sandbox then falls back to its per-process rlimits.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CONTROLLERS = ("memory", "pids")
PREFIX = "factory-sandbox-"


@dataclass(frozen=True)
class _Mount:
    """A cgroup hierarchy as mounted here: its mount point, and which path of the hierarchy that is."""

    point: Path
    root: str
    version: int


def _mounts() -> dict[str, _Mount]:
    """Controller ('memory', 'pids', or 'unified' for v2) -> its mount, from /proc/self/mountinfo."""
    found: dict[str, _Mount] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts, extra = fields.split(), rest.split()
        if len(parts) < 5 or len(extra) < 3:
            continue
        root, point, fstype, options = parts[3], Path(parts[4]), extra[0], extra[2].split(",")
        if fstype == "cgroup2":
            found.setdefault("unified", _Mount(point, root, 2))
        elif fstype == "cgroup":
            for controller in CONTROLLERS:
                if controller in options:
                    found.setdefault(controller, _Mount(point, root, 1))
    return found


@cache
def _own_folders() -> dict[str, tuple[Path, int]]:
    """Controller -> (folder of this process's own cgroup that offers it, cgroup version)."""
    mounts = _mounts()
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return {}
    own: dict[str, Path] = {}
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        names = ["unified"] if hierarchy == "0" else controllers.split(",")
        for name in names:
            mount = mounts.get(name)
            if mount is None or not (path + "/").startswith(mount.root.rstrip("/") + "/"):
                continue
            own[name] = mount.point / path[len(mount.root.rstrip("/")):].lstrip("/")
    out: dict[str, tuple[Path, int]] = {}
    unified = own.get("unified")
    offered = _read(unified / "cgroup.controllers").split() if unified else []
    for controller in CONTROLLERS:
        if controller in offered:
            out[controller] = (unified, 2)  # type: ignore[assignment]
        elif controller in own:
            out[controller] = (own[controller], 1)
    return out


def _parent_for(own: Path, version: int, controller: str) -> Path:
    """Where this process may make sandbox cgroups: its own cgroup, or in v2 (whose cgroups with processes may
    not enable controllers for children) its parent, when this process sits in a leaf of a delegated subtree."""
    if version == 1 or controller in _read(own / "cgroup.subtree_control").split():
        return own
    try:
        _write(own / "cgroup.subtree_control", f"+{controller}")  # the root cgroup, or one without processes
        return own
    except OSError:
        if controller in _read(own.parent / "cgroup.subtree_control").split() and os.access(own.parent, os.W_OK):
            return own.parent
        raise


_swept: set[Path] = set()


def _sweep(parent: Path) -> None:
    """Once per process and parent: remove the empty sandbox cgroups of factory processes that died before
    removing theirs (a cgroup that still holds a process refuses rmdir)."""
    if parent in _swept:
        return
    _swept.add(parent)
    for entry in parent.glob(f"{PREFIX}*"):
        pid = entry.name[len(PREFIX):].partition("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                entry.rmdir()
            except OSError:
                pass


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path | str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _counter(text: str, name: str) -> int:
    """The value of `name N` in a flat-keyed cgroup file (memory.events, pids.events, memory.oom_control)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


class SandboxCgroup:
    """One sandbox's cgroup folders (one per hierarchy used) with its memory and process limits."""

    def __init__(self, folders: dict[str, tuple[Path, int]]):
        self.folders = folders  # controller -> (folder, version)
        self._procs_files = sorted({str(folder / "cgroup.procs") for folder, _ in folders.values()})

    @classmethod
    def create(cls, memory_bytes: int, max_procs: int) -> SandboxCgroup | None:
        """A fresh cgroup limited to `memory_bytes` (RAM, no swap) and `max_procs` tasks, or None when no
        controller can be had here."""
        name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        folders: dict[str, tuple[Path, int]] = {}
        made: list[Path] = []
        for controller, (own, version) in _own_folders().items():
            try:
                parent = _parent_for(own, version, controller)
                folder = parent / name
                if folder not in made:
                    _sweep(parent)
                    folder.mkdir()
                    made.append(folder)
                if controller == "memory":
                    cls._limit_memory(folder, version, memory_bytes)
                else:
                    _write(folder / "pids.max", str(max_procs))
            except OSError:
                continue
            folders[controller] = (folder, version)
        for folder in made:
            if all(folder != f for f, _ in folders.values()):
                _rmdir(folder)
        return cls(folders) if folders else None

    @staticmethod
    def _limit_memory(folder: Path, version: int, memory_bytes: int) -> None:
        if version == 2:
            _write(folder / "memory.max", str(memory_bytes))
            if (folder / "memory.swap.max").exists():
                _write(folder / "memory.swap.max", "0")
            return
        _write(folder / "memory.limit_in_bytes", str(memory_bytes))
        if (folder / "memory.memsw.limit_in_bytes").exists():  # memory + swap: no swap beyond the RAM limit
            _write(folder / "memory.memsw.limit_in_bytes", str(memory_bytes))

    @property
    def scopes(self) -> dict[str, str]:
        """What this cgroup limits for the sandbox as a whole: {'memory': 'sandbox', 'processes': 'sandbox'}, for
        the controllers it has."""
        return {{"memory": "memory", "pids": "processes"}[c]: "sandbox" for c in self.folders}

    def join(self) -> None:
        """Move the calling process into the cgroup (run in the child before exec: everything it starts follows)."""
        pid = str(os.getpid())
        for path in self._procs_files:
            _write(path, pid)

    def oom_kills(self) -> int:
        """Processes the kernel killed for the memory limit."""
        if "memory" not in self.folders:
            return 0
        folder, version = self.folders["memory"]
        return _counter(_read(folder / ("memory.events" if version == 2 else "memory.oom_control")), "oom_kill")

    def hit_process_limit(self) -> bool:
        """Whether a fork or thread was refused for the process limit."""
        if "pids" not in self.folders:
            return False
        folder, _ = self.folders["pids"]
        return _counter(_read(folder / "pids.events"), "max") > 0

    def kill(self, wait_s: float = 5.0) -> None:
        """SIGKILL everything in the cgroup and wait until it is empty (its processes outside the sandbox's PID
        namespace included)."""
        deadline = time.monotonic() + wait_s
        while True:
            pids = {int(p) for path in self._procs_files for p in _read(Path(path)).split() if p.isdigit()}
            if not pids or time.monotonic() > deadline:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.001)  # a killed process leaves the cgroup within a millisecond or two

    def remove(self) -> None:
        """Delete the cgroup folders (after `kill`)."""
        for folder in {f for f, _ in self.folders.values()}:
            _rmdir(folder)


def _rmdir(folder: Path) -> None:
    # the kernel frees a cgroup a moment after its last process is reaped: retry briefly
    for _ in range(1000):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.001)
