"""JSON Lines, read and written in one place: one JSON object per line, a `.gz` name read through gzip.

    for lineno, record in json_objects(path): ...        # checked: an InputError names file and line
    records = read_objects(path)                        # the same, as a list
    prompts = read_models(path, Prompt)                 # each line validated as a pydantic model
    write_objects(path, records)                        # atomically: a hidden file renamed into place

Readers stop at the first bad line with one `InputError` naming the file and the line. Readers that skip damaged
lines within an error budget instead (a corpus's parts, `factory.documents.read_records`; a task file,
`factory.tasks.files.read_task_file`; a crawl, `factory.curate.readers`) count what they skip where they read.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from factory.errors import InputError

Model = TypeVar("Model", bound=BaseModel)


def json_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of JSONL file `path` (gzip-compressed when its name ends
    with .gz); an `InputError` naming file and line for a line that is not a JSON object, and naming the file when
    it is not readable UTF-8."""
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        lines = data.decode("utf-8").splitlines()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not readable ({e})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: not JSON ({e.msg})") from None
        if not isinstance(value, dict):
            raise InputError(f"{path}:{lineno}: a record is a JSON object, got {type(value).__name__}")
        yield lineno, value


def read_objects(path: str | Path) -> list[dict[str, Any]]:
    """Every object of JSONL file `path` (checked as `json_objects` does)."""
    return [record for _, record in json_objects(path)]


def json_models(path: str | Path, model: type[Model]) -> Iterator[tuple[int, Model]]:
    """(line number, `model`) for every object of JSONL file `path`; an `InputError` naming file, line (and the
    record's id, when it has one) and the first field that fails validation."""
    path = Path(path)
    for lineno, data in json_objects(path):
        try:
            yield lineno, model.model_validate(data)
        except ValidationError as e:
            record = data.get("id")
            where = f"{path}:{lineno}: record {record!r}" if record else f"{path}:{lineno}"
            raise InputError(f"{where}: {validation_reason(e)}") from None


def read_models(path: str | Path, model: type[Model]) -> list[Model]:
    """Every line of JSONL file `path` as a `model` (checked as `json_models` does)."""
    return [record for _, record in json_models(path, model)]


def validation_reason(error: ValidationError) -> str:
    """The first failure of a pydantic `ValidationError` in one phrase: `field.path: message`."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def write_objects(path: str | Path, records: Iterable[Mapping[str, Any] | BaseModel]) -> int:
    """Write `records` one per line (a pydantic model as its JSON dump, None fields left out), atomically; returns
    how many."""
    lines = [json.dumps(r.model_dump(mode="json", exclude_none=True) if isinstance(r, BaseModel) else r,
                        ensure_ascii=False) for r in records]
    write_text_atomic(Path(path), "".join(line + "\n" for line in lines))
    return len(lines)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` into a hidden temporary file beside `path`, fsync it, then rename it into place, so a file named
    `path` is always whole; the temporary file is removed when anything fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the published file is an ordinary readable one
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
