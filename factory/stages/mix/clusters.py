"""CLIMB's clustering: k-means over document embeddings, pruning by quality tier, merging into super-clusters.

    assignment, centroids = kmeans(vectors, k=16, iterations=25, seed=0)   # (n,) int, (16, 384) unit rows
    tiers = cluster_tiers(assignment, doc_tiers, k=16)                       # (16,) mean quality tier
    kept = [c for c in range(16) if tiers[c] >= 1.0]
    super_of = merge(centroids, kept, n_super=4)                             # kept cluster -> super-cluster
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np
from sklearn.cluster import AgglomerativeClustering

from factory.errors import InputError
from factory.tiers import N_TIERS

__all__ = ["cluster_tiers", "kmeans", "merge", "MIDDLE_TIER"]

MIDDLE_TIER = (N_TIERS - 1) / 2  # what a document without `metadata.quality_tier` counts as


def kmeans(vectors: np.ndarray, k: int, iterations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (faiss) of unit vectors (n, d): the cluster of each vector (n,) int64 and the centroids (k, d)."""
    n, d = vectors.shape
    if n < k:
        raise InputError(f"mix.clusters: {k} clusters for {n} documents; lower clusters or give more documents")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    # faiss warns below 39 points per centroid; a small corpus is still clustered correctly, just with less data.
    km = faiss.Kmeans(d, k, niter=iterations, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1)
    km.train(x)
    _, labels = km.index.search(x, 1)  # (n, 1) nearest centroid
    return labels[:, 0].astype(np.int64), np.asarray(km.centroids, dtype=np.float32)


def cluster_tiers(assignment: np.ndarray, tiers: Sequence[float | None], k: int) -> np.ndarray:
    """Mean quality tier of each cluster's documents (k,); a document without a tier counts as the middle
    tier, an empty cluster gets -1 (pruned by any threshold)."""
    values = np.array([MIDDLE_TIER if t is None else float(t) for t in tiers], dtype=np.float64)  # (n,)
    sums = np.bincount(assignment, weights=values, minlength=k)
    counts = np.bincount(assignment, minlength=k)
    return np.where(counts > 0, sums / np.maximum(counts, 1), -1.0)


def merge(centroids: np.ndarray, kept: Sequence[int], n_super: int) -> dict[int, int]:
    """Group the kept clusters into `n_super` super-clusters by average-linkage cosine distance of their
    centroids (sklearn's agglomerative clustering). Super-clusters are numbered by their smallest member."""
    kept = sorted(kept)
    if not kept:
        return {}
    if n_super >= len(kept):
        groups = np.arange(len(kept))
    else:
        groups = AgglomerativeClustering(n_clusters=n_super, metric="cosine", linkage="average").fit_predict(
            centroids[kept])
    order = {g: i for i, g in enumerate(dict.fromkeys(groups.tolist()))}  # first appearance, i.e. by smallest member
    return {c: order[g] for c, g in zip(kept, groups.tolist())}
