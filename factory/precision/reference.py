"""Pure-Python references for the FP8 and NVFP4 quantizers: elementwise, slow, obviously correct.

They build each format's representable values from its bit layout, then round every element by looking at
its two neighbours on that list, in plain Python floats. Every fp32 operation of the fast path is
reproduced with `_f32` (a Python double rounded once to fp32, which equals the fp32 result for a single
+, -, *, /). The tests check the vectorised quantizers in `fp8.py` and `nvfp4.py` against these.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch

from factory.precision.fp8 import FP8_DTYPES, FP8_MAX
from factory.precision.nvfp4 import BLOCK, E2M1_GRID, E2M1_MAX, E4M3_MIN_SCALE, NVFP4Tensor

_FP32_MAX = float(np.finfo(np.float32).max)


def _f32(v: float) -> float:
    with np.errstate(over="ignore"):  # an fp32 overflow is inf, as in torch
        return float(np.float32(v))


@cache
def fp8_grid(fmt: str) -> tuple[float, ...]:
    """The non-negative finite values of an FP8 format, in code order (ascending, so code parity = index parity)."""
    exp_bits, man_bits, bias = {"e4m3": (4, 3, 7), "e5m2": (5, 2, 15)}[fmt]
    values = []
    for e in range(2**exp_bits):
        for m in range(2**man_bits):
            if fmt == "e4m3" and e == 15 and m == 7:  # E4M3 "fn": the all-ones code is NaN, no inf
                continue
            if fmt == "e5m2" and e == 31:  # E5M2: top exponent is inf / NaN
                continue
            if e == 0:  # subnormal
                values.append(m / 2**man_bits * 2.0 ** (1 - bias))
            else:
                values.append((1 + m / 2**man_bits) * 2.0 ** (e - bias))
    return tuple(values)


def round_to_grid(v: float, grid: tuple[float, ...]) -> tuple[float, int]:
    """Round |v| onto an ascending grid: nearest, ties to the even index, beyond the end saturates.

    Returns (signed value, index of the magnitude on the grid).
    """
    mag = abs(v)
    index = len(grid) - 1
    if mag < grid[-1]:
        i = max(j for j in range(len(grid)) if grid[j] <= mag)  # grid[i] <= mag < grid[i + 1]
        down, up = mag - grid[i], grid[i + 1] - mag
        index = i if down < up or (down == up and i % 2 == 0) else i + 1
    return (-grid[index] if v < 0 else grid[index]), index


def fp8_quantize_reference(x: torch.Tensor, fmt: str = "e4m3") -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as `fp8_quantize`: (data in FP8, scale) with data ~= x * scale, scale = max / amax."""
    values = [float(v) for v in x.float().flatten().tolist()]
    fmax = FP8_MAX[fmt]
    amax = max([abs(v) for v in values if math.isfinite(v)], default=0.0)
    scale = min(_f32(fmax / amax), _FP32_MAX) if amax > 0 else 1.0
    out = []
    for v in values:
        if math.isnan(v):
            out.append(math.nan)
            continue
        scaled = _f32(v * scale)  # +-inf stays +-inf here and saturates below
        scaled = max(-fmax, min(fmax, scaled))
        out.append(round_to_grid(scaled, fp8_grid(fmt))[0])
    data = torch.tensor(out, dtype=torch.float32).reshape(x.shape).to(FP8_DTYPES[fmt])
    return data, torch.tensor(scale, dtype=torch.float32)


def nvfp4_quantize_reference(
    x: torch.Tensor, block_2d: bool = False, uniform: torch.Tensor | None = None, global_scale: float | None = None
) -> NVFP4Tensor:
    """Same contract as `nvfp4_quantize`, one block and one element at a time.

    `uniform` [rows_p, cols_p] gives the U[0, 1) draws for stochastic rounding (None: round to nearest
    even); `nvfp4_quantize` with a generator draws exactly `torch.rand((rows_p, cols_p), generator=...)`.
    """
    bh, bw = (BLOCK, BLOCK) if block_2d else (1, BLOCK)
    cols = x.shape[-1]
    rows = x.numel() // cols
    rows_p, cols_p = rows + (-rows % bh), cols + (-cols % bw)
    flat = x.float().reshape(rows, cols).tolist()
    m = [[flat[r][c] if r < rows and c < cols else 0.0 for c in range(cols_p)] for r in range(rows_p)]

    amax = max([abs(v) for row in m for v in row if math.isfinite(v)], default=0.0)
    if global_scale is None:
        global_scale = _f32(amax / (E2M1_MAX * FP8_MAX["e4m3"])) or 1.0  # 1 when it is 0 (or underflows to 0)
    m = [[math.copysign(amax, v) if math.isinf(v) else v for v in row] for row in m]

    e4m3 = fp8_grid("e4m3")
    codes = [[0] * cols_p for _ in range(rows_p)]
    scales = [[0.0] * (cols_p // bw) for _ in range(rows_p // bh)]
    for br in range(rows_p // bh):
        for bc in range(cols_p // bw):
            cells = [(r, c) for r in range(br * bh, (br + 1) * bh) for c in range(bc * bw, (bc + 1) * bw)]
            block_values = [m[r][c] for r, c in cells]
            if any(math.isnan(v) for v in block_values):
                scales[br][bc] = math.nan  # the NaN block scale marks the whole block
                continue
            block_amax = max(abs(v) for v in block_values)
            raw = _f32(block_amax / _f32(E2M1_MAX * global_scale)) or 1.0  # an all-zero block: scale 1
            raw = min(max(raw, E4M3_MIN_SCALE), FP8_MAX["e4m3"])  # clamped into E4M3's range, never flushed to 0
            scale = round_to_grid(raw, e4m3)[0]
            scales[br][bc] = scale
            denom = _f32(scale * global_scale)
            for r, c in cells:
                v = _f32(m[r][c] / denom) if denom > 0 else 0.0  # 0 only when scale x global underflows fp32
                mag = min(abs(v), E2M1_MAX) if uniform is not None else abs(v)
                if uniform is None:
                    index = round_to_grid(mag, E2M1_GRID)[1]
                else:
                    lo = max(i for i, g in enumerate(E2M1_GRID) if g <= mag)
                    hi = min(lo + 1, len(E2M1_GRID) - 1)
                    p_up = _f32(_f32(mag - E2M1_GRID[lo]) / (E2M1_GRID[hi] - E2M1_GRID[lo])) if hi > lo else 0.0
                    index = lo + 1 if float(uniform[r, c]) < p_up else lo
                codes[r][c] = index + 8 if v < 0 else index

    # two codes per byte, the even column in the low nibble
    packed = [[row[c] | (row[c + 1] << 4) for c in range(0, cols_p, 2)] for row in codes]
    return NVFP4Tensor(
        codes=torch.tensor(packed, dtype=torch.uint8).reshape(rows_p, cols_p // 2),
        block_scales=torch.tensor(scales, dtype=torch.float32).to(torch.float8_e4m3fn),
        global_scale=torch.tensor(global_scale, dtype=torch.float32),
        shape=x.shape,
        block=(bh, bw),
    )
