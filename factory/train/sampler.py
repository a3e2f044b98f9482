"""A seeded sampler whose every draw is a pure function of (seed, epoch, position), so resume is exact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


class SeededSampler:
    """Sample indices over `num_samples` items, a fresh permutation per epoch.

    The global position `p` (samples drawn so far) maps to epoch `p // n` and offset `p % n`; the
    epoch's permutation comes from `numpy.random.default_rng([seed, epoch])` (PCG64, stable across
    numpy releases). A trainer therefore needs to checkpoint only the position. The permutation of
    the current epoch is cached: 8 bytes per sample.
    """

    def __init__(self, num_samples: int, seed: int, stream: int | None = None) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.seed = seed
        self.stream = stream  # independent orders for several datasets under one seed
        self._epoch: int | None = None
        self._perm: np.ndarray | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch `epoch`: (num_samples,) int64."""
        if epoch != self._epoch:
            key = [self.seed, epoch] if self.stream is None else [self.seed, self.stream, epoch]
            self._perm = np.random.default_rng(key).permutation(self.num_samples)
            self._epoch = epoch
        return self._perm  # type: ignore[return-value]

    def index(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_samples)
        return int(self.permutation(epoch)[offset])

    def indices(self, position: int, count: int) -> list[int]:
        """The `count` sample indices drawn from global position `position` on."""
        return [self.index(p) for p in range(position, position + count)]


class ShuffledSamples:
    """One dataset read in the seeded order: `sample(p)` is the item at global position `p`."""

    def __init__(self, data: Sequence[torch.Tensor], seed: int) -> None:
        self.data = data
        self.sampler = SeededSampler(len(data), seed)

    def sample(self, position: int) -> torch.Tensor:
        return self.data[self.sampler.index(position)]


class BlendedSamples:
    """Several datasets mixed by phase weights; every draw is a pure function of (seed, position).

    Phase `i` covers global positions `[ends[i-1], ends[i])` with `ends[i] = round(until_fraction_i *
    total_samples)` (all samples have `seq_len` tokens, so a fraction of samples is a fraction of tokens);
    the last phase also covers anything past `total_samples`. Inside a phase, positions come in blocks of
    `BLOCK`: each dataset gets its largest-remainder share of the block (weights rounded to 1/BLOCK) and
    the block's slots are shuffled by `default_rng([seed, phase, block])`. So the number of draws a
    dataset got before any position has a closed form, and dataset `d`'s k-th draw is
    `datasets[d][SeededSampler(len, seed, stream=d + 1).index(k)]`: each dataset walks its own epochs, across
    phases, and a resumed run needs only the position.
    """

    BLOCK = 1000

    def __init__(self, datasets: Mapping[str, Sequence[torch.Tensor]], phases: Sequence[Any], total_samples: int,
                 seed: int) -> None:
        self.names = list(datasets)
        self.datasets = [datasets[n] for n in self.names]
        self.samplers = [SeededSampler(len(d), seed, stream=i + 1) for i, d in enumerate(self.datasets)]
        self.seed = seed
        self.ends = [round(p.until_fraction * total_samples) for p in phases]
        self.starts = [0, *self.ends[:-1]]
        self.block_counts = []  # per phase: (n_datasets,) slots of each dataset in a block
        for phase in phases:
            w = np.array([phase.weights.get(n, 0.0) for n in self.names], dtype=np.float64)
            quota = w / w.sum() * self.BLOCK
            counts = np.floor(quota).astype(np.int64)
            extra = np.argsort(-(quota - counts), kind="stable")[: self.BLOCK - int(counts.sum())]
            counts[extra] += 1
            self.block_counts.append(counts)
        self._block_key: tuple[int, int] | None = None
        self._block: tuple[np.ndarray, np.ndarray] | None = None

    def phase_of(self, position: int) -> int:
        for i, end in enumerate(self.ends):
            if position < end:
                return i
        return len(self.ends) - 1

    def _slots(self, phase: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(dataset of each slot (BLOCK,), draws of each dataset before each slot (BLOCK, n_datasets))."""
        if self._block_key != (phase, block):
            counts = self.block_counts[phase]
            slots = np.repeat(np.arange(len(counts)), counts)  # (BLOCK,)
            slots = np.random.default_rng([self.seed, phase, block]).permutation(slots)
            onehot = np.eye(len(counts), dtype=np.int64)[slots]  # (BLOCK, n_datasets)
            self._block = (slots, np.cumsum(onehot, axis=0) - onehot)
            self._block_key = (phase, block)
        return self._block  # type: ignore[return-value]

    def _drawn_in_phase(self, phase: int, offset: int) -> np.ndarray:
        """(n_datasets,) draws of each dataset in the first `offset` positions of `phase`."""
        block, rest = divmod(offset, self.BLOCK)
        drawn = block * self.block_counts[phase]
        if rest:
            slots, before = self._slots(phase, block)
            drawn = drawn + before[rest - 1] + np.eye(len(self.names), dtype=np.int64)[slots[rest - 1]]
        return drawn

    def source(self, position: int) -> tuple[str, int]:
        """(dataset name, how many draws that dataset had before) at global `position`."""
        phase = self.phase_of(position)
        drawn = sum((self._drawn_in_phase(p, self.ends[p] - self.starts[p]) for p in range(phase)),
                    np.zeros(len(self.names), dtype=np.int64))
        offset = position - self.starts[phase]
        slots, before = self._slots(phase, offset // self.BLOCK)
        d = int(slots[offset % self.BLOCK])
        drawn = drawn + offset // self.BLOCK * self.block_counts[phase] + before[offset % self.BLOCK]
        return self.names[d], int(drawn[d])

    def sample(self, position: int) -> torch.Tensor:
        name, k = self.source(position)
        d = self.names.index(name)
        return self.datasets[d][self.samplers[d].index(k)]
