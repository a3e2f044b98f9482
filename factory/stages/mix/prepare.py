"""What the mixture search needs before its first proxy: the target set, clusters, the datasets' byte streams, the prior.

`prepare` reads the corpus (and the optional synthetic corpus), holds out or reads the target set, embeds and
clusters the documents, prunes and merges clusters, and writes one byte stream per dataset plus the target into
a folder (`factory.stages.mix.proxy_runs.write_streams`). What it decided goes into `prepared.json` beside the streams, so
the folder alone lets any process train a proxy, and the stage's last part write its corpus, blend and record:

    prepared = prepare(config, inputs, folder, log)     # folder/NAME.npy, folder/target.npy, folder/prepared.json
    prepared = Prepared.load(folder)                    # the same, in another process or pod
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factory.artifacts import Corpus
from factory.documents import read_records
from factory.embedding import embed
from factory.errors import InputError
from factory.stage import Artifact
from factory.stages.mix.clusters import MIDDLE_TIER, cluster_tiers, kmeans, merge
from factory.stages.mix.config import Config
from factory.stages.mix.proxy_runs import ByteWindows, write_streams
from factory.tiers import TIERS

__all__ = ["PREPARED", "SYNTHETIC", "Prepared", "corpus_records", "dataset_name", "prepare"]

SYNTHETIC = "synthetic"
PREPARED = "prepared.json"


def dataset_name(super_cluster: int) -> str:
    """The token dataset of a super-cluster, as tokenize writes it and pretrain's blend names it."""
    return f"cluster-{super_cluster:02d}"


@dataclass(frozen=True)
class Prepared:
    """The search's datasets and the clustering behind them; JSON in `prepared.json` (floats round-trip exactly)."""

    names: list[str]  # the datasets, in the order of every weight vector: super-clusters, then "synthetic"
    prior: list[float]  # (D,) token-count prior, floored at min_prior
    sizes: dict[str, int]  # symbols per dataset stream, and "target"
    documents: dict[str, int]  # training documents per dataset
    stream_tiers: list[float]  # (D,) mean quality tier of each dataset's documents
    assignment: list[int]  # k-means cluster of every corpus record, in corpus order
    super_of: dict[int, int]  # kept cluster -> super-cluster
    mean_tier: list[float]  # (K,) mean quality tier per cluster
    pruned: list[int]  # pruned clusters
    target_documents: int
    target_digest: str  # sha256 of the target texts

    @property
    def kept(self) -> list[int]:
        return sorted(self.super_of)

    def doc_super(self) -> list[int | None]:
        """Each corpus record's super-cluster, None where its cluster was pruned."""
        return [self.super_of.get(c) for c in self.assignment]

    def save(self, folder: Path) -> None:
        (folder / PREPARED).write_text(json.dumps(dataclasses.asdict(self)) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Prepared:
        data = json.loads((folder / PREPARED).read_text())
        data["super_of"] = {int(c): s for c, s in data["super_of"].items()}  # JSON keys are strings
        return cls(**data)


def prepare(config: Config, inputs: Mapping[str, Artifact], folder: Path, log) -> Prepared:
    """Cluster, prune and merge the corpus; write every dataset's byte stream and the target's into `folder`."""
    corpus = Corpus.of(inputs, "corpus")
    records = corpus_records(inputs, config)
    tiers = [_tier(r) for r in records]

    # The target set: given, or a held-out share of the top tier (kept out of every proxy's training data).
    held = np.zeros(len(records), dtype=bool)
    if config.target is not None:
        target_texts = _target_texts(Path(config.target), config)
    else:
        top = max((t for t in tiers if t is not None), default=None)
        members = [i for i, t in enumerate(tiers) if t == top]
        hashes = {i: _unit_hash(config.seed, records[i]["id"]) for i in members}
        chosen = [i for i in members if hashes[i] < config.target_fraction] or [min(members, key=hashes.get)]
        if len(chosen) == len(records):
            raise InputError(f"{corpus.path}: {len(records)} document(s), all held out as the target set; give more "
                             "documents or a `target` file (mix.target)")
        held[chosen] = True
        target_texts = [records[i]["text"] for i in chosen]

    # Embed, cluster, prune by quality, merge.
    log.info("mix_embed", documents=len(records), model=config.embedding.model)
    vectors = embed([r["text"] for r in records], config.embedding)  # (n, 384) unit rows
    assignment, centroids = kmeans(vectors, config.clusters, config.kmeans_iterations, config.seed)
    mean_tier = cluster_tiers(assignment, tiers, config.clusters)  # (K,)
    kept = [c for c in range(config.clusters) if mean_tier[c] >= config.prune_below_tier]
    pruned = [c for c in range(config.clusters) if c not in kept]
    if not kept:
        raise InputError(f"mix.prune_below_tier: every cluster's mean quality tier is below {config.prune_below_tier} "
                         f"(highest {mean_tier.max():.2f}); lower it")
    super_of = merge(centroids, kept, config.super_clusters)
    n_super = len(set(super_of.values()))
    names = [dataset_name(s) for s in range(n_super)]
    doc_super = [super_of.get(int(c)) for c in assignment]
    log.info("mix_clusters", clusters=config.clusters, pruned=len(pruned), super_clusters=n_super,
             pruned_documents=sum(s is None for s in doc_super))

    # Datasets of the search: each super-cluster's bytes (minus the target's documents), synthetic, the target.
    streams = {name: [r["text"] for r, s, h in zip(records, doc_super, held) if s == i and not h]
               for i, name in enumerate(names)}
    stream_tiers = [float(np.mean([_tier_value(t) for t, s, h in zip(tiers, doc_super, held) if s == i and not h] or [MIDDLE_TIER]))
                    for i in range(n_super)]
    if inputs.get("synthetic") is not None:
        synthetic = _records(Corpus.of(inputs, "synthetic").files(), config, "mix: synthetic corpus")
        streams[SYNTHETIC] = [r["text"] for r in synthetic]
        stream_tiers.append(float(np.mean([_tier_value(_tier(r)) for r in synthetic] or [MIDDLE_TIER])))
        names.append(SYNTHETIC)
    sizes = write_streams({**streams, "target": target_texts}, folder)
    for name in [*names, "target"]:
        if len(ByteWindows(folder / f"{name}.npy", config.proxy.seq_len)) == 0:
            where = "mix.target" if name == "target" else f"dataset {name}"
            raise InputError(f"{where}: {sizes[name]} bytes, fewer than one proxy window of proxy.seq_len + 1 = "
                             f"{config.proxy.seq_len + 1}; lower mix.proxy.seq_len or give more text")
    prior = np.array([sizes[n] for n in names], dtype=np.float64)
    prior = np.maximum(prior / prior.sum(), config.min_prior)
    prior /= prior.sum()
    prepared = Prepared(
        names=names, prior=prior.tolist(), sizes=sizes, documents={n: len(streams[n]) for n in names},
        stream_tiers=stream_tiers, assignment=[int(c) for c in assignment],
        super_of={int(c): int(s) for c, s in super_of.items()}, mean_tier=[float(t) for t in mean_tier], pruned=pruned,
        target_documents=len(target_texts),
        target_digest=hashlib.sha256("\x1e".join(target_texts).encode("utf-8")).hexdigest())
    prepared.save(folder)
    return prepared


def corpus_records(inputs: Mapping[str, Artifact], config: Config) -> list[dict]:
    """The corpus input's usable records, in order; an InputError when there are none."""
    corpus = Corpus.of(inputs, "corpus")
    records = _records(corpus.files(), config, "mix: corpus")
    if not records:
        raise InputError(f"{corpus.path / 'documents'}: no documents (expected *.jsonl.gz files of {{\"id\", \"text\"}} records)")
    return records


def _records(files: list[Path], config: Config, what: str) -> list[dict]:
    """Usable records (a string id and a non-empty text); damaged lines counted against max_error_fraction."""
    skipped: Counter = Counter()
    out = []
    for record in read_records(files, skipped, max_error_fraction=config.max_error_fraction, what=what):
        if isinstance(record, dict) and isinstance(record.get("id"), str) and isinstance(record.get("text"), str) and record["text"]:
            out.append(record)
    return out


def _unit_hash(seed: int, doc_id: str) -> float:
    """A stable number in [0, 1) per document id (sha256): which top-tier documents form the target set."""
    digest = hashlib.sha256(f"{seed}\x1ftarget\x1f{doc_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _tier(record: dict) -> int | None:
    tier = (record.get("metadata") or {}).get("quality_tier")
    return tier if isinstance(tier, int) and tier in TIERS else None


def _tier_value(tier: int | None) -> float:
    return MIDDLE_TIER if tier is None else float(tier)


def _target_texts(path: Path, config: Config) -> list[str]:
    """Texts of the target set: a corpus folder, a .jsonl(.gz) of {"text"} records, or one .txt document."""
    if path.is_dir():
        files = sorted((path / "documents").glob("*.jsonl.gz"))
        if not files:
            raise InputError(f"mix.target: {path} holds no documents/*.jsonl.gz")
        texts = [r["text"] for r in _records(files, config, f"mix.target {path}")]
    elif path.name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if path.name.endswith(".gz") else open
        texts = []
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                try:
                    record = json.loads(line) if line.strip() else {}
                except json.JSONDecodeError as e:
                    raise InputError(f"mix.target: {path} line {number}: not JSON ({e.msg})") from None
                if isinstance(record, dict) and isinstance(record.get("text"), str) and record["text"]:
                    texts.append(record["text"])
    elif path.suffix == ".txt":
        texts = [path.read_text(encoding="utf-8")]
    else:
        raise InputError(f"mix.target: {path} is neither a corpus folder, a .jsonl(.gz) file nor a .txt file")
    if not texts:
        raise InputError(f"mix.target: {path} holds no text")
    return texts
