"""A stage kind's code version: the hash of the `factory` modules its module imports, found statically.

    code_version("factory.stages.pretrain.stage")     # '3f1c...' (16 hex digits)
    import_closure("factory.stages.pretrain.stage")   # {'factory', 'factory.train', 'factory.stages.pretrain.stage', ...}

The closure starts at the kind's module and follows every `import` and `from ... import` of a `factory`
module anywhere in the source (inside functions too, where the heavy imports are deferred), plus strings
that name a `factory` module (`importlib.import_module("factory.x")`, `lazy_exports`, package data read
through `importlib.resources`); an f-string that starts with a package path (`f"factory.precision.{m}"`)
counts as every module directly in that package. Importing `factory.a.b` runs `factory/__init__.py` and
`factory/a/__init__.py`, so parent packages are in the closure too. Nothing is imported to find it.

The version hashes each module's source and the data files (non-Python files) of every package in the
closure, so editing any code a stage can run reruns it, and editing a CLI module reruns nothing.
Over-inclusion only costs a rerun; under-inclusion would reuse a stale artifact, which the test that
traces each stage's run checks against.

The libraries a kind's code calls are found the same way: `libraries(module)` is every installed distribution whose
modules the closure imports, and `library_versions` their versions, which a step's fingerprint holds too (transformers
5.24 and 5.25 train to different bits).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
import threading
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Literal

PACKAGE = "factory"


def package_root() -> Path:
    """The folder that holds the `factory` package."""
    return Path(__file__).resolve().parent.parent


@cache
def _modules(root: Path) -> dict[str, Path]:
    """Every module of the `factory` package under `root`: dotted name -> source file."""
    out: dict[str, Path] = {}
    for f in sorted((root / PACKAGE).rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        parts = f.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _source(name: str, root: Path) -> Path:
    """The source file of module `name`: in the package under `root`, or (a stage kind defined outside
    the package, such as a test's toy kind) wherever Python would import it from."""
    modules = _modules(root)
    if name in modules:
        return modules[name]

    found = importlib.util.find_spec(name)
    if found is None or not found.origin or not found.origin.endswith(".py"):
        raise KeyError(f"{name}: no such module (a stage kind's module must be Python source)")
    return Path(found.origin)


# CPython 3.11's parser is not safe to run in two threads at once ("AST constructor recursion depth mismatch"): a
# launcher thread and the executor's planning may both fingerprint code.
_PARSE = threading.Lock()


def _parse(path: Path) -> ast.Module:
    with _PARSE:
        return ast.parse(path.read_bytes(), filename=str(path))


@cache
def _imports(name: str, root: Path) -> frozenset[str]:
    """The `factory` modules that module `name` (of the package under `root`) may import."""
    modules = _modules(root)
    path = _source(name, root)
    tree = _parse(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
            found.add(node.value)
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            prefix = str(node.values[0].value)
            if prefix.startswith(f"{PACKAGE}.") and prefix.endswith(".") and prefix[:-1] in modules:
                found.update(m for m in modules if m.startswith(prefix) and "." not in m[len(prefix):])
    return frozenset(p for m in found if m.split(".")[0] == PACKAGE for p in _parents(m) if p in modules)


@cache
def import_closure(module: str, root: Path | None = None) -> frozenset[str]:
    """Every `factory` module that importing and running `module` may load (static analysis)."""
    root = root or package_root()
    modules = _modules(root)
    _source(module, root)  # raises KeyError naming a module that does not exist
    closure: set[str] = set()
    todo = list(_parents(module)) if module in modules else [module]
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        todo += sorted(_imports(name, root) - closure)
    return frozenset(closure)


def closure_files(module: str, root: Path | None = None) -> list[Path]:
    """The source files of `module`'s import closure and the data files of its packages, sorted."""
    root = root or package_root()
    files: set[Path] = set()
    for name in import_closure(module, root):
        src = _source(name, root)
        files.add(src)
        if src.name == "__init__.py":  # a package: its data files (prompts, built-in eval sets) shape results too
            files.update(f for f in src.parent.iterdir() if f.is_file() and f.suffix not in (".py", ".pyc"))
    return sorted(files)


@cache
def code_version(module: str, root: Path | None = None) -> str:
    """16 hex digits of the sha256 of every file `closure_files(module)` lists, with its relative path."""
    root = root or package_root()
    h = hashlib.sha256()
    for f in closure_files(module, root):
        h.update((f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


# --- the libraries a kind's code calls -------------------------------------------------------------------------

LibraryPolicy = Literal["exact", "minor", "none"]

# Libraries a stage calls that move, log, validate, track or schedule its work, never compute what it publishes: an
# upgrade of one of them must not rerun every step. (Plots are pictures of the results; their bytes may change.)
NO_EFFECT = frozenset({"boto3", "botocore", "fsspec", "httpx", "huggingface_hub", "matplotlib", "mlflow", "mlflow-skinny",
                       "mlflow-tracing", "Pebble", "pydantic", "PyYAML", "ray", "rich", "structlog", "threadpoolctl"})


@cache
def _third_party(name: str, root: Path) -> frozenset[str]:
    """Top-level names of the modules outside the standard library and `factory` that module `name` imports."""
    path = _source(name, root)
    found: set[str] = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return frozenset(m for m in found if m != PACKAGE and m not in sys.stdlib_module_names and m != "__future__")


@cache
def libraries(module: str, root: Path | None = None) -> frozenset[str]:
    """The installed distributions (pip names) whose modules `module`'s import closure imports, but for `NO_EFFECT`:
    the libraries whose versions can change what a kind computes (transformers, torch, datatrove, ...)."""
    root = root or package_root()
    by_module = metadata.packages_distributions()
    names = {m for name in import_closure(module, root) for m in _third_party(name, root)}
    return frozenset(d for m in names for d in by_module.get(m, ()) if d not in NO_EFFECT)


def library_versions(module: str, policy: LibraryPolicy = "exact", root: Path | None = None) -> dict[str, str]:
    """{distribution: version} of `libraries(module)`: every version (`exact`), major.minor only (`minor`: patch
    releases reuse what they would reproduce), or none (`none`: library upgrades never rerun a step)."""
    if policy == "none":
        return {}
    versions = {d: installed_version(d) for d in sorted(libraries(module, root))}
    if policy == "minor":
        versions = {d: ".".join(v.split(".")[:2]) for d, v in versions.items()}
    return versions


def installed_version(distribution: str) -> str:
    """The installed version of `distribution` (one place, so a test can stand in another)."""
    return metadata.version(distribution)
