"""CLIMB's iterative mixture search: Dirichlet candidates, proxy runs, a LightGBM predictor of the target loss.

Round 1 trains proxies on the token-count prior and on mixtures drawn from a Dirichlet around it. Every later
round fits the predictor (mixture weights -> target loss) on all proxies so far, scores a large Dirichlet
sample with it and trains the candidates it ranks best. The searched mixture is the best proxy measured,
which after round 1 the predictor chose. The predictor's quality is its Spearman correlation on held-out
proxies: out-of-fold predictions over every proxy (k-fold), and each later round scored by the predictor
fitted before it.

    result = search(prior, lambda weights, round: pool.run(...), config)
    result.weights                      # (n_datasets,) the searched mixture
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from factory.mix.config import Config

__all__ = ["SearchResult", "capped", "dirichlet", "fit_predictor", "out_of_fold", "search", "spearman"]


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
    import lightgbm

    model = lightgbm.LGBMRegressor(
        n_estimators=config.predictor_trees, learning_rate=0.05, num_leaves=7, min_child_samples=2, min_data_in_bin=1,
        subsample=1.0, colsample_bytree=1.0, reg_lambda=1e-3, random_state=config.seed, n_jobs=1, verbose=-1)
    return model.fit(x, y)


def out_of_fold(x: np.ndarray, y: np.ndarray, config: Config) -> np.ndarray:
    """Each proxy's loss predicted by a predictor that did not see it (k-fold, seeded): (N,)."""
    from sklearn.model_selection import KFold

    pred = np.empty_like(y)
    folds = KFold(n_splits=min(config.predictor_folds, len(y)), shuffle=True, random_state=config.seed)
    for train, held in folds.split(x):
        pred[held] = fit_predictor(x[train], y[train], config).predict(x[held])
    return pred


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (scipy); NaN when either side is constant (e.g. a round whose picks all fall in
    the predictor's best leaf, so it predicts one value for all of them)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def search(prior: np.ndarray, train: Callable[[np.ndarray, int], list[float]], config: Config,
           on_round: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> SearchResult:
    """Run `config.rounds` rounds; `train(weights (n, D), round)` returns each mixture's measured target loss."""
    rng = np.random.default_rng([config.seed, 1])
    xs: list[np.ndarray] = []
    ys: list[float] = []
    rounds: list[int] = []
    next_round: list[float] = []
    k = config.proxies_per_round
    for r in range(1, config.rounds + 1):
        if r == 1:  # the prior itself, and draws around it
            candidates = np.vstack([prior[None, :], dirichlet(rng, prior, config.concentration, k - 1, config.max_upsample)])
            predicted = None
        else:
            predictor = fit_predictor(np.array(xs), np.array(ys), config)
            pool = dirichlet(rng, prior, config.concentration, max(config.candidates_per_round, k), config.max_upsample)
            scores = predictor.predict(pool)
            candidates = pool[np.argsort(scores, kind="stable")[:k]]
            predicted = predictor.predict(candidates)
        losses = np.asarray(train(candidates, r), dtype=np.float64)
        if predicted is not None:
            next_round.append(spearman(predicted, losses))
        xs += list(candidates)
        ys += losses.tolist()
        rounds += [r] * len(losses)
        if on_round is not None:
            on_round(r, candidates, losses)
    x, y = np.array(xs), np.array(ys)
    oof = out_of_fold(x, y, config)
    best = int(np.argmin(y))
    return SearchResult(weights=x[best], proxies=x, rounds=np.array(rounds), losses=y, predicted=oof,
                        spearman=spearman(oof, y), next_round_spearman=next_round, best=best)
