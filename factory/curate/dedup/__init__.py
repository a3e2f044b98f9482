"""Near-duplicate removal for the curate stage: fuzzy (MinHash LSH) and semantic (SemDeDup).

Both work in-process on a list of datatrove `Document`s (or plain `(id, text)` records) and return the
documents they keep plus counts, so the curate stage can chain them between its filters:

    from factory.curate.dedup import FuzzyDedupConfig, SemanticDedupConfig, fuzzy_dedup, semantic_dedup
    kept = fuzzy_dedup(docs, FuzzyDedupConfig(), scratch).kept
    kept = semantic_dedup(kept, SemanticDedupConfig()).kept
"""

from __future__ import annotations

from collections.abc import Iterable

from datatrove.data import Document

Record = Document | tuple[str, str]


def as_documents(records: Iterable[Record]) -> list[Document]:
    """Documents from datatrove `Document`s or `(id, text)` pairs (the pairs become new Documents)."""
    return [r if isinstance(r, Document) else Document(text=r[1], id=str(r[0])) for r in records]


from factory.curate.dedup.fuzzy import FuzzyDedupConfig, FuzzyDedupResult, fuzzy_dedup  # noqa: E402
from factory.curate.dedup.semantic import SemanticDedupConfig, SemanticDedupResult, semantic_dedup  # noqa: E402

__all__ = [
    "FuzzyDedupConfig",
    "FuzzyDedupResult",
    "Record",
    "SemanticDedupConfig",
    "SemanticDedupResult",
    "as_documents",
    "fuzzy_dedup",
    "semantic_dedup",
]
