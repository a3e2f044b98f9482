"""The harness the code sandbox runs tests under: a test passes only when the harness saw it run to its end.

    python -I -B harness.py SETUP_FD REPORT_FD      # started by `factory.verify.sandbox.run_tests`, in the sandbox

SETUP_FD holds the nonce (a line of hex), the solution's length in bytes (a line), the solution and the tests
(UTF-8); the harness reads it and closes it before any of the solution's code runs, writes `NONCE tests N` (N: the tests' top-level statements) to REPORT_FD, then runs the
solution and each of the tests' statements in turn in one `__main__` namespace. After each one ends without an
exception it writes `NONCE ok I` (0: the solution, 1..N: the statements). Only the sandbox outside knows the
nonce, and it counts a test as passed only from these lines: a program that ends early by any route
(`sys.exit(0)`, `os._exit(0)`, an `atexit` handler, an `excepthook`, a signal, a closed descriptor) leaves its
remaining tests unreported, and unreported is failed. The exit status says nothing.

The nonce is kept where the solution's code cannot read it: the whole run is one call of C functions
(`list(map(call, steps))`, each step a `functools.partial` of `exec` or `os.write`), so the steps sit in no
Python variable of any frame, only on the interpreter's stacks. An audit hook, which nothing can remove, refuses
what would reach them or skip a test's code: `gc.get_objects` / `get_referrers` / `get_referents`,
`sys._current_frames`, `sys.settrace` / `setprofile` (a trace function can jump over an `assert`), `ctypes`
(raw memory), and `os.fork` (each forked copy goes on with the run: a program could fork on every call and let
the copy whose guesses were right report). Outside this process, the sandbox mounts no `/proc` and its seccomp
filter refuses `ptrace` and `process_vm_readv`, so no other process reads the nonce either.

What the harness does not judge: a solution whose return values compare equal to anything, or that patches the
builtins or modules the tests call, can make a test's comparisons true; every statement did then run to its
end. That is a property of the tests, not of how the program ends.

Standard library only: it runs under whichever interpreter the sandbox uses, and on every program, so it imports
only what Python has loaded at start-up (`_ast`, not `ast`; no `json`), and `traceback` only to print a failure.
"""

import _ast
import contextlib
import os
import sys
import types
from functools import partial
from operator import methodcaller

_REFUSED = frozenset({
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._current_frames", "sys.settrace",
    "sys.setprofile", "sys.monitoring.register_callback", "os.fork", "os.forkpty",
})


def _refuse(event, args):
    if event in _REFUSED or event.startswith("ctypes."):
        raise PermissionError(f"the code sandbox refuses {event} while tests run")


_SOURCES = {}  # file name -> source, for the lines of a traceback (no nonce here)


def _steps(setup_fd, report_fd, namespace):
    """The run's steps; the nonce lives only inside them (this frame ends before the solution starts)."""
    with os.fdopen(setup_fd, "rb") as f:
        nonce, size, rest = f.read().split(b"\n", 2)
    _SOURCES["solution.py"] = rest[: int(size)].decode("utf-8", "surrogatepass")
    _SOURCES["tests.py"] = rest[int(size):].decode("utf-8", "surrogatepass")
    units = [compile(_SOURCES["solution.py"], "solution.py", "exec")]
    units += [compile(_ast.Module([statement], []), "tests.py", "exec")
              for statement in compile(_SOURCES["tests.py"], "tests.py", "exec", _ast.PyCF_ONLY_AST).body]
    os.write(report_fd, b"%s tests %d\n" % (nonce, len(units) - 1))
    steps = []
    for i, code in enumerate(units):
        steps += [partial(exec, code, namespace), partial(os.write, report_fd, b"%s ok %d\n" % (nonce, i))]
    sys.addaudithook(_refuse)
    return tuple(steps)


def main():
    setup_fd, report_fd = int(sys.argv[1]), int(sys.argv[2])
    os.set_inheritable(report_fd, False)
    module = types.ModuleType("__main__")
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    streams, exit_now = (sys.stdout, sys.stderr), os._exit
    status = 0
    try:
        # one expression: the steps go from `_steps` straight into `map`, never into a variable of this frame
        list(map(methodcaller("__call__"), _steps(setup_fd, report_fd, module.__dict__)))
    except BaseException as e:  # noqa: BLE001 - whatever ended the run, the tests it skipped stay unreported
        status = 1
        with contextlib.suppress(BaseException):  # an exception whose printing fails is still a failure
            _print_failure(e)
    for stream in streams:
        with contextlib.suppress(BaseException):
            stream.flush()
    exit_now(status)  # the program's atexit handlers and threads have no say in the outcome


def _print_failure(error):
    """The traceback from the program's own frames, with the lines of solution.py and tests.py."""
    import linecache
    import traceback

    for name, source in _SOURCES.items():
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    traceback.print_exception(type(error), error, error.__traceback__.tb_next)


if __name__ == "__main__":
    main()
