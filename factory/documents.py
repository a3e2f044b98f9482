"""The corpus layout that curate and synth write and tokenize and synth read:

    documents/part-NNNNN.jsonl.gz   one JSON record a line, {"id", "text", "metadata"}

    from factory.documents import document_files, read_records, write_parts
    parts = write_parts(records, out / "documents", per_part=10_000)
    for record in read_records(document_files(out), skipped):   # bad lines and files counted in `skipped`
        ...

Text is written as UTF-8, and UTF-8 cannot hold a lone surrogate (what a JSON `\\ud800` escape decodes to): the
writer, and the readers that make records (`valid_text`), replace one with U+FFFD.

A reader that skips damaged records states how much damage it accepts: `check_error_budget` fails with one
line (count, top reasons, a sample file and offset) past that share; `read_records(..., max_error_fraction=)`
applies it to the corpus once every line has been read.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from factory.errors import InputError

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, a surrogate is always a lone one


def valid_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so it encodes as UTF-8 (most text is ASCII: no scan)."""
    if text.isascii() or _LONE_SURROGATE.search(text) is None:
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


def _valid(value: object) -> object:
    """A JSON value with `valid_text` applied to every string in it, keys included."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {_valid(k): _valid(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_valid(v) for v in value]
    return value


def check_error_budget(what: str, damaged: Mapping[str, int], total: int, max_fraction: float,
                       sample: str | None = None, field: str = "max_error_fraction") -> None:
    """Raise one InputError line when the damaged records (counts per reason) pass `max_fraction` of `total`.

    The line gives the count and share, the three most common reasons, a sample location, and the setting
    (`field`) that raises the bound.
    """
    count = sum(damaged.values())
    if not count or count <= max_fraction * total:
        return
    top = ", ".join(f"{reason} {n}" for reason, n in sorted(damaged.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
    share = f"{count / total:.1%}" if total else "all"
    raise InputError(f"{what}: {count} of {total} records ({share}) are damaged, over the error budget of "
                     f"{max_fraction:.1%} ({field}): {top}; first at {sample or 'an unrecorded place'}")


def document_files(artifact_dir: str | Path) -> list[Path]:
    """The part files of a corpus artifact, in order."""
    return sorted((Path(artifact_dir) / "documents").glob("*.jsonl.gz"))


def read_records(files: Iterable[Path], skipped: Counter, bad_line: str = "bad_json",
                 bad_file: str = "unreadable_file", max_error_fraction: float | None = None,
                 what: str = "corpus") -> Iterator[object]:
    """Every JSON value of `files`, in file then line order. A line that is not JSON counts under
    `bad_line`; a truncated or corrupt file counts under `bad_file` (one each), and what was read before
    the damage is kept. With `max_error_fraction`, once every file is read, raise one InputError line
    (`check_error_budget`, naming `what`) when the damaged lines and files pass that share of all lines."""
    good, first = 0, None
    for path in files:
        number = 0
        try:
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError:
                        skipped[bad_line] += 1
                        first = first or f"{path.name} line {number}"
                        continue
                    good += 1
                    yield value
        except (OSError, EOFError, UnicodeDecodeError, zlib.error):
            skipped[bad_file] += 1
            first = first or f"{path.name} after line {number}"
    if max_error_fraction is not None:
        damaged = {k: skipped[k] for k in (bad_line, bad_file) if skipped[k]}
        check_error_budget(what, damaged, good + sum(damaged.values()), max_error_fraction, first)


def write_parts(records: Iterable[dict], folder: Path, per_part: int) -> int:
    """Write `records` as part-NNNNN.jsonl.gz files of `per_part` records each; returns the number of parts.

    One part is held in memory at a time. The bytes depend only on the records (keys sorted, no time or
    file name in the gzip header). An empty corpus is one empty part, so readers still find the layout.
    """
    folder.mkdir(parents=True, exist_ok=True)
    parts, batch = 0, []
    for record in records:
        batch.append(record)
        if len(batch) == per_part:
            _write_part(folder / f"part-{parts:05d}.jsonl.gz", batch)
            parts, batch = parts + 1, []
    if batch or parts == 0:
        _write_part(folder / f"part-{parts:05d}.jsonl.gz", batch)
        parts += 1
    return parts


def _write_part(path: Path, records: list[dict]) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        for record in records:
            line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
            try:
                data = line.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate somewhere in the record (rare: checked only then)
                data = (json.dumps(_valid(record), ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
            gz.write(data)
    path.write_bytes(buf.getvalue())
