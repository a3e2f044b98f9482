"""Fuzzy dedup benchmark: datatrove MinHash LSH against exact word n-gram Jaccard, side by side.

Plants near-duplicates of distinct real-text documents (the standard library's docstrings glued into ~300-word
documents) at known word-edit rates, computes the ground truth by exact Jaccard over the same shingles, and
reports, per edit rate and overall, the Jaccard similarity of the planted copies, MinHash's pair precision and
recall, and the wall time of both methods. Then the same for a few LSH shapes (bands x hashes per band).

    .venv/bin/python bench/dedup.py                      # ~1 min on 2 cores
    .venv/bin/python bench/dedup.py --originals 200 --copies 20 --threshold 0.8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from factory.curate.dedup import FuzzyDedupConfig, fuzzy_dedup
from factory.curate.dedup.planted import cluster_pairs, jaccard_pairs, plant_near_duplicates, precision_recall
from factory.curate.quality.reference_text import stdlib_docstrings

RATES = [0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2]
SHAPES = [(14, 8), (20, 5), (9, 13)]  # (num_buckets, hashes_per_bucket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=160, help="distinct documents")
    parser.add_argument("--copies", type=int, default=10, help="edited copies per edit rate")
    parser.add_argument("--threshold", type=float, default=0.75, help="ground-truth Jaccard threshold")
    args = parser.parse_args()

    originals = stdlib_docstrings(n_docs=args.originals, min_words=250, max_words=350)
    texts, source = plant_near_duplicates(originals, RATES, args.copies, seed=0)
    ids = [str(i) for i in range(len(texts))]
    n0 = len(originals)
    print(f"{len(texts)} documents: {n0} distinct + {len(RATES)} rates x {args.copies} copies; truth: Jaccard >= {args.threshold}")

    t = time.perf_counter()
    sims = jaccard_pairs(texts, n_grams=5, threshold=0.0)  # every pair sharing a shingle, with its similarity
    exact_s = time.perf_counter() - t
    truth = {p for p, s in sims.items() if s >= args.threshold}

    for buckets, hashes in SHAPES:
        config = FuzzyDedupConfig(num_buckets=buckets, hashes_per_bucket=hashes)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            result = fuzzy_dedup(list(zip(ids, texts)), config, scratch=Path(tmp) / "minhash")
            minhash_s = time.perf_counter() - t
        predicted = cluster_pairs(result.clusters, ids)
        precision, recall = precision_recall(predicted, truth)
        print(f"\nLSH {buckets} bands x {hashes} hashes (S-curve midpoint ~{config.threshold:.2f}): "
              f"precision {precision:.3f} recall {recall:.3f}, removed {result.removed}; "
              f"MinHash {minhash_s:.1f} s vs exact Jaccard {exact_s:.1f} s")
        print(f"{'edit rate':>9} {'Jaccard (mean, min-max)':>26} {'true pairs':>10} {'found':>6} {'false pos':>9}")
        for k, rate in enumerate(RATES):
            pairs = {(source[n0 + k * args.copies + c], n0 + k * args.copies + c) for c in range(args.copies)}
            j = np.array([sims.get(p, 0.0) for p in pairs])
            true_here = pairs & truth
            print(f"{rate:>9.2f} {j.mean():>10.3f} ({j.min():.3f}-{j.max():.3f}) {len(true_here):>10} "
                  f"{len(pairs & predicted & truth):>6} {len((pairs & predicted) - truth):>9}")


if __name__ == "__main__":
    main()
