"""Random Hadamard transform (RHT) for the NVFP4 weight-gradient GEMM.

grad_W = G^T X sums over the tokens. Multiplying both operands by the same orthogonal block-diagonal
matrix along the token dim leaves the product unchanged (G^T H H^T X = G^T X) but spreads outliers across
each 16-token group, so the 16-element NVFP4 blocks see a smoother, more Gaussian distribution.
H = Hadamard(16) diag(s) / 4 with s seeded random signs, so H H^T = I.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hadamard_matrix(size: int) -> torch.Tensor:
    """The Sylvester Hadamard matrix [size, size] of +-1 (size a power of 2), unnormalised."""
    if size < 1 or size & (size - 1):
        raise ValueError(f"Hadamard size must be a power of 2, got {size}")
    h = torch.ones(1, 1)
    while h.shape[0] < size:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def random_hadamard_matrix(size: int = 16, seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Orthogonal fp32 [size, size]: Hadamard(size) with columns flipped by seeded random signs, / sqrt(size)."""
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (size,), generator=gen).float() * 2 - 1  # [size] of +-1
    return (hadamard_matrix(size) * signs / size**0.5).to(device)


def apply_hadamard(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """x [rows, n] -> [rows, n_p]: each group of h.shape[0] along the last dim times h (n zero-padded)."""
    size = h.shape[0]
    x = F.pad(x, (0, -x.shape[-1] % size))
    rows, n = x.shape
    return (x.reshape(rows, n // size, size) @ h).reshape(rows, n)
