"""The search machinery on its own, fast: the predictor-guided rounds on a known loss surface, the two blend
phases, k-means and super-clusters, the proxy process pool, and how a spec wires the mix step."""

from __future__ import annotations

import numpy as np
import pytest

from factory.stages.mix.clusters import cluster_tiers, kmeans, merge
from factory.stages.mix.config import Config, ProxyConfig
from factory.stages.mix.phases import entropy, phase_weights, two_phase
from factory.stages.mix.proxy_runs import ProxyJob, ProxyPool, train_proxy, write_streams
from factory.stages.mix.climb import Round, conclude, dirichlet, plan_round, search
from factory.model import ModelSpec

PRIOR = np.array([0.4, 0.3, 0.2, 0.1])
BEST = np.array([0.05, 0.15, 0.3, 0.5])  # far from the prior: the search has to find it


def _surface(weights: np.ndarray, r: int) -> list[float]:
    """A known loss over mixtures (a stand-in for proxy runs): squared distance to BEST, plus seeded noise."""
    noise = np.random.default_rng(r).normal(0, 0.002, len(weights))
    return (((weights - BEST) ** 2).sum(axis=1) + noise).tolist()


def test_later_rounds_pick_better_mixtures_and_the_predictor_ranks_held_out_proxies():
    config = Config(rounds=3, proxies_per_round=16, candidates_per_round=2000, concentration=4.0, predictor_trees=100)
    result = search(PRIOR, _surface, config)
    assert result.rounds.tolist() == [1] * 16 + [2] * 16 + [3] * 16
    assert np.allclose(result.proxies[0], PRIOR)
    true = ((result.proxies - BEST) ** 2).sum(axis=1)
    # the predictor's picks are better than the Dirichlet draws around the prior, round after round
    assert true[result.rounds == 2].mean() < 0.5 * true[result.rounds == 1].mean()
    assert true[result.rounds == 3].mean() < 0.5 * true[result.rounds == 1].mean()
    assert result.spearman > 0.7  # out-of-fold: each proxy predicted by a model that did not see it
    assert len(result.next_round_spearman) == 2
    searched = ((result.weights - BEST) ** 2).sum()
    assert searched == true.min() and searched < 0.25 * ((PRIOR - BEST) ** 2).sum()


def test_each_round_replays_from_the_losses_before_it():
    """A pipeline task plans round r alone, from the measured rounds before it: the mixtures `search` trains."""
    config = Config(rounds=3, proxies_per_round=6, candidates_per_round=500, predictor_trees=30, predictor_folds=3)
    trained: list[np.ndarray] = []
    result = search(PRIOR, lambda w, r: trained.append(w) or _surface(w, r), config)
    done = []
    for r in range(1, config.rounds + 1):
        planned = plan_round(PRIOR, config, done)  # a fresh call: no state kept between rounds
        assert np.array_equal(planned.candidates, trained[r - 1])
        assert (planned.predicted is None) == (r == 1)
        planned.losses = np.array(_surface(planned.candidates, r))
        done.append(planned)
    replayed = conclude(config, done)
    assert np.array_equal(replayed.proxies, result.proxies) and np.array_equal(replayed.predicted, result.predicted)
    assert replayed.best == result.best and replayed.spearman == result.spearman
    with pytest.raises(ValueError, match="no measured losses"):
        plan_round(PRIOR, config, [Round(trained[0], None)])


def test_dirichlet_draws_stay_on_the_simplex_around_the_prior():
    draws = dirichlet(np.random.default_rng(0), PRIOR, 50.0, 4000)
    assert np.allclose(draws.sum(axis=1), 1) and (draws > 0).all()
    assert np.allclose(draws.mean(axis=0), PRIOR, atol=0.01)


def test_two_phases_diverse_then_high_quality():
    w, tiers = np.array([0.5, 0.3, 0.15, 0.05]), np.array([1.0, 2.0, 3.0, 4.0])
    w1, w2 = phase_weights(w, tiers, diversity=0.3, sharpness=1.0)
    assert np.allclose([w1.sum(), w2.sum()], 1)
    assert entropy(w1) > entropy(w) > entropy(w2)
    mean = float(w @ tiers)  # 1.75: phase 2 drops the datasets below it
    assert (w2[tiers < mean] == 0).all() and (w2[tiers >= mean] > 0).all()
    assert w2 @ tiers > max(w @ tiers, w1 @ tiers)
    phases = two_phase(w, tiers, ["a", "b", "c", "d"], fraction=0.25, diversity=0.3, sharpness=1.0, min_weight=0.01)
    assert [p["until_fraction"] for p in phases] == [0.75, 1.0]
    assert set(phases[0]["weights"]) == {"a", "b", "c", "d"} and set(phases[1]["weights"]) == {"b", "c", "d"}
    assert sum(phases[1]["weights"].values()) == pytest.approx(1, abs=1e-5)
    # one tier, no diversity: the two phases are the mixture itself, written as one
    flat = two_phase(w, np.full(4, 2.0), ["a", "b", "c", "d"], 0.25, 0.0, 1.0, 0.01)
    assert flat == [{"until_fraction": 1.0, "weights": dict(zip("abcd", w.tolist()))}]


def test_kmeans_finds_separated_groups_and_merge_joins_near_centroids():
    rng = np.random.default_rng(0)
    centers = np.eye(8, dtype=np.float32)[:4] * 10  # 4 well-separated directions
    x = np.vstack([c + rng.normal(0, 0.3, (25, 8)) for c in centers]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels, centroids = kmeans(x, 4, iterations=20, seed=0)
    truth = np.repeat(np.arange(4), 25)
    assert all(len(set(labels[truth == g])) == 1 for g in range(4)) and len(set(labels)) == 4
    # two pairs of near centroids merge into two super-clusters
    pairs = np.array([[1, 0, 0], [0.95, 0.1, 0], [0, 0, 1], [0, 0.1, 0.95]], dtype=np.float32)
    assert merge(pairs, [0, 1, 2, 3], 2) == {0: 0, 1: 0, 2: 1, 3: 1}
    assert merge(pairs, [1, 3], 4) == {1: 0, 3: 1}
    tiers = cluster_tiers(np.array([0, 0, 1, 1]), [4, 2, None, 0], k=3)
    assert tiers.tolist() == [3.0, 1.0, -1.0]  # no tier counts as the middle (2); an empty cluster as -1


def test_the_process_pool_trains_real_proxies_with_the_same_numbers_as_one_process(tmp_path):
    texts = {"prose": ["The quick brown fox jumps over the lazy dog. " * 20] * 3,
             "digits": [" ".join(str(i) for i in range(300))] * 3}
    write_streams({**texts, "target": ["A lazy dog sleeps while the quick fox jumps. " * 10]}, tmp_path)
    proxy = ProxyConfig(model=ModelSpec(overrides={"pattern": "*-"}), steps=8, seq_len=32, micro_batch_size=4,
                        warmup_steps=1, eval_windows=8)
    jobs = [ProxyJob(tmp_path, ("prose", "digits"), (0.9, 0.1), proxy, seed=1),
            ProxyJob(tmp_path, ("prose", "digits"), (0.1, 0.9), proxy, seed=2)]
    with ProxyPool(2) as pool:
        pooled = pool.run(jobs)
    with ProxyPool(1) as pool:
        alone = pool.run(jobs)
    assert pooled == alone  # seeded, one thread each: the worker count does not change a result
    assert pooled[0] < pooled[1] < np.log(257)  # more of the target's kind of text, lower target loss
    assert train_proxy(jobs[0]) == alone[0]


def test_caps_bound_every_weight_by_its_upsampling_and_move_the_excess_in_fill_order():
    from factory.stages.mix.climb import capped

    prior = np.array([0.5, 0.4, 0.05, 0.05])
    caps = 4 * prior  # [2, 1.6, 0.2, 0.2]
    x = capped(np.array([0.05, 0.05, 0.8, 0.1]), caps)
    assert x.sum() == pytest.approx(1) and (x <= caps + 1e-12).all()
    assert x == pytest.approx([0.3, 0.3, 0.2, 0.2])  # the excess went to the others in proportion, then capped again
    # phase 2 keeps to the high-quality datasets while they have room, then falls back to the mixture
    w, tiers = np.array([0.3, 0.3, 0.2, 0.2]), np.array([1.0, 1.0, 4.0, 4.0])
    _, w2 = phase_weights(w, tiers, diversity=0.3, sharpness=1.0, caps=caps)
    assert w2[2:] == pytest.approx([0.2, 0.2]) and w2[:2] == pytest.approx([0.3, 0.3])
    draws = dirichlet(np.random.default_rng(0), prior, 2.0, 500, max_upsample=4.0)
    assert (draws <= caps + 1e-12).all() and np.allclose(draws.sum(axis=1), 1)
