"""The mix stage's `run`: cluster the corpus, search the mixture with proxy models, derive two blend phases.

`run` does it all in one process, its proxies in a process pool; `finish` is its second half (search, then write),
which the last of a fanned-out step's pipeline tasks calls with the losses its proxy pods measured
(`factory.fanout.mix`).

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
    from factory.stages.mix import stage
    stage.run(stage.Config(), {"corpus": Artifact(corpus_dir, manifest)}, out_dir, StepContext("mix"))
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from factory.documents import write_parts
from factory.errors import InputError
from factory.stage import Artifact, StepContext
from factory.stages.mix.config import Config
from factory.stages.mix.phases import entropy, two_phase
from factory.stages.mix.plots import plot_predicted, plot_weights
from factory.stages.mix.prepare import SYNTHETIC, Prepared, corpus_records, prepare
from factory.stages.mix.proxy_runs import ProxyJob, ProxyPool
from factory.stages.mix.climb import SearchResult, search

# train(weights (k, D), round) -> the k measured target losses
Train = Callable[[np.ndarray, int], Sequence[float]]


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Cluster, prune and merge the corpus; search the mixture, its proxies in a process pool; write the annotated
    corpus and its blend. (On a cluster the same work runs as pipeline tasks, `factory.fanout.mix`, ending in `finish`.)"""
    scratch = Path(tempfile.mkdtemp(prefix="mix-", dir=ctx.scratch))
    try:
        prepared = prepare(config, inputs, scratch, ctx.log)
        with ProxyPool(config.workers) as pool:
            return finish(config, inputs, output, ctx, prepared,
                          lambda weights, r: pool.run(proxy_jobs(scratch, prepared, config, weights, r)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def proxy_jobs(folder: Path, prepared: Prepared, config: Config, weights: np.ndarray, r: int) -> list[ProxyJob]:
    """Round r's proxy runs on the streams in `folder`, one per mixture (k, D): each seeded by its round and place."""
    return [ProxyJob(folder, tuple(prepared.names), tuple(float(x) for x in w), config.proxy,
                     seed=config.seed * 1_000_003 + r * 1000 + i) for i, w in enumerate(weights)]


def finish(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext, prepared: Prepared,
           train: Train) -> dict[str, float]:
    """Search the mixture with `train` (proxies trained now, or losses the pipeline's proxy tasks measured), then
    write the annotated corpus, the blend, the search record and its plots into `output`."""
    records = corpus_records(inputs, config)
    if len(records) != len(prepared.assignment):
        raise InputError(f"{inputs['corpus'].path}: {len(records)} documents, but the mix was prepared for "
                         f"{len(prepared.assignment)}; the corpus changed under the step")
    ctx.log_dataset(name="corpus", uri=inputs["corpus"].uri, digest=inputs["corpus"].fingerprint, context="training",
                    profile={"documents": len(records)})
    ctx.log_dataset(name="target", uri=config.target or f"{inputs['corpus'].uri}#top-tier-held-out",
                    digest=prepared.target_digest, context="validation", profile={"documents": prepared.target_documents})
    names, prior, sizes = prepared.names, np.array(prepared.prior), prepared.sizes

    def on_round(r: int, weights: np.ndarray, losses: np.ndarray) -> None:
        ctx.log.info("mix_round", round=r, proxies=len(losses), best_loss=float(losses.min()), mean_loss=float(losses.mean()))
        ctx.log_metrics({"round_best_loss": float(losses.min()), "round_mean_loss": float(losses.mean())}, step=r)

    result: SearchResult = search(prior, train, config, on_round)
    weights = result.weights / result.weights.sum()
    phases = two_phase(weights, np.array(prepared.stream_tiers), names, config.phase2_fraction, config.phase1_diversity,
                       config.phase2_sharpness, config.min_weight, caps=config.max_upsample * prior)

    doc_super = prepared.doc_super()

    # Publish: the annotated documents, the blend, the search record and its plots.
    def annotated():
        for r, c, s in zip(records, prepared.assignment, doc_super):
            meta = dict(r.get("metadata") or {})
            meta.update(cluster=int(c), super_cluster=s, mix_dataset=None if s is None else names[s])
            yield {**r, "metadata": meta}

    write_parts(annotated(), output / "documents", per_part=10_000)
    (output / "blend.json").write_text(json.dumps(phases, indent=2) + "\n")
    datasets = {}
    for i, name in enumerate(names):
        members = sorted(c for c, s in prepared.super_of.items() if s == i) if name != SYNTHETIC else []
        datasets[name] = {"clusters": members, "documents": prepared.documents[name], "bytes": sizes[name],
                          "mean_tier": round(float(prepared.stream_tiers[i]), 4), "prior": round(float(prior[i]), 6),
                          "weight": round(float(weights[i]), 6)}
    prior_loss = float(result.losses[0])  # round 1's first proxy trains on the prior
    summary = {
        "datasets": datasets,
        "pruned_clusters": {str(c): round(float(prepared.mean_tier[c]), 4) for c in prepared.pruned},
        "cluster_mean_tier": [round(float(t), 4) for t in prepared.mean_tier],
        "target": {"documents": prepared.target_documents, "bytes": sizes["target"], "source": config.target or "held-out top tier"},
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
        "clusters_kept": len(prepared.kept),
        "clusters_pruned": len(prepared.pruned),
        "documents_pruned": sum(s is None for s in doc_super),
        "super_clusters": len(set(prepared.super_of.values())),
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


def _finite(x: float) -> float | None:
    """`x`, or None (JSON null) when it is NaN: a Spearman correlation of constant predictions is undefined."""
    return None if np.isnan(x) else x
