"""Fuzzy deduplication: MinHash LSH through datatrove's four-stage MinHash pipeline.

The stages are datatrove's own steps, run in this process one task after another as datatrove's executor runs
them (the per-bucket stage through `LocalPipelineExecutor` when `workers` > 1), into a scratch folder:

1. `MinhashDedupSignature`: word n-gram shingles of normalised text -> `num_buckets x hashes_per_bucket`
   minhashes per document, one sorted signature file per bucket.
2. `MinhashDedupBuckets`: documents whose signatures agree on every hash of one bucket are a candidate pair
   (one task per bucket).
3. `MinhashDedupCluster`: union-find over the pairs; all but one document per cluster is marked for removal.
4. `MinhashDedupFilter`: drops the marked documents.

A pair with shingle-set Jaccard similarity `s` becomes a candidate with probability
`1 - (1 - s**hashes_per_bucket) ** num_buckets` (the LSH S-curve, steepest near
`(1 / num_buckets) ** (1 / hashes_per_bucket)`, about 0.72 for the default 14 x 8).

    from factory.curate.dedup import FuzzyDedupConfig, fuzzy_dedup
    result = fuzzy_dedup(docs, FuzzyDedupConfig(), scratch=Path("scratch"))
    result.kept, result.removed
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from datatrove.data import Document
from pydantic import Field

from factory.curate.dedup import Record, as_documents
from factory.logs import get_logger
from factory.stage import StageConfig, no_effect

if TYPE_CHECKING:
    from datatrove.pipeline.dedup.minhash import MinhashConfig

log = get_logger("factory.curate.dedup.fuzzy")


class FuzzyDedupConfig(StageConfig):
    """MinHash LSH near-duplicate removal (datatrove's `MinhashConfig` plus how to run it)."""

    enabled: bool = Field(True, description="Run fuzzy deduplication at all.")
    n_grams: int = Field(5, ge=1, description="Words per shingle (word n-gram size) after text normalisation.")
    num_buckets: int = Field(14, ge=1, description="LSH bands: a pair is a candidate if any band matches.")
    hashes_per_bucket: int = Field(8, ge=1, description="Minhashes per band; all must agree for the band to match.")
    seed: int = Field(1, description="Seed of the minhash permutations.")
    hash_function: Literal["xxhash", "sha1"] = Field("xxhash", description="Hash of a shingle before permutation.")
    hash_precision: Literal[32, 64] = Field(64, description="Bits per minhash (32 halves signature size, more collisions).")
    language: str = Field("en", description="Language of datatrove's word tokenizer used to cut shingles.")
    workers: int = no_effect(1, "Processes for the per-bucket stage (1 runs in-process).")

    def minhash_config(self) -> MinhashConfig:
        # datatrove's executor and minhash modules take ~0.25 s to import; a config that is only read
        # (every KFP step loads the whole spec) should not pay for them
        from datatrove.pipeline.dedup.minhash import MinhashConfig
        from datatrove.utils.hashing import HashConfig

        return MinhashConfig(
            n_grams=self.n_grams,
            num_buckets=self.num_buckets,
            hashes_per_bucket=self.hashes_per_bucket,
            seed=self.seed,
            hash_config=HashConfig(precision=self.hash_precision, hash_fc=self.hash_function),
        )

    @property
    def threshold(self) -> float:
        """Jaccard similarity where the LSH S-curve is steepest: roughly where duplicates start to be caught."""
        return (1 / self.num_buckets) ** (1 / self.hashes_per_bucket)


@dataclass
class FuzzyDedupResult:
    """What fuzzy dedup kept, what it dropped, and the duplicate clusters it found."""

    kept: list[Document]
    removed_ids: list[str]
    # doc id -> MinHash cluster id, for every document in a cluster of two or more (kept and removed)
    clusters: dict[str, int] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return len(self.removed_ids)


def fuzzy_dedup(records: Iterable[Record], config: FuzzyDedupConfig, scratch: Path | None = None) -> FuzzyDedupResult:
    """Remove near-duplicates from `records`, keeping one document per MinHash cluster, in input order.

    `scratch` is a folder for datatrove's signature, bucket and cluster files (a temporary folder when None);
    it must be empty or absent, since datatrove skips work it finds already done there.
    """
    docs = as_documents(records)
    if not config.enabled or len(docs) < 2:
        return FuzzyDedupResult(kept=docs, removed_ids=[])
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="minhash-") as tmp:
            return _run(docs, config, Path(tmp))
    scratch.mkdir(parents=True, exist_ok=True)
    return _run(docs, config, scratch)


def _run(docs: list[Document], config: FuzzyDedupConfig, work: Path) -> FuzzyDedupResult:
    from datatrove.utils.logging import logger, setup_default_logger  # datatrove: see minhash_config

    # datatrove logs every step to stderr (loguru); keep that in the scratch folder instead, so the stage's own
    # log stays one structured event per line (one sink for the whole run: datatrove's executor adds two per task)
    with open(work / "datatrove.log", "a") as sink, contextlib.redirect_stderr(sink):
        logger.remove()
        logger.add(sink, level="INFO", colorize=False)
        try:
            kept_pos, positions = _steps(docs, config, work)
        finally:
            logger.remove()
    setup_default_logger()  # datatrove's own stderr sink back, as its executor leaves it

    kept = set(kept_pos)
    removed_pos = [i for i in range(len(docs)) if i not in kept]
    clusters = {
        docs[i].id: int(d.metadata["minhash_cluster_id"])
        for i, d in enumerate(positions)
        if d.metadata.get("minhash_cluster_id", -1) >= 0
    }
    result = FuzzyDedupResult(kept=[docs[i] for i in kept_pos], removed_ids=[docs[i].id for i in removed_pos], clusters=clusters)
    log.info("fuzzy_dedup", documents=len(docs), removed=result.removed, clusters=len(set(clusters.values())))
    return result


def _steps(docs: list[Document], config: FuzzyDedupConfig, work: Path) -> tuple[list[int], list[Document]]:
    """datatrove's four MinHash steps over `docs`: (positions kept, in order; one document per position, with
    its `minhash_cluster_id`).

    The steps run here, in this process, as datatrove's executor runs them one task at a time (the same step,
    rank and world size, so the same files and decisions), not through `LocalPipelineExecutor`, whose manager
    process and per-task log sinks cost more than the steps on a corpus of a few thousand pages; the per-bucket
    step goes through it when `workers` > 1. Documents carry their position as id, so the result maps back to
    the input whatever the caller's ids are (they need not be unique).
    """
    from datatrove.executor import LocalPipelineExecutor  # datatrove: see minhash_config
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )

    # same words as datatrove's spaCy split, cached per chunk; spaCy takes seconds to import (see minhash_config)
    from factory.curate.words import word_splitter

    minhash = config.minhash_config()
    signatures = MinhashDedupSignature(output_folder=str(work / "signatures"), config=minhash,
                                       language=word_splitter(config.language))
    _drain(signatures(Document(text=doc.text, id=str(i)) for i, doc in enumerate(docs)))

    def buckets() -> MinhashDedupBuckets:
        return MinhashDedupBuckets(input_folder=str(work / "signatures"), output_folder=str(work / "buckets"), config=minhash)

    if config.workers > 1:
        LocalPipelineExecutor([buckets()], tasks=config.num_buckets, workers=config.workers,
                              logging_dir=str(work / "logs/buckets")).run()
    else:
        for bucket in range(config.num_buckets):  # one task per band, as datatrove wants
            _drain(buckets()(None, bucket, config.num_buckets))
    _drain(MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=minhash,
                               save_cluster_id=True)())
    positions = [Document(text="", id=str(i)) for i in range(len(docs))]  # the filter needs only the order
    kept = MinhashDedupFilter(input_folder=str(work / "remove"), load_cluster_ids=True)(iter(positions))
    return [int(d.id) for d in kept], positions


def _drain(steps_output) -> None:
    """Run a datatrove step's generator to its end (what the executor does with a pipeline's output)."""
    if steps_output is not None:
        deque(steps_output, maxlen=0)
