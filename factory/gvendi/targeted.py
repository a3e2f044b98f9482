"""Prismatic-style targeted synthesis: keep the generated documents that land in the smallest gradient clusters.

k-means on the gradients of the existing data and the generated candidates together, a cluster's size being its
number of existing examples; then keep the candidates that land in the smallest clusters (greedily: each kept
candidate comes from the cluster that is smallest at that moment), which fills the gaps of the dataset. The synth
stage calls `targeted_filter` when its config sets `targeted.enabled`.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from factory.errors import InputError
from factory.gvendi.examples import Example, reservoir_sample, text_example
from factory.gvendi.proxy import load_proxy
from factory.gvendi.score import gradient_features, gvendi_score
from factory.gvendi.config import TargetedSynthesis
from factory.logs import get_logger

__all__ = ["targeted_filter", "targeted_selection"]

log = get_logger("factory.gvendi")


def targeted_selection(reference: Any, candidates: Any, clusters: int, keep: int, seed: int = 0) -> list[int]:
    """Indices (ascending) of the `keep` candidates that land in the smallest clusters of the existing data.

    k-means (scikit-learn) over the reference and candidate features together, so a region that only new
    candidates reach forms its own cluster; a cluster's size is its number of reference members. Then, `keep`
    times, the cluster with the fewest members so far (reference plus candidates already kept) that still
    has candidates gives up its next one (input order) and counts it. So the candidates fill the sparse
    regions of the gradient space first, and no region gets them all.
    """
    reference, candidates = np.asarray(reference, dtype=np.float64), np.asarray(candidates, dtype=np.float64)
    if len(candidates) == 0 or keep <= 0:
        return []
    points = np.concatenate([reference, candidates])
    k = max(1, min(clusters, len(points)))
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(points).tolist()
    sizes = np.bincount(labels[: len(reference)], minlength=k).tolist()
    queues: dict[int, list[int]] = {c: [] for c in range(k)}
    for index, cluster in enumerate(labels[len(reference) :]):
        queues[cluster].append(index)
    kept: list[int] = []
    while len(kept) < keep and any(queues.values()):
        cluster = min((c for c in queues if queues[c]), key=lambda c: (sizes[c], c))
        kept.append(queues[cluster].pop(0))
        sizes[cluster] += 1
    return sorted(kept)


def targeted_filter(candidates: Iterable[dict], reference: Iterable[Any], settings: TargetedSynthesis, scratch: Path | None,
                    stats: Counter) -> Iterator[dict]:
    """Of the generated documents `candidates` ({"text", ...}), yield those `targeted_selection` keeps against
    a seeded sample of the source documents `reference`, in input order.

    The candidates are spooled to a temporary file (under `scratch` when given), so only their token windows
    and features are held. Counts go into `stats`: targeted_candidates, targeted_kept, and the G-Vendi of the
    reference alone, with the kept documents, and with all candidates (`targeted_gvendi_*`).
    """
    p = settings.proxy
    proxy = load_proxy(p)
    texts = [r["text"] for r in reservoir_sample(
        (r for r in reference if isinstance(r, dict) and isinstance(r.get("text"), str)), settings.reference_docs, p.seed)]
    ref_examples = [e for e in (text_example(t, proxy.encode, p.seq_len) for t in texts) if e is not None]
    if len(ref_examples) < 2:
        raise InputError(f"synth.targeted: {len(ref_examples)} usable source documents; clustering needs at least 2")
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as spool_dir:
        spool = Path(spool_dir) / "candidates.jsonl"
        cand_examples: list[Example] = []
        usable: list[int] = []
        with spool.open("w", encoding="utf-8") as out:
            for index, doc in enumerate(candidates):
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
                text = doc.get("text") if isinstance(doc, dict) else None
                example = text_example(text, proxy.encode, p.seq_len) if isinstance(text, str) else None
                if example is not None:
                    cand_examples.append(example)
                    usable.append(index)
        stats["targeted_candidates"] += len(cand_examples)
        features = gradient_features(ref_examples + cand_examples, proxy, p)
        n_ref = len(ref_examples)
        keep = math.ceil(settings.keep_fraction * len(cand_examples))
        chosen = targeted_selection(features[:n_ref].numpy(), features[n_ref:].numpy(), settings.clusters, keep, p.seed)
        kept = {usable[i] for i in chosen}
        stats["targeted_kept"] += len(kept)
        stats["targeted_gvendi_reference"] = round(gvendi_score(features[:n_ref]), 4)
        if chosen:
            stats["targeted_gvendi_with_kept"] = round(gvendi_score(features[[*range(n_ref), *(n_ref + i for i in chosen)]]), 4)
            stats["targeted_gvendi_with_all"] = round(gvendi_score(features), 4)
        log.info("gvendi.targeted", proxy=proxy.name, candidates=len(cand_examples), kept=len(kept),
                 clusters=settings.clusters, reference=n_ref)
        with spool.open(encoding="utf-8") as lines:
            for index, line in enumerate(lines):
                if index in kept:
                    yield json.loads(line)
