"""Prompt templates of the post-training data stage, one text file per kind of question.

Placeholders are `$question`, `$options` and `$tools` (`string.Template`), so the `\\boxed{}` and JSON braces
in the text need no escaping. The multiple-choice and open-ended templates are Nemotron-CrossThink's two
ways of posing a general-reasoning question; `tir.txt` is appended to a math prompt when the teacher may run
code (tool-integrated reasoning after OpenMathReasoning).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

FOLDER = Path(__file__).resolve().parent
NAMES = ("math", "multiple_choice", "open_ended", "tool_call", "code", "tir")


@cache
def template(name: str) -> Template:
    """The template `name` (one of NAMES)."""
    if name not in NAMES:
        raise KeyError(f"no prompt template {name!r}; templates are {', '.join(NAMES)}")
    return Template((FOLDER / f"{name}.txt").read_text(encoding="utf-8").rstrip("\n"))


def render(name: str, **fields: str) -> str:
    """Template `name` with its placeholders filled (a missing one raises KeyError)."""
    return template(name).substitute(**fields)
