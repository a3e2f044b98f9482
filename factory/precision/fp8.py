"""FP8 (E4M3 and E5M2) with tensorwise current scaling, and the scaled GEMM that consumes it.

Convention (the one torchao's Float8 training uses): `fp8_quantize(x)` returns `(data, scale)` where
`scale = fp8_max / amax(x)` is the *quantization multiplier*, `data ~= x * scale` in FP8, and

    fp8_dequantize(data, scale) == data.float() / scale

Special values, chosen for training:
- values beyond the format's max (after scaling) saturate to +-max, never inf (E4M3 has no inf at all);
- +-inf saturate to +-max as well, and the amax that sets the scale is taken over the finite values only,
  so one overflowed element does not zero the rest of the tensor;
- NaN stays NaN (both formats have a NaN), so a diverging run stays visibly diverging;
- amax == 0 (an all-zero tensor) gives scale 1, so zeros stay zeros;
- rounding is round-to-nearest-even (torch's cast), subnormals included.
"""

from __future__ import annotations

from typing import Literal

import torch

Fp8Format = Literal["e4m3", "e5m2"]

FP8_DTYPES: dict[str, torch.dtype] = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
FP8_MAX: dict[str, float] = {"e4m3": 448.0, "e5m2": 57344.0}
_FP32_MAX = torch.finfo(torch.float32).max


def finite_amax(x: torch.Tensor) -> torch.Tensor:
    """max |x| over the finite elements, as an fp32 scalar (0 for an empty or all-non-finite tensor)."""
    x = x.float()
    if x.numel() == 0:
        return torch.zeros((), device=x.device)
    return torch.where(torch.isfinite(x), x.abs(), 0.0).amax()


def fp8_scale(amax: torch.Tensor, fmt: Fp8Format = "e4m3") -> torch.Tensor:
    """Current scaling: fp8_max / amax, 1 where amax is 0, capped so that it stays a finite fp32."""
    amax = amax.float()
    # a tensor numerator: `float / tensor` is reciprocal-then-multiply in torch, which rounds twice
    scale = amax.new_tensor(FP8_MAX[fmt]) / torch.where(amax > 0, amax, 1.0)
    return torch.where(amax > 0, scale, 1.0).clamp(max=_FP32_MAX)


def fp8_quantize(
    x: torch.Tensor, fmt: Fp8Format = "e4m3", scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize `x` (any shape, any float dtype) to FP8 with one scale for the whole tensor.

    Returns `(data, scale)`: `data` has x's shape and dtype float8_e4m3fn / float8_e5m2, `scale` is an fp32
    scalar with `data ~= x * scale`. Pass `scale` to reuse a known scale (delayed scaling) instead of the
    tensor's own amax.
    """
    if fmt not in FP8_DTYPES:
        raise ValueError(f"fp8 format must be one of {sorted(FP8_DTYPES)}, got {fmt!r}")
    x32 = x.float()
    if scale is None:
        scale = fp8_scale(finite_amax(x32), fmt)
    fmax = FP8_MAX[fmt]
    # clamp saturates overflow and +-inf and keeps NaN; the cast then rounds to nearest even.
    data = (x32 * scale).clamp(-fmax, fmax).to(FP8_DTYPES[fmt])
    return data, scale.float()


def fp8_dequantize(data: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of `fp8_quantize`: data.float() / scale, cast to `dtype`."""
    return (data.float() / scale).to(dtype)


def native_fp8_available(device: torch.device) -> bool:
    """True where `torch._scaled_mm` runs FP8 GEMMs in hardware: CUDA with compute capability >= 8.9."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def scaled_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    out_dtype: torch.dtype = torch.float32,
    native: bool | None = None,
) -> torch.Tensor:
    """(a.float() @ b.float()) * scale_a * scale_b, with a [M, K] and b [K, N] FP8 and scalar fp32 scales.

    The scales here are *dequantization* multipliers (1 / the `scale` of `fp8_quantize`), as in
    `torch._scaled_mm`. `native=None` picks `torch._scaled_mm` on GPUs that have FP8 tensor cores (when
    every dimension is a multiple of 16, which the kernel requires) and otherwise the emulation: the
    products of two FP8 values are exact in fp32 and the emulation sums them in fp32, while Hopper's FP8
    tensor cores accumulate with fewer mantissa bits (about 1.3e-4 relative error against the exact sum,
    measured on an H100; tests/precision/test_fp8_format.py bounds it).
    """
    if native is None:
        native = native_fp8_available(a.device) and all(d % 16 == 0 for d in (*a.shape, b.shape[1]))
    if native:
        # the kernel wants a row-major and b column-major
        return torch._scaled_mm(
            a.contiguous(), b.t().contiguous().t(), scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype
        )
    return ((a.float() @ b.float()) * (scale_a * scale_b)).to(out_dtype)
