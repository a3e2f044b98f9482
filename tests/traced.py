"""Which `factory` modules a stage really runs: a profiler that records, while a given function is on the
stack, the source file of every Python function called (module bodies run at import count as calls)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from factory.code_version import _modules, import_closure, package_root
from factory.kinds import KINDS


@contextmanager
def factory_modules_run_by(func: Callable) -> Iterator[set[str]]:
    """Yields a set that, once the block ends, holds the `factory` modules that ran inside `func`'s calls."""
    target = func.__code__
    files: set[str] = set()
    depth = [0]

    def profile(frame, event, arg):
        if event == "call":
            code = frame.f_code
            if code is target:
                depth[0] += 1
            # A package's PEP 562 `__getattr__` (written in the package, or made by `factory.lazy.lazy_exports`)
            # runs whenever a library introspects sys.modules (pickle and skops do); what it really loads on
            # use runs code of its own, which is recorded.
            lazy = code.co_name == "__getattr__" and code.co_filename.endswith(("__init__.py", "lazy.py"))
            if depth[0] and not lazy:
                files.add(code.co_filename)
        elif event == "return" and frame.f_code is target:
            depth[0] -= 1

    found: set[str] = set()
    old = sys.getprofile()
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        yield found
    finally:
        sys.setprofile(old)
        threading.setprofile(None)
        by_file = {str(path.resolve()): name for name, path in _modules(package_root()).items()}
        found.update(by_file[str(Path(f).resolve())] for f in files if str(Path(f).resolve()) in by_file)


def run_traced(executor) -> tuple[dict, dict[str, set[str]]]:
    """Run every step of `executor`'s spec, one at a time, recording the `factory` modules each stage ran."""
    manifests, ran = {}, {}
    for name, step in executor.plan().items():  # dependency order: each step's inputs are published before it
        with factory_modules_run_by(KINDS[step.kind].run) as modules:
            manifests[name] = executor.run_step(name)
        ran[name] = modules
    return manifests, ran


# Runtime handles the executor passes in through `ctx` (STYLE rule 5): the MLflow tracker. They record
# what a stage does and cannot change its result, so they are not part of any kind's code version.
RUNTIME_HANDLES = {"factory.lineage"}


def assert_ran_inside_closures(spec, ran: dict[str, set[str]]) -> None:
    """Every `factory` module a step's stage ran is in its kind's import closure (so in its code version)."""
    for name, modules in ran.items():
        kind = KINDS[spec.kind_of(name)]
        assert kind.run.__module__ in modules and len(modules) > 3  # the tracer saw the stage and what it calls
        outside = sorted(modules - import_closure(kind.run_module) - RUNTIME_HANDLES)
        assert not outside, f"step {name} ran modules outside its kind's import closure: {outside}"
