"""Batched next-token choice: greedy, or sampled with temperature, top-k and top-p, one random stream per sequence.

Sampling is Gumbel-max over the processed logits: token = argmax(logits' + g) with g = -log(-log u), which draws
exactly from softmax(logits'). The uniforms u come from a counter-based hash of (the sequence's seed, how many
tokens it has generated, the vocabulary index), not from a stateful generator, so a sequence's tokens depend only
on its seed and its own logits: not on which other sequences share its batch, which slot it occupies, or when
continuous batching admitted it. Every row of the batch is drawn in one vectorised pass.

The logits are processed as transformers' `generate` processes them (temperature, then top-k, then top-p, the
same comparisons), so a spec's sampling settings mean the same thing on both paths.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import torch

__all__ = ["Sampling", "choose_tokens", "process_logits", "sequence_seed", "uniforms"]

_M32 = 0xFFFFFFFF
_MUL = 0x45D9F3B  # an avalanche multiplier of a 32-bit integer hash; < 2**31, so int64 products never overflow


class Sampling(NamedTuple):
    """How the next token is chosen; temperature 0 is greedy (top_k 0 and top_p 1 turn those filters off)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def sequence_seed(*parts: int | str) -> int:
    """A 63-bit seed for one sequence from the parts that name it (a run's seed, a prompt index, a sample index)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash, elementwise; x int64 in [0, 2**32)."""
    x = ((x >> 16) ^ x) * _MUL & _M32
    x = ((x >> 16) ^ x) * _MUL & _M32
    return (x >> 16) ^ x


def uniforms(seeds: torch.Tensor, counters: torch.Tensor, vocab: int) -> torch.Tensor:
    """u in (0, 1), (n, vocab) float32: row i is a function of (seeds[i], counters[i]) only. seeds, counters (n,) int64."""
    row = _mix(_mix(_mix((seeds >> 32) & _M32) ^ (seeds & _M32)) ^ (counters & _M32))  # (n,)
    column = _mix(torch.arange(vocab, device=seeds.device, dtype=torch.int64) + 0x9E3779B9 & _M32)  # (V,)
    h = _mix(_mix(row[:, None] ^ column[None, :]) ^ row[:, None])  # (n, V)
    return ((h >> 8).to(torch.float32) + 0.5) * 2.0**-24  # 24 bits: exact in float32, never 0 or 1


def process_logits(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """logits (n, V) after temperature, top-k and top-p, as transformers' logits warpers apply them."""
    scores = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < scores.shape[-1]:
        kth = torch.topk(scores, sampling.top_k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - sampling.top_p)
        drop[..., -1:] = False  # the most likely token always stays
        scores = scores.masked_fill(drop.scatter(1, order, drop), -float("inf"))
    return scores


def choose_tokens(logits: torch.Tensor, sampling: Sampling, seeds: torch.Tensor | None = None,
                  counters: torch.Tensor | None = None) -> torch.Tensor:
    """The next token of every row, (n,) int64: argmax when greedy, else a draw from the processed distribution
    with row i's randomness from (seeds[i], counters[i])."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    scores = process_logits(logits.float(), sampling)
    gumbel = -torch.log(-torch.log(uniforms(seeds, counters, scores.shape[-1])))
    return (scores + gumbel).argmax(dim=-1)
