"""Code versions come from each kind's import closure: an edit anywhere a stage can reach reruns it, an
edit to a module above the stages (orchestration, the mix fan-out's tasks) reruns nothing. Edits are made on a
copy of the package in a tmp folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from factory.code_version import _imports, code_version, import_closure, package_root
from factory.kinds import KINDS

KIND_MODULES = {name: k.run_module for name, k in KINDS.items()}


def _copy(tmp: Path) -> Path:
    shutil.copytree(package_root() / "factory", tmp / "factory", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp


def _versions(root: Path) -> dict[str, str]:
    return {name: code_version(module, root) for name, module in KIND_MODULES.items()}


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def _defining(root: Path, text: str) -> str:
    """The module (dotted name) whose source defines `text`, e.g. 'class PackedSequences'."""
    (path,) = [p for p in (root / "factory").rglob("*.py") if text in p.read_text()]
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def test_a_copy_has_the_same_versions_as_the_package(tmp_path):
    assert _versions(_copy(tmp_path)) == _versions(package_root())


def test_editing_a_module_pretrain_reaches_indirectly_changes_its_version(tmp_path):
    root = _copy(tmp_path / "a")
    before = _versions(root)
    # The token-window reader pretrain trains on: wherever it lives, it is in pretrain's closure.
    reader = _defining(root, "class PackedSequences")
    assert reader in import_closure(KIND_MODULES["pretrain"], root)
    fresh = _copy(tmp_path / "b")  # versions are cached by root: each edit gets its own copy
    _edit(fresh / Path(*reader.split(".")).with_suffix(".py"))
    after = _versions(fresh)
    assert after["pretrain"] != before["pretrain"]
    untouched = [n for n, m in KIND_MODULES.items() if reader not in import_closure(m, root)]
    assert untouched and all(after[n] == before[n] for n in untouched)  # kinds that never reach the reader keep theirs

    # A module two imports away from pretrain's own module (not imported by it directly).
    direct = _imports(KIND_MODULES["pretrain"], root)
    indirect = sorted(m for m in import_closure(KIND_MODULES["pretrain"], root) - direct
                      if not (root / Path(*m.split(".")) / "__init__.py").exists())
    assert indirect, "pretrain's closure has no indirect module"
    other = _copy(tmp_path / "c")
    _edit(other / Path(*indirect[0].split(".")).with_suffix(".py"))
    assert _versions(other)["pretrain"] != before["pretrain"]


def test_editing_a_module_above_the_stages_changes_no_stage_version(tmp_path):
    root = _copy(tmp_path)
    before = _versions(package_root())
    for above in ("factory/orchestrate.py", "factory/fanout/mix.py"):
        _edit(root / above)
    assert _versions(root) == before
    for module in KIND_MODULES.values():
        assert not {"factory.orchestrate", "factory.fanout", "factory.fanout.mix"} & import_closure(module)


def test_lazy_and_dynamic_imports_are_followed():
    pretrain = import_closure(KIND_MODULES["pretrain"])
    # `from factory.tokens import PackedSequences` sits inside a function of pretrain
    assert "factory.tokens" in pretrain
    # lazy_exports names its modules in an f-string: factory.precision's modules are all in
    assert {"factory.precision.fp8", "factory.precision.nvfp4"} <= pretrain
    # curate decontaminates against the built-in benchmark sets (factory.tasks), read as package data
    assert "factory.tasks.sets" in import_closure(KIND_MODULES["curate"])
