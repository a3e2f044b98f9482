"""Evaluation sets: the built-in ones shipped next to this file, and the reader for set files.

    from factory.tasks.sets import builtin_sets, read_set
    builtin_sets()                             # ["stdlib_cloze"]
    read_set(builtin_path("stdlib_cloze"))     # [TaskItem(id=..., context=..., target=" connection"), ...]

A set is a JSONL file, one item a line: {"id": str, "context": str, "target": str, ...} (other keys, such as
"source", are kept out of scoring). The model is scored on the target's tokens after the context; for the
built-in LAMBADA-style cloze the target is the passage's last word with its leading space. The built-in
files are written by `python -m factory.tasks.sets.make`. This module imports no torch, so curate's
decontamination can read the sets cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from factory.errors import InputError
from factory.jsonl import json_objects

SETS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class TaskItem:
    """One scored item: the model reads `context` and is scored on `target` (which carries its leading space)."""

    id: str
    context: str
    target: str


def builtin_sets() -> list[str]:
    """Names of the built-in sets (the JSONL files in this package), sorted."""
    return sorted(p.stem for p in SETS_DIR.glob("*.jsonl"))


def builtin_path(name: str) -> Path:
    """The file of built-in set `name` (see `builtin_sets`)."""
    return SETS_DIR / f"{name}.jsonl"


def read_set(path: Path) -> list[TaskItem]:
    """The items of one set file; a malformed line raises `InputError` naming the file and the line."""
    items: list[TaskItem] = []
    for number, row in json_objects(path):
        if not all(isinstance(row.get(k), str) and row[k] for k in ("context", "target")):
            raise InputError(
                f"evaluation set {path}, line {number}: expected an object with non-empty string fields "
                '"context" and "target"')
        items.append(TaskItem(id=str(row.get("id", f"{Path(path).stem}-{number}")), context=row["context"], target=row["target"]))
    if not items:
        raise InputError(f"evaluation set {path}: no items")
    return items
