"""Fuzzy dedup: datatrove's MinHash LSH against exact word n-gram Jaccard on planted near-duplicates."""

import pytest
from datatrove.data import Document

from factory.curate.dedup import FuzzyDedupConfig, fuzzy_dedup
from factory.curate.dedup.planted import cluster_pairs, jaccard_pairs, plant_near_duplicates, precision_recall
from factory.curate.quality.reference_text import stdlib_docstrings

# copies at 1-2% word edits stay well above the LSH threshold (~0.72 Jaccard for 14 bands x 8 hashes),
# copies at 15-30% fall well below it; the region in between is the S-curve's and is measured by bench/dedup.py
NEAR, FAR = [0.01, 0.02], [0.15, 0.30]


@pytest.fixture(scope="module")
def planted():
    originals = stdlib_docstrings(n_docs=100, min_words=250, max_words=350)
    texts, source = plant_near_duplicates(originals, NEAR + FAR, copies_per_rate=10, seed=0)
    return texts, source


def test_minhash_matches_exact_jaccard(planted, tmp_path):
    texts, source = planted
    config = FuzzyDedupConfig()
    truth = set(jaccard_pairs(texts, config.n_grams, threshold=0.75))
    ids = [f"doc-{i}" for i in range(len(texts))]
    result = fuzzy_dedup(list(zip(ids, texts)), config, scratch=tmp_path / "minhash")

    precision, recall = precision_recall(cluster_pairs(result.clusters, ids), truth)
    print(f"planted: {len(texts)} docs, {len(truth)} true pairs, precision {precision:.3f} recall {recall:.3f}")
    assert len(truth) >= 15  # the near copies (20) are the ground truth, give or take one
    assert recall >= 0.9 and precision >= 0.9
    # one document per cluster survives, the rest are counted as removed, input order is kept
    assert result.removed == len({c for c in result.clusters.values()}) and result.removed >= 15
    assert len(result.kept) + result.removed == len(texts)
    kept_ids = [d.id for d in result.kept]
    assert kept_ids == [i for i in ids if i in set(kept_ids)]
    assert not set(kept_ids) & set(result.removed_ids)


def test_distinct_documents_all_kept_and_disabled_passes_through(planted):
    texts, _ = planted
    docs = [Document(text=t, id=str(i), metadata={"source": "x"}) for i, t in enumerate(texts[:40])]
    result = fuzzy_dedup(docs, FuzzyDedupConfig())
    assert result.removed == 0 and result.kept == docs
    assert fuzzy_dedup(docs + docs[:3], FuzzyDedupConfig(enabled=False)).removed == 0


def test_exact_copies_removed_whatever_their_ids(planted):
    texts, _ = planted
    # duplicate ids are allowed: the result maps back by position
    records = [("a", texts[0]), ("a", texts[0]), ("b", texts[1]), ("c", texts[0])]
    result = fuzzy_dedup(records, FuzzyDedupConfig())
    assert [d.text for d in result.kept] == [texts[0], texts[1]]
    assert result.removed == 2


def _datatrove_executor_dedup(texts: list[str], config: FuzzyDedupConfig, work) -> tuple[list[int], dict[int, int]]:
    """datatrove's MinHash pipeline as its examples run it, four `LocalPipelineExecutor`s (the stage's way until
    it ran the same steps in-process): (positions kept, {position: cluster id})."""
    import json

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.writers import JsonlWriter

    from factory.curate.words import word_splitter

    mh = config.minhash_config()

    def docs(_data, rank: int = 0, world_size: int = 1):
        yield from (Document(text=t, id=str(i)) for i, t in enumerate(texts))

    def positions(_data, rank: int = 0, world_size: int = 1):
        yield from (Document(text="", id=str(i)) for i in range(len(texts)))

    for pipeline, tasks in (
        ([docs, MinhashDedupSignature(str(work / "sigs"), config=mh, language=word_splitter(config.language))], 1),
        ([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=mh)], mh.num_buckets),
        ([MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=mh, save_cluster_id=True)], 1),
        ([positions, MinhashDedupFilter(str(work / "remove"), load_cluster_ids=True,
                                        exclusion_writer=JsonlWriter(str(work / "removed"), compression=None)),
          JsonlWriter(str(work / "kept"), compression=None)], 1),
    ):
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=str(work / f"logs{len(pipeline)}{tasks}")).run()
    rows = {name: [json.loads(line) for p in sorted((work / name).glob("*.jsonl")) for line in p.open()]
            for name in ("kept", "removed")}
    clusters = {int(r["id"]): r["metadata"]["minhash_cluster_id"] for r in rows["kept"] + rows["removed"]
                if r["metadata"]["minhash_cluster_id"] >= 0}
    return sorted(int(r["id"]) for r in rows["kept"]), clusters


@pytest.mark.parametrize("workers", [1, 2])
def test_same_result_as_datatrove_executors(planted, tmp_path, workers):
    texts, _ = planted
    texts = texts[:300]
    config = FuzzyDedupConfig(workers=workers)
    kept, clusters = _datatrove_executor_dedup(texts, config, tmp_path / "reference")
    result = fuzzy_dedup([(str(i), t) for i, t in enumerate(texts)], config, scratch=tmp_path / "minhash")
    assert [int(d.id) for d in result.kept] == kept
    assert {int(k): v for k, v in result.clusters.items()} == clusters and len(clusters) >= 10
