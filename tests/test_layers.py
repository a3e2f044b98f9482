"""Layers by structure: every import between the factory's units points down one declared order of floors.

A unit is a top-level module or package of `factory` (`factory.spec`, `factory.curate`), one stage kind's package
(`factory.stages.<kind>`), or one of the packages above the library (`components`, `pipelines`, `cli`). `FLOORS`
lists them top to bottom; a unit may import only units on lower floors (and itself), so units on one floor never
import each other: the stage kinds share one floor, which is STYLE rule 18 (stages never import each other).

Every import statement counts, wherever it is: at module level, inside a function, under `if TYPE_CHECKING:`.
Module names in strings (the registry's `"factory.stages.mix"`, `lazy_exports`) are not imports and do not count.
A new package or top-level module must be placed on a floor before this test passes.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from factory.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("cli", "pipelines", "components", "factory")  # the project's import packages

# Top to bottom.
FLOORS: list[tuple[str, set[str]]] = [
    ("the command line (`factory ...`): drives pipelines, runs and everything below", {"cli"}),
    ("KFP pipelines built from a spec", {"pipelines"}),
    ("KFP components: thin adapters over the orchestration layer", {"components"}),
    ("KFP task bodies of a step that runs as several tasks (mix's proxies)", {"factory.fanout"}),
    ("one step as a KFP task or cluster job", {"factory.orchestrate"}),
    ("the executor; the spec's endpoints from the cluster", {"factory.steps", "factory.endpoints"}),
    ("the spec; the plan of its costs through the registry", {"factory.spec", "factory.plan"}),
    ("the spine below the spec: registry, store, manifests, code versions, cluster jobs",
     {"factory.kinds", "factory.store", "factory.manifest", "factory.code_version", "factory.launch"}),
    ("the stage kinds, one package each (the registry's)", {"factory.stages"} | {k.package for k in KINDS.values()}),
    ("training engines other than the factory's own, plugged into the training-stage shell", {"factory.engines"}),
    ("RL environments: task sources, scorers, tools, the mixture of many in one run", {"factory.envs"}),
    ("libraries several stages share, built on the ones below", {
        "factory.train", "factory.tasks", "factory.gvendi", "factory.artifacts", "factory.judge"}),
    ("libraries several stages share", {"factory.curate", "factory.precision", "factory.cost", "factory.chat"}),
    ("models, generators, verifiers, embeddings, tracking", {
        "factory.model", "factory.generate", "factory.verify", "factory.embedding", "factory.lineage"}),
    ("the stage contract: configs, artifacts, the run context", {"factory.stage"}),
    ("data formats and readers; raw inputs; system tools", {
        "factory.jsonl", "factory.documents", "factory.tokens", "factory.tiers", "factory.data", "factory.sources",
        "factory.system_tools"}),
    ("model folders read without their weights; the Hugging Face cache", {"factory.checkpoint_files", "factory.hub_cache"}),
    ("errors, logs, lazy exports, the package itself", {"factory", "factory.errors", "factory.logs", "factory.lazy"}),
]


@cache
def modules() -> dict[str, Path]:
    """Every module of the project's packages: dotted name -> source file."""
    found = {}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                parts = path.relative_to(ROOT).with_suffix("").parts
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def unit(module: str) -> str:
    """The unit a module belongs to: `factory.stages.mix.proxy_runs` -> `factory.stages.mix`, `factory.spec` -> itself."""
    parts = module.split(".")
    if parts[0] != "factory":
        return parts[0]
    return ".".join(parts[:3] if parts[1:2] == ["stages"] and len(parts) > 2 else parts[:2])


def imports(module: str) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement of `module`, in any scope."""
    return read_imports(modules()[module], module)


def read_imports(path: Path, module: str) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement in the source file `path` of `module`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import submodule` imports the submodule; `from module import name` the module
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules() else base for a in node.names]
        else:
            continue
        found += [(name, node.lineno) for name in dict.fromkeys(names) if name.split(".")[0] in TOPS]
    return found


def floor_of() -> dict[str, int]:
    return {u: i for i, (_, units) in enumerate(FLOORS) for u in units}


def unit_edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> "module imports module, line N" for every import between two units."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module in modules():
        for imported, line in imports(module):
            a, b = unit(module), unit(imported)
            if a != b:
                edges.setdefault((a, b), []).append(f"{module} imports {imported} (line {line})")
    return edges


def test_every_unit_is_placed_once():
    units = {unit(m) for m in modules()}
    declared = [u for _, floor in FLOORS for u in floor]
    assert len(declared) == len(set(declared)), f"placed twice: {sorted({u for u in declared if declared.count(u) > 1})}"
    assert not units - set(declared), f"place these units on a floor of tests/test_layers.py: {sorted(units - set(declared))}"
    assert not set(declared) - units, f"no such units (remove them from FLOORS): {sorted(set(declared) - units)}"
    assert all(floor for _, floor in FLOORS)


def test_every_import_points_down():
    floor = floor_of()
    wrong = []
    for module in modules():
        for imported, line in imports(module):
            a, b = unit(module), unit(imported)
            if a != b and floor.get(a, -1) >= floor.get(b, -1) and {a, b} <= floor.keys():
                wrong.append(f"{module} imports {imported} (floor {floor[a]} -> floor {floor[b]}), line {line}")
    assert not wrong, "imports that do not point down (move the code, not the floors):\n" + "\n".join(sorted(wrong))


def test_no_cycle_between_units():
    graph: dict[str, set[str]] = {}
    for a, b in unit_edges():
        graph.setdefault(a, set()).add(b)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(node):] + [node]))
        if node not in done:
            for nxt in sorted(graph.get(node, ())):
                visit(nxt, path + [node])
            done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_the_reader_sees_every_kind_of_import(tmp_path):
    source = tmp_path / "stage.py"
    source.write_text(
        "from __future__ import annotations\n"
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "from factory.errors import InputError\n"
        "from . import config\n"
        "if TYPE_CHECKING:\n"
        "    from factory.spec import Spec\n"
        "def run():\n"
        "    from factory.store import S3Store\n"
        "    import factory.tokens, pipelines.end_to_end\n"
        "    return importlib.import_module('factory.steps')\n")
    found = read_imports(source, "factory.stages.mix.stage")
    assert found == [("factory.errors", 4), ("factory.stages.mix.config", 5), ("factory.spec", 7), ("factory.store", 9),
                     ("factory.tokens", 10), ("pipelines.end_to_end", 10)]  # a name in a string is no import
    assert unit("factory.stages.mix.proxy_runs") == "factory.stages.mix" and unit("factory.spec") == "factory.spec"
    assert unit("factory") == "factory" and unit("cli.main") == "cli" and unit("components.build") == "components"


# File names several packages share because each holds the same thing for its own package (a stage kind's config,
# run and cost; a package's __init__; engines' and the model's state-dict adapters).
SHARED_NAMES = {"__init__.py", "config.py", "stage.py", "cost.py", "state_dict.py"}


def test_no_two_library_files_share_a_name_for_different_things():
    """A reader who meets `reference.py` or `prompts.py` twice must not have to check which one is meant: a name
    names one thing across the library (STYLE), apart from the per-package conventions above."""
    by_name: dict[str, list[str]] = {}
    for path in sorted((ROOT / "factory").rglob("*.py")):
        by_name.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    shared = {name: paths for name, paths in by_name.items() if len(paths) > 1 and name not in SHARED_NAMES}
    assert not shared, f"rename one of each: {shared}"
