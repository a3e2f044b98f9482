"""Task files: JSONL with a declared task type, read with an error budget.

    tasks = read_task_file(Path("my_math.jsonl"), error_budget=0.05)
    tasks.task_type, len(tasks.items), tasks.skipped, tasks.digest

The first line declares the file: `{"task_type": "math", "name": "my_math", "version": "1"}` (name defaults
to the file stem, version to ""). Every further line is one item of that type:

| task_type | fields | scored by |
|---|---|---|
| cloze | context, target | likelihood: is the greedy continuation the target |
| math | problem, answer | math-verify equivalence of the last `\\boxed{}` |
| code | prompt, tests, entry_point | the sandbox's test harness: prompt + completion, then tests + `check(entry_point)`, every statement run to its end |
| multiple_choice | question, options (2-26), answer (a letter) | the letter chosen |
| short_answer | question, answer (one string or a list) | normalised exact match |
| tool_call | prompt, tools (list), calls (list of {name, arguments}) | Tool-N1: every call equal as JSON |

Every item may carry an `id` (default `<name>-<line>`). A file without a declaration line whose items have
`context` and `target` is read as cloze (the older format). A malformed item is skipped and counted; when
the skipped share passes `error_budget` the read fails with one error naming the file, the first bad line
and its reason, so a broken file never silently shrinks a benchmark.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from factory.errors import InputError
from factory.verify.tool_calls import ToolCall

_ITEM = ConfigDict(frozen=True, extra="ignore")


class ClozeItem(BaseModel):
    """A likelihood item: the model reads `context` and is scored on `target`."""

    model_config = _ITEM
    type: Literal["cloze"] = "cloze"
    id: str
    context: str = Field(min_length=1)
    target: str = Field(min_length=1)


class MathItem(BaseModel):
    """A problem whose final answer math-verify checks."""

    model_config = _ITEM
    type: Literal["math"] = "math"
    id: str
    problem: str = Field(min_length=1)
    answer: str = Field(min_length=1)


class CodeItem(BaseModel):
    """A function to complete; `tests` defines `check(candidate)`, as HumanEval's do."""

    model_config = _ITEM
    type: Literal["code"] = "code"
    id: str
    prompt: str = Field(min_length=1)
    tests: str = Field(min_length=1)
    entry_point: str = Field(min_length=1)

    def case(self, completion: str) -> tuple[str, str]:
        """What the sandbox's `run_tests` runs: the solution (prompt and the model's completion), then the tests
        and the check call."""
        return f"{self.prompt}{completion}\n", f"{self.tests}\n\ncheck({self.entry_point})\n"


class MultipleChoiceItem(BaseModel):
    """A question with lettered options and the right letter."""

    model_config = _ITEM
    type: Literal["multiple_choice"] = "multiple_choice"
    id: str
    question: str = Field(min_length=1)
    options: list[str] = Field(min_length=2, max_length=26)
    answer: str = Field(pattern=r"^[A-Z]$")

    @field_validator("answer")
    @classmethod
    def _within_options(cls, answer: str, info) -> str:
        options = info.data.get("options") or []
        if options and ord(answer) - ord("A") >= len(options):
            raise ValueError(f"answer {answer!r} names no option (there are {len(options)})")
        return answer


class ShortAnswerItem(BaseModel):
    """An open-ended question with one or more accepted short answers."""

    model_config = _ITEM
    type: Literal["short_answer"] = "short_answer"
    id: str
    question: str = Field(min_length=1)
    answer: str | list[str]


class ToolCallItem(BaseModel):
    """A request, the tools offered (JSON schemas), and the calls that answer it."""

    model_config = _ITEM
    type: Literal["tool_call"] = "tool_call"
    id: str
    prompt: str = Field(min_length=1)
    tools: list[dict[str, Any]]
    calls: list[ToolCall] = Field(min_length=1)


TaskType = Literal["cloze", "math", "code", "multiple_choice", "short_answer", "tool_call"]
Item = Annotated[ClozeItem | MathItem | CodeItem | MultipleChoiceItem | ShortAnswerItem | ToolCallItem,
                 Field(discriminator="type")]
_ITEM_ADAPTER = TypeAdapter(Item)


class TaskFile(BaseModel):
    """One task file's good items, and what was skipped."""

    model_config = ConfigDict(frozen=True)
    name: str
    task_type: TaskType
    version: str = ""
    items: list[Item]
    skipped: int = Field(0, description="Malformed items skipped (within the error budget).")
    digest: str = Field(description="sha256 of the file's bytes.")
    path: str = ""


class _Header(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    task_type: TaskType
    name: str | None = None
    version: str = ""


def read_task_file(path: Path, error_budget: float = 0.0) -> TaskFile:
    """Read a task file; skip malformed items while their share stays within `error_budget` (0 to 1)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        lines = data.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"task file {path} cannot be read: {e}") from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise InputError(f"task file {path}: empty")
    first_number, first = numbered[0]
    try:
        head = json.loads(first)
    except ValueError:
        head = None
    if isinstance(head, dict) and "task_type" in head:
        try:
            header = _Header.model_validate(head)
        except ValidationError as e:
            raise InputError(f"task file {path}, line {first_number}: bad declaration: {_reason(e)}") from None
        body = numbered[1:]
    else:
        header = _Header(task_type="cloze")  # the older format: no declaration, cloze items
        body = numbered
    name = header.name or path.stem
    items: list[Any] = []
    bad: list[tuple[int, str]] = []
    for number, line in body:
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            row = {"id": f"{name}-{number}", **row, "type": header.task_type}
            row["id"] = str(row["id"])
            items.append(_ITEM_ADAPTER.validate_python(row))
        except ValidationError as e:
            bad.append((number, _reason(e)))
        except ValueError as e:
            bad.append((number, f"not valid JSON ({e})"))
    total = len(body)
    if bad and len(bad) > error_budget * total:
        number, reason = bad[0]
        raise InputError(
            f"task file {path}, line {number}: {reason} ({len(bad)} of {total} items malformed, over the error "
            f"budget of {error_budget:.0%}); fix the file or raise the task's error_budget")
    if not items:
        raise InputError(f"task file {path}: no items")
    return TaskFile(name=name, task_type=header.task_type, version=header.version, items=items, skipped=len(bad),
                    digest="sha256:" + hashlib.sha256(data).hexdigest(), path=str(path))


def write_task_file(path: Path, task_type: str, items: list[BaseModel | dict], name: str | None = None,
                    version: str = "") -> None:
    """Write a declared task file (what `read_task_file` reads back)."""
    header = {"task_type": task_type, **({"name": name} if name else {}), **({"version": version} if version else {})}
    rows = [item.model_dump(mode="json", exclude={"type"}) if isinstance(item, BaseModel) else item for item in items]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in [header, *rows]), encoding="utf-8")


def _reason(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"] if p not in ("cloze", "math", "code", "multiple_choice",
                                                               "short_answer", "tool_call"))
    return f"{field or 'item'}: {first['msg']}"
