"""The search's figures: mixture weights per round, and the predictor's predicted against measured loss."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_predicted", "plot_weights"]


def plot_weights(path: Path, names: Sequence[str], proxies: np.ndarray, rounds: np.ndarray, prior: np.ndarray,
                 searched: np.ndarray) -> None:
    """Each dataset's weight: the prior, every round's proxies (mean and range) and the searched mixture."""
    labels = ["prior"] + [f"round {r}" for r in sorted(set(rounds.tolist()))] + ["searched"]
    rows = [prior] + [proxies[rounds == r].mean(axis=0) for r in sorted(set(rounds.tolist()))] + [searched]
    fig = Figure(figsize=(max(6, 1.2 * len(names) + 2), 4))  # no pyplot: no global figure state, no display
    ax = fig.subplots()
    width = 0.8 / len(rows)
    x = np.arange(len(names))
    for i, (label, row) in enumerate(zip(labels, rows)):
        ax.bar(x + i * width, row, width, label=label)
    ax.set_xticks(x + 0.4 - width / 2, names, rotation=30, ha="right")
    ax.set_ylabel("mixture weight (round: mean of its proxies)")
    ax.set_title("CLIMB search: weights per round")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_predicted(path: Path, losses: np.ndarray, predicted: np.ndarray, rounds: np.ndarray, spearman: float) -> None:
    """Out-of-fold predicted against measured target loss, one point per proxy, coloured by round."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for r in sorted(set(rounds.tolist())):
        ax.scatter(losses[rounds == r], predicted[rounds == r], label=f"round {r}", s=18)
    lo, hi = float(min(losses.min(), predicted.min())), float(max(losses.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
    ax.set_xlabel("measured target loss (nats/byte)")
    ax.set_ylabel("predicted (held out, k-fold)")
    ax.set_title(f"LightGBM predictor: Spearman {spearman:.2f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
