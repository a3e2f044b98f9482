"""Data mixing after CLIMB, two-phase pretraining and Prismatic Synthesis.

The `mix` stage (`factory.stages.mix.stage`, one entry in `factory.kinds.KINDS`, between synth and tokenize):

- `clusters`: embed every document with the packaged MiniLM (`factory.embedding`), k-means (faiss) into K
  clusters, prune the clusters whose documents sit in low quality tiers, merge the rest into super-clusters;
- `proxy` and `search`: iterative mixture search: each round samples mixture weights from a Dirichlet around
  the token-count prior, trains tiny proxy models on them (in a process pool, or as a KFP ParallelFor of pods:
  `factory.fanout.mix`), scores them on the target validation set and fits a LightGBM predictor that picks the next
  round's candidates;
- `prepare`: the target set, clusters and byte streams the search trains on, saved so another process can load them;
- `phases`: the searched mixture split into two blend phases (diverse, then high quality), which tokenize
  carries to pretrain as its `blend`;
- `plots`: weights per round and the predictor's predicted against actual loss.

In a spec, between curate (and synth) and tokenize; pretrain then trains on its blend:

    stages:
      mix: {clusters: 16, super_clusters: 4, rounds: 3, target: data/target.jsonl}
"""

from factory.lazy import lazy_exports
from factory.stages.mix.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.mix.stage"})

__all__ = ["Config", "run"]
