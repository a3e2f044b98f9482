"""The corpus builder: documents in the curate stage's layout (`documents/part-*.jsonl.gz`) and a manifest naming
raw sources, as a curate step publishes them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from factory.documents import write_parts
from factory.stage import Artifact
from tests.builders.manifests import publish

# The raw input a built corpus names (a model card lists it among the release's datasets).
RAW = [{"uri": "file:///data/raw/pages.warc.gz", "digest": "sha256:" + "a" * 64}]


def corpus(folder: Path, records: Iterable[dict[str, Any]] = (), per_part: int = 100,
           sources: list[dict[str, Any]] = RAW) -> Artifact:
    """`records` ({"id", "text", "metadata"}) written as corpus parts of `per_part` documents (none: one empty part)."""
    records = list(records)
    write_parts(records, Path(folder) / "documents", per_part)
    return publish(folder, "curate", "corpus", sources=sources, config={"sources": ["/data/raw"]},
                   metrics={"documents": float(len(records))})
