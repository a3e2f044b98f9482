"""The mix stage's `run`: cluster the corpus, search the mixture with proxy models, derive two blend phases.

Input "corpus" (a curate artifact, `metadata.quality_tier` on its documents); optional input "synthetic" (a
synth artifact), which joins the search as one more dataset, "synthetic" (tokenize writes it from its own
synthetic input). Output, a corpus artifact that tokenize reads:

    documents/part-*.jsonl.gz   the corpus' documents, each with metadata.cluster (k-means), metadata.super_cluster
                                and metadata.mix_dataset ("cluster-NN", the token dataset tokenize writes it to;
                                null when its cluster was pruned)
    blend.json                  the blend phases pretrain trains on (`factory.train.config.BlendPhase` fields):
                                phase 1 diverse, phase 2 high quality
    mixture.json                datasets (clusters, documents, bytes, mean tier, prior, searched weight), pruned
                                clusters, every proxy (round, weights, measured and held-out predicted loss),
                                the predictor's Spearman correlations
    weights.png, predicted.png  weights per round; predicted against measured loss

    from factory.stage import Artifact, StepContext
    from factory.mix import stage
    stage.run(stage.Config(), {"corpus": Artifact(corpus_dir, manifest)}, out_dir, StepContext("mix"))
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from factory.artifacts import Corpus
from factory.documents import read_records, write_parts
from factory.errors import InputError
from factory.mix.clusters import MIDDLE_TIER, cluster_tiers, kmeans, merge
from factory.mix.config import Config
from factory.mix.phases import entropy, two_phase
from factory.mix.plots import plot_predicted, plot_weights
from factory.mix.proxy import ByteWindows, ProxyJob, ProxyPool, write_streams
from factory.mix.search import search
from factory.stage import Artifact, StepContext
from factory.tiers import TIERS

__all__ = ["Config", "KIND", "run", "dataset_name"]

KIND = "corpus"
SYNTHETIC = "synthetic"


def dataset_name(super_cluster: int) -> str:
    """The token dataset of a super-cluster, as tokenize writes it and pretrain's blend names it."""
    return f"cluster-{super_cluster:02d}"


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Cluster, prune and merge the corpus; search the mixture; write the annotated corpus and its blend."""
    from factory.embedding import embed

    corpus = Corpus.of(inputs, "corpus")
    records = _records(corpus.files(), config, "mix: corpus")
    if not records:
        raise InputError(f"{corpus.path / 'documents'}: no documents (expected *.jsonl.gz files of {{\"id\", \"text\"}} records)")
    tiers = [_tier(r) for r in records]
    ctx.log_dataset(name="corpus", uri=inputs["corpus"].uri, digest=inputs["corpus"].fingerprint, context="training",
                    profile={"documents": len(records)})

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

    digest = hashlib.sha256("\x1e".join(target_texts).encode("utf-8")).hexdigest()
    ctx.log_dataset(name="target", uri=config.target or f"{inputs['corpus'].uri}#top-tier-held-out", digest=digest,
                    context="validation", profile={"documents": len(target_texts)})

    # Embed, cluster, prune by quality, merge.
    ctx.log.info("mix_embed", documents=len(records), model=config.embedding.model)
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
    ctx.log.info("mix_clusters", clusters=config.clusters, pruned=len(pruned), super_clusters=n_super,
                 pruned_documents=sum(s is None for s in doc_super))

    # Datasets of the search: each super-cluster's bytes (minus the target's documents), synthetic, the target.
    scratch = Path(tempfile.mkdtemp(prefix="mix-", dir=ctx.scratch))
    try:
        streams = {name: [r["text"] for r, s, h in zip(records, doc_super, held) if s == i and not h]
                   for i, name in enumerate(names)}
        stream_tiers = [np.mean([_tier_value(t) for t, s, h in zip(tiers, doc_super, held) if s == i and not h] or [MIDDLE_TIER])
                        for i in range(n_super)]
        if inputs.get("synthetic") is not None:
            synthetic = _records(Corpus.of(inputs, "synthetic").files(), config, "mix: synthetic corpus")
            streams[SYNTHETIC] = [r["text"] for r in synthetic]
            stream_tiers.append(float(np.mean([_tier_value(_tier(r)) for r in synthetic] or [MIDDLE_TIER])))
            names.append(SYNTHETIC)
        sizes = write_streams({**streams, "target": target_texts}, scratch)
        for name in [*names, "target"]:
            if len(ByteWindows(scratch / f"{name}.npy", config.proxy.seq_len)) == 0:
                where = "mix.target" if name == "target" else f"dataset {name}"
                raise InputError(f"{where}: {sizes[name]} bytes, fewer than one proxy window of proxy.seq_len + 1 = "
                                 f"{config.proxy.seq_len + 1}; lower mix.proxy.seq_len or give more text")
        prior = np.array([sizes[n] for n in names], dtype=np.float64)
        prior = np.maximum(prior / prior.sum(), config.min_prior)
        prior /= prior.sum()

        with ProxyPool(config.workers) as pool:
            def train(weights: np.ndarray, r: int) -> list[float]:
                jobs = [ProxyJob(scratch, tuple(names), tuple(float(x) for x in w), config.proxy,
                                 seed=config.seed * 1_000_003 + r * 1000 + i) for i, w in enumerate(weights)]
                return pool.run(jobs)

            def on_round(r: int, weights: np.ndarray, losses: np.ndarray) -> None:
                ctx.log.info("mix_round", round=r, proxies=len(losses), best_loss=float(losses.min()),
                             mean_loss=float(losses.mean()))
                ctx.log_metrics({"round_best_loss": float(losses.min()), "round_mean_loss": float(losses.mean())}, step=r)

            result = search(prior, train, config, on_round)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    weights = result.weights / result.weights.sum()
    phases = two_phase(weights, np.array(stream_tiers), names, config.phase2_fraction, config.phase1_diversity,
                       config.phase2_sharpness, config.min_weight, caps=config.max_upsample * prior)

    # Publish: the annotated documents, the blend, the search record and its plots.
    def annotated():
        for r, c, s in zip(records, assignment.tolist(), doc_super):
            meta = dict(r.get("metadata") or {})
            meta.update(cluster=int(c), super_cluster=s, mix_dataset=None if s is None else names[s])
            yield {**r, "metadata": meta}

    write_parts(annotated(), output / "documents", per_part=10_000)
    (output / "blend.json").write_text(json.dumps(phases, indent=2) + "\n")
    datasets = {}
    for i, name in enumerate(names):
        members = sorted(c for c, s in super_of.items() if s == i) if name != SYNTHETIC else []
        datasets[name] = {"clusters": members, "documents": len(streams[name]), "bytes": sizes[name],
                          "mean_tier": round(float(stream_tiers[i]), 4), "prior": round(float(prior[i]), 6),
                          "weight": round(float(weights[i]), 6)}
    prior_loss = float(result.losses[0])  # round 1's first proxy trains on the prior
    summary = {
        "datasets": datasets,
        "pruned_clusters": {str(c): round(float(mean_tier[c]), 4) for c in pruned},
        "cluster_mean_tier": [round(float(t), 4) for t in mean_tier],
        "target": {"documents": len(target_texts), "bytes": sizes["target"], "source": config.target or "held-out top tier"},
        "proxies": [{"round": int(r), "weights": dict(zip(names, np.round(w, 6).tolist())), "loss": round(float(y), 6),
                     "predicted_held_out": round(float(p), 6)}
                    for r, w, y, p in zip(result.rounds, result.proxies, result.losses, result.predicted)],
        "searched": {"proxy": result.best, "loss": float(result.losses[result.best]), "prior_loss": prior_loss},
        "predictor": {"spearman_held_out": _finite(result.spearman),
                      "spearman_next_round": [_finite(x) for x in result.next_round_spearman]},
        "blend": phases,
    }
    (output / "mixture.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_weights(output / "weights.png", names, result.proxies, result.rounds, prior, weights)
    plot_predicted(output / "predicted.png", result.losses, result.predicted, result.rounds, result.spearman)
    for name in ("weights.png", "predicted.png", "mixture.json", "blend.json"):
        ctx.log_artifact(output / name)

    metrics = {
        "documents": len(records),
        "clusters_kept": len(kept),
        "clusters_pruned": len(pruned),
        "documents_pruned": sum(s is None for s in doc_super),
        "super_clusters": n_super,
        "proxies": len(result.losses),
        "proxy_loss_prior": prior_loss,
        "proxy_loss_searched": float(result.losses[result.best]),
        "phase1_entropy": entropy(np.array(list(phases[0]["weights"].values()))),
        "phase2_entropy": entropy(np.array(list(phases[-1]["weights"].values()))),
    }
    if not np.isnan(result.spearman):
        metrics["predictor_spearman"] = result.spearman
    ctx.log.info("mixed", **metrics)
    return {k: float(v) for k, v in metrics.items()}


def _records(files: list[Path], config: Config, what: str) -> list[dict]:
    """Usable records (a string id and a non-empty text); damaged lines counted against max_error_fraction."""
    skipped: Counter = Counter()
    out = []
    for record in read_records(files, skipped, max_error_fraction=config.max_error_fraction, what=what):
        if isinstance(record, dict) and isinstance(record.get("id"), str) and isinstance(record.get("text"), str) and record["text"]:
            out.append(record)
    return out


def _finite(x: float) -> float | None:
    """`x`, or None (JSON null) when it is NaN: a Spearman correlation of constant predictions is undefined."""
    return None if np.isnan(x) else x


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
