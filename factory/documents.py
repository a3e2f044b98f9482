"""The corpus layout that curate and synth write and tokenize and synth read:

    documents/part-NNNNN.jsonl.gz   one JSON record a line, {"id", "text", "metadata"}

    from factory.documents import document_files, read_records, write_parts
    parts = write_parts(records, out / "documents", per_part=10_000)
    for record in read_records(document_files(out), skipped):   # bad lines and files counted in `skipped`
        ...
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path


def document_files(artifact_dir: str | Path) -> list[Path]:
    """The part files of a corpus artifact, in order."""
    return sorted((Path(artifact_dir) / "documents").glob("*.jsonl.gz"))


def read_records(files: Iterable[Path], skipped: Counter, bad_line: str = "bad_json",
                 bad_file: str = "unreadable_file") -> Iterator[object]:
    """Every JSON value of `files`, in file then line order. A line that is not JSON counts under
    `bad_line`; a truncated or corrupt file counts under `bad_file`, and what was read before the damage
    is kept."""
    for path in files:
        try:
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                for line in lines:
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        skipped[bad_line] += 1
        except (OSError, EOFError, UnicodeDecodeError, zlib.error):
            skipped[bad_file] += 1


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
            gz.write((json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
    path.write_bytes(buf.getvalue())
