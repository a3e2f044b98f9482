"""A seeded sampler whose every draw is a pure function of (seed, epoch, position), so resume is exact."""

from __future__ import annotations

import numpy as np


class SeededSampler:
    """Sample indices over `num_samples` items, a fresh permutation per epoch.

    The global position `p` (samples drawn so far) maps to epoch `p // n` and offset `p % n`; the
    epoch's permutation comes from `numpy.random.default_rng([seed, epoch])` (PCG64, stable across
    numpy releases). A trainer therefore needs to checkpoint only the position. The permutation of
    the current epoch is cached: 8 bytes per sample.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.seed = seed
        self._epoch: int | None = None
        self._perm: np.ndarray | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch `epoch`: (num_samples,) int64."""
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            self._epoch = epoch
        return self._perm  # type: ignore[return-value]

    def index(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_samples)
        return int(self.permutation(epoch)[offset])

    def indices(self, position: int, count: int) -> list[int]:
        """The `count` sample indices drawn from global position `position` on."""
        return [self.index(p) for p in range(position, position + count)]
