"""JSON Lines, read and written in one place: one JSON object per line.

    for lineno, record in json_objects(path): ...        # checked: an InputError names file and line
    records = read_objects(path)                        # the same, as a list
    write_objects(path, records)                        # atomically: a hidden file renamed into place
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from factory.errors import InputError


def json_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of JSONL file `path`; an `InputError` naming file and line
    for a line that is not a JSON object, and naming the file when it is not readable UTF-8."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not readable ({e})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: not JSON ({e.msg})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}:{lineno}: a record is a JSON object, got {type(data).__name__}")
        yield lineno, data


def read_objects(path: str | Path) -> list[dict[str, Any]]:
    """Every object of JSONL file `path` (checked as `json_objects` does)."""
    return [record for _, record in json_objects(path)]


def write_objects(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write `records` one per line into a hidden temporary file beside `path`, then rename it into place, so a file
    named `path` is always whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)
