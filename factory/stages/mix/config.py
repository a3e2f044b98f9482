"""The mix stage's settings: clustering, the proxy runs, the mixture search and the two blend phases."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from factory.embedding import EmbeddingConfig
from factory.model import ModelSpec
from factory.stage import StageConfig, no_effect
from factory.tiers import N_TIERS

__all__ = ["Config", "ProxyConfig"]


class ProxyConfig(StageConfig):
    """One proxy run: a short training run of a small model on a candidate mixture (CLIMB's proxy models).

    Proxies read UTF-8 bytes (a 257-symbol vocabulary: 256 bytes and end-of-document), so the search needs no
    tokenizer and its scores are losses per byte of the target text.
    """

    model: ModelSpec = Field(default_factory=ModelSpec, description="Proxy model preset and overrides (the tiny preset).")
    steps: int = Field(40, gt=0, description="Optimizer steps per proxy run.")
    seq_len: int = Field(64, gt=0, description="Bytes per training window.")
    micro_batch_size: int = Field(8, gt=0, description="Windows per step.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate (warmup-stable-decay).")
    warmup_steps: int = Field(4, ge=0, description="Steps of linear warmup.")
    eval_windows: int = Field(64, gt=0, description="Most target-validation windows a proxy is scored on.")


class Config(StageConfig):
    """CLIMB mixture search and two-phase blends. Defaults fit the smoke corpus; the proxy runs are tiny."""

    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig, description="The sentence-embedding model.")
    clusters: int = Field(16, ge=2, description="k-means clusters (K) over the document embeddings.")
    kmeans_iterations: int = Field(25, ge=1, description="k-means iterations (faiss).")
    prune_below_tier: float = Field(
        1.0, ge=0, le=N_TIERS - 1,
        description="A cluster whose documents' mean quality_tier (0 worst .. 4 best) is below this is pruned; "
                    "documents without a tier count as the middle tier.")
    super_clusters: int = Field(4, ge=1, description="Kept clusters are merged (by centroid) into this many super-clusters.")
    target: str | None = Field(
        None, json_schema_extra={"external_input": True},
        description="Target validation text the search minimises loss on: a corpus folder (documents/*.jsonl.gz), a "
                    ".jsonl(.gz) file of {\"text\"} records or a .txt file. None: a held-out share of the corpus' "
                    "highest-quality tier.")
    target_fraction: float = Field(
        0.2, gt=0, lt=1, description="Without `target`: the share of the top tier's documents held out as the target set.")
    rounds: int = Field(3, ge=1, description="Search rounds.")
    proxies_per_round: int = Field(8, ge=2, description="Proxy runs per round.")
    candidates_per_round: int = Field(
        4096, ge=1, description="Dirichlet samples the predictor scores to pick each later round's proxies.")
    concentration: float = Field(
        8.0, gt=0, description="Dirichlet concentration around the token-count prior (alpha = concentration x prior; "
                               "larger stays closer to the prior).")
    min_prior: float = Field(0.02, gt=0, lt=1, description="Floor of each dataset's prior share, so no dataset is never sampled.")
    max_upsample: float = Field(
        4.0, ge=1, description="No mixture or blend phase gives a dataset more than this many times its prior (token) "
                               "share, so a small cluster is not repeated for many epochs.")
    proxy: ProxyConfig = Field(default_factory=ProxyConfig, description="The proxy runs.")
    predictor_trees: int = Field(200, ge=1, description="Boosting rounds of the LightGBM predictor.")
    predictor_folds: int = Field(5, ge=2, description="Folds of the held-out (out-of-fold) predictions its Spearman is measured on.")
    phase2_fraction: float = Field(
        0.3, gt=0, lt=1, description="Share of the run's tokens in phase 2 (high quality), after two-phase pretraining.")
    phase1_diversity: float = Field(
        0.3, ge=0, le=1, description="Phase 1 (diverse) mixes the searched mixture with the uniform blend by this share.")
    phase2_sharpness: float = Field(
        1.0, ge=0, description="Phase 2 (high quality: datasets at or above the mixture's mean tier) weights a dataset "
                               "by mixture weight x exp(sharpness x (tier - mean tier)).")
    min_weight: float = Field(0.005, ge=0, lt=1, description="Weights below this are dropped from a phase (a blend weight must be > 0).")
    seed: int = Field(0, description="Seed of k-means, the Dirichlet samples, the target split and the proxy runs.")
    workers: int = no_effect(2, "Processes that train proxies at once in the process pool (each on one thread; results do "
                                "not depend on it).")
    proxy_runner: Literal["auto", "pool", "parallel_for"] = no_effect(
        "auto", "Where proxies train in a pipeline. pool: inside the one mix task, in a process pool of `workers`. "
                "parallel_for: as pipeline tasks, a KFP ParallelFor per round with each proxy its own pod "
                "(resources.<step>), planned and collected by tasks of their own (factory.fanout.mix). auto: "
                "parallel_for in a compiled pipeline (`factory compile`, `submit`), pool under `factory run`. "
                "`factory step` always uses the pool. Results are identical either way.")
    proxy_pods: int | None = Field(
        None, ge=1, json_schema_extra={"affects_result": False},
        description="With the parallel_for runner: most proxy pods of a round running at once (the ParallelFor's "
                    "parallelism); None runs the whole round at once.")
    max_error_fraction: float = Field(
        0.01, ge=0.0, le=1.0, description="Largest share of damaged corpus lines skipped and counted; past it the step fails.")

    def fan_out(self, local: bool) -> tuple[int, int | None] | None:
        """(rounds, proxy pods at once) when this step runs as pipeline tasks (`factory.fanout.mix`): its proxies a
        KFP ParallelFor per round. None when it runs as one task, its proxies in the process pool. `local`: the
        pipeline is built for `factory run` (kfp.local), where auto means the pool."""
        if self.proxy_runner == "parallel_for" or (self.proxy_runner == "auto" and not local):
            return self.rounds, self.proxy_pods
        return None

    @model_validator(mode="after")
    def _fits(self) -> Config:
        if self.super_clusters > self.clusters:
            raise ValueError(f"super_clusters ({self.super_clusters}) must not exceed clusters ({self.clusters})")
        n = self.rounds * self.proxies_per_round
        folds = min(self.predictor_folds, n)
        if n - -(-n // folds) < 2:  # the smallest training fold of the held-out predictions, n - ceil(n / folds)
            raise ValueError(f"{n} proxies ({self.rounds} rounds x {self.proxies_per_round}) in {folds} folds leave a "
                             "predictor fold fewer than 2 proxies to fit on; raise rounds or proxies_per_round")
        return self
