"""Two-phase blends after NVIDIA's two-phase pretraining: a diverse phase 1, then a high-quality phase 2.

From the searched mixture `w` (D,) and each dataset's mean quality tier:

- phase 1 (the first 1 - f of the tokens) is diverse: every dataset, `w` mixed with the uniform blend,
  `(1 - d) w + d / D`, so its entropy is at least that of `w`;
- phase 2 (the last f) is high quality: only the datasets whose tier is at least `w`'s mean tier, weighted
  `w_c x exp(s x (tier_c - mean tier))`, so its mean tier is above phase 1's;
- neither phase gives a dataset more than `max_upsample` times its token share (the caps), so a small
  high-quality cluster is not read for many epochs; what a cap cuts goes to the next datasets.

    phases = two_phase(w, tiers, names, fraction=0.3, diversity=0.3, sharpness=1.0, min_weight=0.005)
    # [{"until_fraction": 0.7, "weights": {...}}, {"until_fraction": 1.0, "weights": {...}}]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from factory.stages.mix.climb import capped

__all__ = ["entropy", "phase_weights", "two_phase"]


def phase_weights(w: np.ndarray, tiers: np.ndarray, diversity: float, sharpness: float,
                  caps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(phase 1 weights (D,), phase 2 weights (D,)), each summing to 1; phase 2 is zero below the mean tier.

    With `caps` (D,) (max_upsample x prior), no weight passes its cap: phase 1's excess goes to the other
    datasets in proportion to it, phase 2's to the other high-quality datasets first, then by `w`
    (`factory.stages.mix.climb.capped`)."""
    w = np.asarray(w, dtype=np.float64) / np.sum(w)
    tiers = np.asarray(tiers, dtype=np.float64)
    w1 = (1 - diversity) * w + diversity / len(w)
    mean = float(np.average(tiers, weights=w))
    high = tiers >= mean - 1e-9  # never empty: some tier is at least the weighted mean
    w2 = np.where(high, w * np.exp(sharpness * (tiers - mean)), 0.0)
    w2 /= w2.sum()
    if caps is not None:
        w1, w2 = capped(w1, caps), capped(w2, caps, w2, w)
    return w1, w2


def two_phase(w: np.ndarray, tiers: np.ndarray, names: Sequence[str], fraction: float, diversity: float,
              sharpness: float, min_weight: float, caps: np.ndarray | None = None) -> list[dict]:
    """The blend phases (`factory.train.config.BlendPhase` fields) of mixture `w` over datasets `names`: two
    phases, or one when they would be equal (every dataset of one tier and no diversity). Weights below
    `min_weight` are left out of a phase (a blend weight must be > 0) and the rest renormalised."""
    w1, w2 = phase_weights(w, tiers, diversity, sharpness, caps)

    def named(x: np.ndarray) -> dict[str, float]:
        keep = x >= max(min_weight, 1e-9)
        if not keep.any():
            keep = x == x.max()
        x = np.where(keep, x, 0.0) / x[keep].sum()
        return {n: round(float(v), 6) for n, v, k in zip(names, x, keep) if k}

    if np.allclose(w1, w2, atol=1e-9):
        return [{"until_fraction": 1.0, "weights": named(w1)}]
    return [{"until_fraction": round(1 - fraction, 6), "weights": named(w1)},
            {"until_fraction": 1.0, "weights": named(w2)}]


def entropy(x: np.ndarray) -> float:
    """Shannon entropy (nats) of a distribution; zero entries contribute nothing."""
    x = np.asarray(x, dtype=np.float64)
    x = x[x > 0] / x.sum()
    return float(-(x * np.log(x)).sum())
