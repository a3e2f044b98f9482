"""Semantic deduplication after SemDeDup (Abbas et al., 2023): embed, cluster, drop near-identical meaning.

1. Embed each document (`factory.embedding`: MiniLM mean pooling, unit vectors).
2. k-means the embeddings into about `len(docs) / docs_per_cluster` clusters, so that the pairwise
   comparison below is quadratic only within a cluster.
3. Within each cluster, visit documents from the farthest from the centroid to the nearest (SemDeDup keeps
   the least prototypical member of a duplicate group) or in input order, and drop a document whose cosine
   similarity to a document already kept exceeds `threshold`.

    result = semantic_dedup(docs, SemanticDedupConfig(threshold=0.9))
    result.kept, result.duplicate_of   # removed id -> the kept id it duplicates
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from datatrove.data import Document
from pydantic import Field

from factory.curate.dedup import Record, as_documents
from factory.embedding import EmbeddingConfig, embed
from factory.logs import get_logger
from factory.stage import StageConfig

log = get_logger("factory.curate.dedup.semantic")


class SemanticDedupConfig(StageConfig):
    """SemDeDup: k-means on sentence embeddings, then a cosine-similarity threshold within each cluster."""

    enabled: bool = Field(True, description="Run semantic deduplication at all.")
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig, description="The sentence-embedding model.")
    threshold: float = Field(
        0.9, gt=0.0, le=1.0, description="Drop a document whose cosine similarity to a kept one exceeds this."
    )
    docs_per_cluster: int = Field(200, ge=1, description="Target k-means cluster size: k = ceil(n / docs_per_cluster).")
    keep: Literal["farthest", "first"] = Field(
        "farthest",
        description="Which member of a duplicate group survives: the farthest from its centroid (SemDeDup) or the first in input order.",
    )
    kmeans_n_init: int = Field(3, ge=1, description="k-means restarts (the best inertia wins).")
    seed: int = Field(0, description="Seed of k-means initialisation.")


@dataclass
class SemanticDedupResult:
    """What semantic dedup kept, and for each removed document the kept one it duplicates."""

    kept: list[Document]
    duplicate_of: dict[str, str] = field(default_factory=dict)
    clusters: int = 0

    @property
    def removed(self) -> int:
        return len(self.duplicate_of)


def semantic_dedup(
    records: Iterable[Record], config: SemanticDedupConfig, embeddings: np.ndarray | None = None
) -> SemanticDedupResult:
    """Drop documents that mean the same as a kept one; `embeddings` (n, d) unit rows, when already computed."""
    from sklearn.cluster import KMeans  # seconds to import; loading a spec imports this module (the curate config)

    docs = as_documents(records)
    if not config.enabled or len(docs) < 2:
        return SemanticDedupResult(kept=docs)
    x = embed([d.text for d in docs], config.embedding) if embeddings is None else np.asarray(embeddings, np.float32)
    if x.shape[0] != len(docs):
        raise ValueError(f"{x.shape[0]} embeddings for {len(docs)} documents")

    k = min(len(docs), math.ceil(len(docs) / config.docs_per_cluster))
    kmeans = KMeans(n_clusters=k, n_init=config.kmeans_n_init, random_state=config.seed).fit(x)
    centroids = kmeans.cluster_centers_ / np.linalg.norm(kmeans.cluster_centers_, axis=1, keepdims=True)  # (k, d)

    keep = np.ones(len(docs), dtype=bool)
    duplicate_of: dict[str, str] = {}
    for c in range(k):
        members = np.flatnonzero(kmeans.labels_ == c)  # (m,)
        if config.keep == "farthest":
            members = members[np.argsort(x[members] @ centroids[c], kind="stable")]  # least similar first
        sims = x[members] @ x[members].T  # (m, m) cosine similarity (unit rows)
        kept_local: list[int] = []
        for a in range(len(members)):
            if kept_local:
                best = kept_local[int(np.argmax(sims[a, kept_local]))]
                if sims[a, best] > config.threshold:
                    keep[members[a]] = False
                    duplicate_of[docs[members[a]].id] = docs[members[best]].id
                    continue
            kept_local.append(a)

    result = SemanticDedupResult(kept=[d for d, k_ in zip(docs, keep) if k_], duplicate_of=duplicate_of, clusters=k)
    log.info("semantic_dedup", documents=len(docs), removed=result.removed, clusters=k)
    return result
