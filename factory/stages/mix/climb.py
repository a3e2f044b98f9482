"""CLIMB's iterative mixture search: Dirichlet candidates, proxy runs, a LightGBM predictor of the target loss.

Round 1 trains proxies on the token-count prior and on mixtures drawn from a Dirichlet around it. Every later
round fits the predictor (mixture weights -> target loss) on all proxies so far, scores a large Dirichlet
sample with it and trains the candidates it ranks best. The searched mixture is the best proxy measured,
which after round 1 the predictor chose. The predictor's quality is its Spearman correlation on held-out
proxies: out-of-fold predictions over every proxy (k-fold), and each later round scored by the predictor
fitted before it.

    result = search(prior, lambda weights, round: pool.run(...), config)
    result.weights                      # (n_datasets,) the searched mixture

The rounds can also run apart, as pipeline tasks (`factory.fanout.mix`): `plan_round(prior, config, done)` gives
round r's candidates from the measured rounds before it, the very ones `search` trains, and `conclude(config,
done)` the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import lightgbm
import numpy as np
from scipy.stats import spearmanr
from sklearn.model_selection import KFold

from factory.stages.mix.config import Config

__all__ = ["Round", "SearchResult", "capped", "conclude", "dirichlet", "fit_predictor", "out_of_fold", "plan_round", "search",
           "spearman"]


@dataclass
class SearchResult:
    """Every proxy (weights, round, measured loss) and what the search concluded."""

    weights: np.ndarray  # (D,) the searched mixture
    proxies: np.ndarray  # (N, D) every proxy's mixture
    rounds: np.ndarray  # (N,) the round (1-based) each proxy ran in
    losses: np.ndarray  # (N,) measured target loss
    predicted: np.ndarray  # (N,) out-of-fold predicted loss
    spearman: float  # of `predicted` against `losses`
    next_round_spearman: list[float] = field(default_factory=list)  # per round >= 2: the earlier predictor on it
    best: int = 0  # index of the searched mixture among the proxies


def dirichlet(rng: np.random.Generator, prior: np.ndarray, concentration: float, n: int,
              max_upsample: float = np.inf) -> np.ndarray:
    """`n` mixtures (n, D) from Dirichlet(concentration x prior), each weight at least 1e-6 (a blend weight is > 0)
    and at most `max_upsample` x its prior share (`capped`)."""
    x = rng.dirichlet(np.maximum(concentration * prior, 1e-3), size=n)
    x = np.maximum(x, 1e-6)
    x = x / x.sum(axis=1, keepdims=True)
    if np.isfinite(max_upsample):
        x = np.array([capped(row, max_upsample * prior) for row in x])
    return x


def capped(x: np.ndarray, caps: np.ndarray, *fills: np.ndarray) -> np.ndarray:
    """`x` (D,) with every weight at most its cap and the same total of 1: the excess over a cap goes to the
    datasets below theirs, in proportion to the first of `fills` (default `x`) that still has room, then to
    any room left. The caps must sum to at least 1 (they do when caps = max_upsample x prior, max_upsample >= 1)."""
    x = np.minimum(np.asarray(x, dtype=np.float64), caps)
    for fill in [*(fills or (x,)), np.ones_like(x)]:
        for _ in range(len(x)):  # each pass fills at least one dataset to its cap, or places all the excess
            excess, room = 1.0 - x.sum(), caps - x
            share = np.where(room > 1e-12, fill, 0.0)
            if excess <= 1e-12 or share.sum() <= 0:
                break
            x = x + np.minimum(room, excess * share / share.sum())
    return x


def fit_predictor(x: np.ndarray, y: np.ndarray, config: Config):
    """A LightGBM regressor of target loss (N,) from mixture weights (N, D), sized for tens of points."""
    model = lightgbm.LGBMRegressor(
        n_estimators=config.predictor_trees, learning_rate=0.05, num_leaves=7, min_child_samples=2, min_data_in_bin=1,
        subsample=1.0, colsample_bytree=1.0, reg_lambda=1e-3, random_state=config.seed, n_jobs=1, verbose=-1)
    return model.fit(x, y)


def out_of_fold(x: np.ndarray, y: np.ndarray, config: Config) -> np.ndarray:
    """Each proxy's loss predicted by a predictor that did not see it (k-fold, seeded): (N,)."""
    pred = np.empty_like(y)
    folds = KFold(n_splits=min(config.predictor_folds, len(y)), shuffle=True, random_state=config.seed)
    for train, held in folds.split(x):
        pred[held] = fit_predictor(x[train], y[train], config).predict(x[held])
    return pred


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (scipy); NaN when either side is constant (e.g. a round whose picks all fall in
    the predictor's best leaf, so it predicts one value for all of them)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


@dataclass
class Round:
    """One search round: the mixtures it trains, the loss the predictor expected of each, what they measured."""

    candidates: np.ndarray  # (k, D) mixture weights
    predicted: np.ndarray | None  # (k,) the predictor's loss for each; None in round 1, which has no predictor
    losses: np.ndarray | None = None  # (k,) measured target loss, once the proxies ran


def plan_round(prior: np.ndarray, config: Config, done: Sequence[Round]) -> Round:
    """Round `len(done) + 1`'s candidates, from the rounds before it (each with its losses).

    A pure function of its arguments: the random draws of round r are those of a generator seeded with
    `config.seed` after the draws of rounds 1..r-1 (which do not depend on any loss), and the predictor is
    fitted on every earlier proxy with a fixed seed. So a pipeline task that plans round r from the losses
    in the store picks the very mixtures the in-process `search` picks.
    """
    r = len(done) + 1
    if any(d.losses is None for d in done):
        raise ValueError(f"round {r}: an earlier round has no measured losses")
    k = config.proxies_per_round
    pool_size = max(config.candidates_per_round, k)
    rng = np.random.default_rng([config.seed, 1])
    for earlier in range(1, r):  # replay the earlier rounds' draws, so round r draws what it drew in one process
        dirichlet(rng, prior, config.concentration, k - 1 if earlier == 1 else pool_size, config.max_upsample)
    if r == 1:  # the prior itself, and draws around it
        return Round(np.vstack([prior[None, :], dirichlet(rng, prior, config.concentration, k - 1, config.max_upsample)]), None)
    predictor = fit_predictor(np.vstack([d.candidates for d in done]), np.concatenate([d.losses for d in done]), config)
    pool = dirichlet(rng, prior, config.concentration, pool_size, config.max_upsample)
    candidates = pool[np.argsort(predictor.predict(pool), kind="stable")[:k]]
    return Round(candidates, predictor.predict(candidates))


def conclude(config: Config, done: Sequence[Round]) -> SearchResult:
    """What the rounds found: the best proxy, and the predictor's held-out and next-round Spearman correlations."""
    x = np.vstack([d.candidates for d in done])
    y = np.concatenate([d.losses for d in done]).astype(np.float64)
    rounds = np.concatenate([np.full(len(d.losses), i + 1) for i, d in enumerate(done)])
    oof = out_of_fold(x, y, config)
    best = int(np.argmin(y))
    return SearchResult(weights=x[best], proxies=x, rounds=rounds, losses=y, predicted=oof, spearman=spearman(oof, y),
                        next_round_spearman=[spearman(d.predicted, d.losses) for d in done if d.predicted is not None],
                        best=best)


def search(prior: np.ndarray, train: Callable[[np.ndarray, int], list[float]], config: Config,
           on_round: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> SearchResult:
    """Run `config.rounds` rounds; `train(weights (n, D), round)` returns each mixture's measured target loss."""
    done: list[Round] = []
    for r in range(1, config.rounds + 1):
        planned = plan_round(prior, config, done)
        planned.losses = np.asarray(train(planned.candidates, r), dtype=np.float64)
        done.append(planned)
        if on_round is not None:
            on_round(r, planned.candidates, planned.losses)
    return conclude(config, done)
