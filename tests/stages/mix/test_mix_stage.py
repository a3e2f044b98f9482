"""The mix stage run for real on a small four-domain corpus (factory.data.domains), then tokenize and pretrain on
its blend. The proxies are tiny (a few steps of the tiny preset with attention layers only): these tests check
the search machinery, not CLIMB's claim, which `bench/mix.py` measures."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from factory.stages import tokenize
from factory.data.domains import domain_corpus
from factory.documents import document_files, read_records, write_parts
from factory.embedding import EmbeddingConfig
from factory.errors import InputError
from factory.stages.mix import stage as mix
from factory.stages.mix.config import Config, ProxyConfig
from factory.model import ModelSpec
from factory.stage import Artifact, NullTracker, StepContext
from factory.stages.tokenize.split import unit_hash
from factory.stages import pretrain
from factory.train.config import Blend

PROXY = ProxyConfig(model=ModelSpec(overrides={"pattern": "*-"}), steps=6, seq_len=32, micro_batch_size=4,
                    warmup_steps=1, eval_windows=16)
CONFIG = Config(embedding=EmbeddingConfig(max_tokens=32), clusters=6, super_clusters=3, rounds=3, proxies_per_round=3,
                candidates_per_round=256, proxy=PROXY, predictor_trees=20, predictor_folds=3, workers=2)


def _artifact(path: Path) -> Artifact:
    return Artifact(path, {"fingerprint": "f" * 64, "uri": str(path)})


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    records = domain_corpus(12, chars=300)
    write_parts(records, root / "corpus" / "documents", per_part=20)
    ctx = StepContext("mix", tracker=NullTracker())
    out = root / "mix"
    out.mkdir()
    metrics = mix.run(CONFIG, {"corpus": _artifact(root / "corpus")}, out, ctx)
    return {"root": root, "records": records, "out": out, "metrics": metrics, "ctx": ctx,
            "summary": json.loads((out / "mixture.json").read_text())}


def test_clusters_prune_the_low_tier_and_keep_every_document(mixed):
    docs = list(read_records(document_files(mixed["out"]), Counter()))
    assert [d["id"] for d in docs] == [r["id"] for r in mixed["records"]]  # nothing lost, order kept
    by_domain: dict[str, set] = {}
    for d in docs:
        by_domain.setdefault(d["metadata"]["domain"], set()).add(d["metadata"]["mix_dataset"])
        assert 0 <= d["metadata"]["cluster"] < CONFIG.clusters
    assert by_domain["tables"] == {None}  # tier 0: its clusters are pruned
    # pruning is per cluster: a high-tier document that k-means put among the tables goes with them, but few do
    pruned = [d["metadata"]["domain"] for d in docs if d["metadata"]["mix_dataset"] is None]
    assert pruned.count("tables") == 12 and pruned.count("docs") <= 1
    summary = mixed["summary"]
    assert summary["pruned_clusters"] and all(t < CONFIG.prune_below_tier for t in summary["pruned_clusters"].values())
    assert mixed["metrics"]["documents_pruned"] >= 12
    names = set(summary["datasets"])
    assert names == {f"cluster-{i:02d}" for i in range(int(mixed["metrics"]["super_clusters"]))}
    assert sum(d["documents"] for d in summary["datasets"].values()) + summary["target"]["documents"] \
        == len(docs) - mixed["metrics"]["documents_pruned"]


def test_search_rounds_proxies_and_predictor(mixed):
    summary = mixed["summary"]
    proxies = summary["proxies"]
    assert [p["round"] for p in proxies] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    prior = {n: d["prior"] for n, d in summary["datasets"].items()}
    assert proxies[0]["weights"] == pytest.approx(prior, abs=1e-5)  # round 1 starts at the token-count prior
    losses = [p["loss"] for p in proxies]
    assert all(0 < loss < math.log(257) for loss in losses)  # trained below a uniform guess over bytes
    assert len(set(losses)) == len(losses)  # every proxy trained on its own mixture
    best = summary["searched"]["proxy"]
    assert losses[best] == min(losses)
    weights = {n: d["weight"] for n, d in summary["datasets"].items()}
    assert weights == pytest.approx(proxies[best]["weights"], abs=1e-5)
    assert summary["predictor"]["spearman_held_out"] is None or -1 <= summary["predictor"]["spearman_held_out"] <= 1
    assert len(summary["predictor"]["spearman_next_round"]) == 2
    assert all(np.isfinite(p["predicted_held_out"]) for p in proxies)
    tracker = mixed["ctx"].tracker
    assert {Path(p).name for p in tracker.artifacts} >= {"weights.png", "predicted.png", "mixture.json", "blend.json"}
    assert [step for m, step in tracker.metrics if "round_best_loss" in m] == [1, 2, 3]


def test_two_phase_blend_is_diverse_then_high_quality(mixed):
    phases = json.loads((mixed["out"] / "blend.json").read_text())
    Blend(blend=phases)  # today's blend phases
    assert [p["until_fraction"] for p in phases] == [pytest.approx(1 - CONFIG.phase2_fraction), 1.0]
    datasets = mixed["summary"]["datasets"]
    assert set(phases[0]["weights"]) == set(datasets)  # phase 1 keeps every dataset
    assert set(phases[1]["weights"]) < set(datasets)  # phase 2 only the high-quality ones

    def mean_tier(weights):
        return sum(w * datasets[n]["mean_tier"] for n, w in weights.items())

    assert mean_tier(phases[1]["weights"]) > mean_tier(phases[0]["weights"])


def test_tokenize_writes_one_dataset_per_super_cluster_and_pretrain_trains_on_the_blend(mixed, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    tm = tokenize.run(tokenize.Config(vocab_size=400), {"corpus": _artifact(mixed["out"])}, tokens, StepContext("tokenize"))
    stats = json.loads((tokens / "stats.json").read_text())
    names = set(mixed["summary"]["datasets"])
    assert set(stats["mixture"]) == names and all((tokens / f"{n}.bin").is_file() for n in names)
    assert json.loads((tokens / "blend.json").read_text()) == json.loads((mixed["out"] / "blend.json").read_text())
    # each dataset holds exactly its super-cluster's training documents (pruned clusters' documents are in none)
    docs = list(read_records(document_files(mixed["out"]), Counter()))
    train = [d for d in docs if unit_hash(0, "split", d["id"]) >= 0.1]  # tokenize's held-out rule (seed 0, 10%)
    assert len(train) == tm["docs_train"]
    for name in names:
        assert stats["mixture"][name]["documents"] == sum(d["metadata"]["mix_dataset"] == name for d in train) > 0

    out = tmp_path / "pretrain"
    out.mkdir()
    ctx = StepContext("pretrain", tracker=NullTracker())
    config = pretrain.Config(steps=4, warmup_steps=1, seq_len=32, micro_batch_size=2, checkpoint_interval=0,
                             model=ModelSpec(overrides={"pattern": "*-"}))
    metrics = pretrain.run(config, {"tokens": _artifact(tokens)}, out, ctx)
    assert {d["name"] for d in ctx.tracker.datasets} == {f"tokens/{n}" for n in names}  # the blend's datasets, not train
    assert metrics["steps"] == 4 and math.isfinite(metrics["final_loss"])


def test_bad_inputs_name_what_to_fix(mixed, tmp_path):
    few = tmp_path / "few"
    write_parts(domain_corpus({"docs": 3, "code": 2}, chars=200), few / "documents", per_part=10)
    with pytest.raises(InputError, match="mix.clusters: 6 clusters for 5 documents"):
        mix.run(CONFIG, {"corpus": _artifact(few)}, tmp_path / "o1", StepContext("mix"))
    bad = tmp_path / "target.jsonl"
    bad.write_text('{"text": "fine"}\n{oops\n')
    with pytest.raises(InputError, match="target.jsonl line 2: not JSON"):
        mix.run(CONFIG.model_copy(update={"target": str(bad)}), {"corpus": _artifact(mixed["root"] / "corpus")},
                tmp_path / "o2", StepContext("mix"))
    # a blend that names the synthetic dataset needs tokenize's synthetic input
    corpus = tmp_path / "with-synthetic"
    write_parts([{"id": "a", "text": "some text " * 40, "metadata": {"mix_dataset": "cluster-00"}}] * 1
                + [{"id": f"b{i}", "text": "more text " * 40, "metadata": {"mix_dataset": "cluster-00"}} for i in range(5)],
                corpus / "documents", per_part=10)
    (corpus / "blend.json").write_text(json.dumps([{"until_fraction": 1.0, "weights": {"cluster-00": 0.5, "synthetic": 0.5}}]))
    out = tmp_path / "t"
    out.mkdir()
    with pytest.raises(InputError, match="names dataset 'synthetic', but tokenize has no synthetic input"):
        tokenize.run(tokenize.Config(vocab_size=300), {"corpus": _artifact(corpus)}, out, StepContext("tokenize"))


def test_synthetic_data_joins_the_search_as_its_own_dataset(mixed, tmp_path):
    synthetic = tmp_path / "synthetic"
    rewrites = [{"id": f"syn-{i}", "text": f"Question: what does module number {i} do? Answer: " + "it parses text. " * 20,
                 "metadata": {"source_id": r["id"], "quality_tier": 3}} for i, r in enumerate(mixed["records"][:8])]
    write_parts(rewrites, synthetic / "documents", per_part=10)
    config = CONFIG.model_copy(update={"rounds": 2, "proxies_per_round": 2, "predictor_folds": 2})
    out = tmp_path / "mix"
    out.mkdir()
    mix.run(config, {"corpus": _artifact(mixed["root"] / "corpus"), "synthetic": _artifact(synthetic)}, out, StepContext("mix"))
    summary = json.loads((out / "mixture.json").read_text())
    assert summary["datasets"]["synthetic"]["documents"] == 8 and summary["datasets"]["synthetic"]["mean_tier"] == 3.0
    assert all("synthetic" in p["weights"] for p in summary["proxies"])
    assert "synthetic" in summary["blend"][0]["weights"]
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    tokenize.run(tokenize.Config(vocab_size=400), {"corpus": _artifact(out), "synthetic": _artifact(synthetic)}, tokens,
                 StepContext("tokenize"))
    assert (tokens / "synthetic.bin").is_file() and json.loads((tokens / "blend.json").read_text()) == summary["blend"]
