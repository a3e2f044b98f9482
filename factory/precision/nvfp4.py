"""NVFP4: E2M1 values in 16-element blocks, an E4M3 scale per block and one FP32 scale per tensor.

Layout (NVIDIA's NVFP4): the tensor is viewed as a matrix [rows, cols] (leading dims flattened, blocks run
along the last dim, which is the GEMM's reduction dim). With amax the tensor's max |x|:

    global_scale   = amax / (6 * 448)                                     fp32 scalar
    block_scale[b] = e4m3(clamp(block_amax[b] / (6 * global_scale),        one per (1 x 16) or (16 x 16) block
                                2^-9, 448))
    code[i]        = e2m1(x[i] / (block_scale[b] * global_scale))
    x[i]          ~= value(code[i]) * (block_scale[b] * global_scale)

Block scales follow NVIDIA Model Optimizer's arithmetic (`NVFP4QTensor.quantize`) bit for bit, so training and
the PTQ export quantize a weight to the same bytes: the division is by 6 * global_scale in one step, an
all-zero block gets scale 1, and a scale below E4M3's smallest value (2^-9) is clamped up to it, not flushed to
zero, so a block far below the tensor's max keeps coarse values instead of becoming all zeros.

E2M1 codes are 4 bits (sign, 2 exponent bits, 1 mantissa bit) for the values 0, 0.5, 1, 1.5, 2, 3, 4, 6
and their negatives; two codes are packed per byte, low nibble first (the even column in the low nibble,
as `torch.float4_e2m1fn_x2` expects, so `codes.view(torch.float4_e2m1fn_x2)` is a valid view).
Rounding is to nearest, ties to even code; stochastic rounding (unbiased) is an option for gradients.
2D 16x16 blocks are for weights: W and W^T then quantize to the same values, so the forward GEMM and the
backward (dgrad) GEMM see one and the same quantized weight.

Special values (where Model Optimizer has no rule): the last dim is zero-padded to a multiple of 16 (and rows
to 16 for 2D blocks); +-inf saturate to +-amax of the finite values; a NaN makes its block's E4M3 scale NaN, so
the whole block dequantizes to NaN (E2M1 has no NaN code) and divergence stays visible; an all-zero tensor has
global scale 1 (Model Optimizer's would be 0, and its block scales NaN) and all-zero codes; -0.0 is stored as
+0 (code 0), a tiny negative that rounds to zero as -0 (code 8), as Model Optimizer packs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from factory.precision.fp8 import FP8_MAX, finite_amax

E2M1_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # the value of codes 0..7; code | 8 is the negative
E2M1_MAX = 6.0
BLOCK = 16  # values per block scale (NVFP4's group size in Model Optimizer's checkpoint format)
E4M3_MIN_SCALE = 2.0**-9  # E4M3's smallest positive value: block scales are clamped up to it
_GLOBAL_DIVISOR = E2M1_MAX * FP8_MAX["e4m3"]  # 6 * 448 = 2688


@dataclass(frozen=True)
class NVFP4Tensor:
    """A tensor quantized to NVFP4.

    codes:        uint8 [rows_p, cols_p // 2], two E2M1 codes per byte, low nibble = even column
    block_scales: float8_e4m3fn [rows_p // block[0], cols_p // 16]
    global_scale: fp32 scalar, amax / (6 * 448)
    shape:        the original shape; rows = prod(shape[:-1]), cols = shape[-1], `_p` = padded
    block:        (1, 16) for 1D blocks along the last dim, (16, 16) for 2D blocks
    """

    codes: torch.Tensor
    block_scales: torch.Tensor
    global_scale: torch.Tensor
    shape: torch.Size
    block: tuple[int, int]


def pack_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes [..., 2n] (values 0..15) -> bytes [..., n], code 2i in the low nibble of byte i."""
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_e2m1(packed: torch.Tensor) -> torch.Tensor:
    """bytes [..., n] -> uint8 codes [..., 2n]; inverse of `pack_e2m1`."""
    return torch.stack([packed & 0x0F, packed >> 4], dim=-1).flatten(-2)


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes (0..15) -> fp32 values."""
    grid = torch.tensor(E2M1_GRID, device=codes.device)
    return torch.cat([grid, -grid])[codes.long()]


def _e2m1_step(mag: torch.Tensor) -> torch.Tensor:
    """Grid spacing at |x|: 0.5 on [0, 2), 1 on [2, 4), 2 on [4, 6]."""
    return torch.where(mag < 2, 0.5, torch.where(mag < 4, 1.0, 2.0))


def _e2m1_index(value: torch.Tensor) -> torch.Tensor:
    """A grid value (0, 0.5, ..., 6) -> its index 0..7."""
    return torch.where(value < 2, value * 2, torch.where(value < 4, value + 2, value / 2 + 4)).to(torch.uint8)


def e2m1_round(mag: torch.Tensor) -> torch.Tensor:
    """|x| (fp32, >= 0) -> grid index 0..7, nearest with ties to the even index; beyond 6 saturates to 7.

    On each stretch of constant spacing the grid is `step * integer`, and the integer's parity is the
    code's parity, so torch.round (half to even) on |x| / step rounds ties to the even code.
    """
    mag = mag.clamp(max=E2M1_MAX)
    step = _e2m1_step(mag)
    return _e2m1_index(torch.round(mag / step) * step)


def e2m1_round_stochastic(mag: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """|x| -> grid index, rounding up with probability (|x| - lo) / (hi - lo): unbiased for |x| <= 6.

    `uniform` holds one U[0, 1) draw per element (same shape as `mag`); beyond 6 saturates to 7.
    """
    mag = mag.clamp(max=E2M1_MAX)
    step = _e2m1_step(mag)  # a power of two: the divisions below are exact
    lo = torch.floor(mag / step) * step  # the grid value at or below |x|
    p_up = (mag - lo) / step  # 0 at |x| = 6, which has no neighbour above
    return _e2m1_index(lo + step * (uniform < p_up).float())


def _as_padded_matrix(x: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """x [..., cols] -> fp32 [rows_p, cols_p], zero-padded to whole blocks."""
    if x.ndim == 0:
        raise ValueError("nvfp4_quantize needs a tensor with at least one dimension")
    x2 = x.float().reshape(-1, x.shape[-1])
    rows, cols = x2.shape
    return F.pad(x2, (0, -cols % block[1], 0, -rows % block[0]))


def nvfp4_global_scale(amax: torch.Tensor) -> torch.Tensor:
    """amax / (6 * 448); 1 where that is 0 (an all-zero tensor, or amax below ~4e-42, which quantizes to 0)."""
    scale = amax / _GLOBAL_DIVISOR
    return torch.where(scale > 0, scale, 1.0)


def nvfp4_quantize(
    x: torch.Tensor,
    block_2d: bool = False,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
    global_scale: torch.Tensor | None = None,
) -> NVFP4Tensor:
    """Quantize `x` [..., cols] to NVFP4 (1x16 blocks along the last dim, or 16x16 blocks if `block_2d`).

    `stochastic` rounds each value up or down at random in proportion to its distance to the two grid
    neighbours (for gradients: unbiased); the draws come from `generator` (seeded, on x's device), one
    U[0, 1) per element of the padded matrix, in row-major order. `global_scale` (fp32 scalar) replaces
    amax / (6 * 448), e.g. a serving engine's static input scale from calibration; blocks above what it
    allows saturate to +-6 x 448 x global_scale.
    """
    block = (BLOCK, BLOCK) if block_2d else (1, BLOCK)
    xm = _as_padded_matrix(x, block)  # [R, C]
    uniform = torch.rand(xm.shape, generator=generator, device=xm.device) if stochastic else None
    amax = finite_amax(xm)
    global_scale = nvfp4_global_scale(amax) if global_scale is None else global_scale.float().reshape(())
    xm = torch.where(torch.isinf(xm), torch.sign(xm) * amax, xm)

    R, C = xm.shape
    bh, bw = block
    blocks = xm.reshape(R // bh, bh, C // bw, bw)  # a view: block (i, j) is blocks[i, :, j, :]
    block_amax = blocks.abs().amax(dim=(1, 3))  # [R/bh, C/bw]; NaN if the block holds a NaN
    raw = block_amax / (E2M1_MAX * global_scale)  # one division, as Model Optimizer computes it
    raw = torch.where(raw == 0, 1.0, raw)  # an all-zero block: scale 1 (its codes are 0 whatever the scale)
    block_scales = raw.clamp(min=E4M3_MIN_SCALE, max=FP8_MAX["e4m3"]).to(torch.float8_e4m3fn)  # NaN stays NaN

    denom = (block_scales.float() * global_scale)[:, None, :, None]  # broadcasts over each block
    # A NaN scale (its codes are then 0; the scale marks the block) or a product that underflows fp32 (a global
    # scale near fp32's smallest) fails `denom > 0`.
    scaled = torch.where(denom > 0, blocks / torch.where(denom > 0, denom, 1.0), 0.0).reshape(R, C)
    mag = scaled.abs()
    index = e2m1_round_stochastic(mag, uniform) if stochastic else e2m1_round(mag)
    codes = torch.where(scaled < 0, index | 8, index)
    return NVFP4Tensor(pack_e2m1(codes), block_scales, global_scale, x.shape, block)


def nvfp4_dequantize(q: NVFP4Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """NVFP4Tensor -> a dense tensor of `q.shape` and `dtype`."""
    bh, bw = q.block
    values = e2m1_decode(unpack_e2m1(q.codes))  # [R, C]
    R, C = values.shape
    denom = (q.block_scales.float() * q.global_scale)[:, None, :, None]  # [R/bh, 1, C/bw, 1]
    full = (values.reshape(R // bh, bh, C // bw, bw) * denom).reshape(R, C)
    rows, cols = math.prod(q.shape[:-1]), q.shape[-1]
    return full[:rows, :cols].reshape(q.shape).to(dtype)
