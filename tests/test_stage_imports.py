"""Stages never import each other (STYLE rule 18): what two stages share sits below both.

A stage package is the package of a registered kind's module (`factory.curate`, `factory.train`, ...).
Imports are read statically, inside functions too, the same way code versions are.
"""

from __future__ import annotations

from factory.code_version import _imports, _modules, package_root
from factory.kinds import KINDS

# Known violations: none. An entry here must name where the shared piece is going; an entry that no longer
# occurs fails the test, so the list only shrinks.
ALLOWED: set[tuple[str, str]] = set()


# `factory.train` is the one trainer every training stage shares (DESIGN: objectives are modules on one
# trainer); the pretrain stage's module lives inside it, so there the stage is that module, not the package.
# `factory.posttrain` likewise holds several stages (sft, rl, preference, data) beside the library modules
# they share (the chat template that tokenize also writes, conversation records, rollouts, rewards).
SHARED = {"factory.train", "factory.posttrain"}


def stage_packages() -> list[str]:
    units = set()
    for k in KINDS.values():
        if k.module.startswith("factory."):
            package = ".".join(k.module.split(".")[:2])
            units.add(k.module if package in SHARED else package)
    return sorted(units)


def cross_stage_imports() -> dict[tuple[str, str], list[str]]:
    """(importing stage package, imported stage package) -> the importing modules."""
    packages = stage_packages()

    def owner(module: str) -> str | None:
        return next((p for p in packages if module == p or module.startswith(p + ".")), None)

    found: dict[tuple[str, str], list[str]] = {}
    root = package_root()
    for module in _modules(root):
        own = owner(module)
        for imported in _imports(module, root) if own else ():
            other = owner(imported)
            if other and other != own:
                found.setdefault((own, other), []).append(f"{module} imports {imported}")
    return found


def test_no_stage_imports_another_stage():
    assert {"factory.curate", "factory.stages.pretrain.stage", "factory.stages.release"} <= set(stage_packages())
    found = cross_stage_imports()
    new = {pair: where for pair, where in found.items() if pair not in ALLOWED}
    assert not new, "a stage imports another stage; move what they share below both: " + "; ".join(
        w for where in new.values() for w in where)
    stale = ALLOWED - set(found)
    assert not stale, f"fixed, so remove from ALLOWED in tests/test_stage_imports.py: {sorted(stale)}"
