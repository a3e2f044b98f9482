"""Training linears whose three GEMMs run in FP8 or NVFP4; the master weights stay in high precision.

A linear y = x W^T + b has three GEMMs, each quantized along its own reduction dim:
    forward  y      = x  @ W^T     x [M, K], W [N, K]   reduce over K (features in)
    dgrad    grad_x = gy @ W       gy [M, N]            reduce over N (features out)
    wgrad    grad_W = gy^T @ x                          reduce over M (tokens)

Both modules subclass `nn.Linear`, so parameters, state-dict keys and HF checkpoints are unchanged; only
the arithmetic differs. Under autocast the output takes the autocast dtype (as `nn.Linear` would); the
quantized arithmetic itself runs with autocast off so that emulation is exact.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from factory.precision.fp8 import Fp8Format, fp8_quantize, scaled_mm
from factory.precision.hadamard import apply_hadamard, random_hadamard_matrix
from factory.precision.nvfp4 import nvfp4_dequantize, nvfp4_quantize


def _output_dtype(x: torch.Tensor) -> torch.dtype:
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class _Float8LinearFn(torch.autograd.Function):
    """FP8 linear: E4M3 x and W (tensorwise current scaling), gradients of the output in `grad_format`."""

    @staticmethod
    def forward(ctx: Any, x, weight, bias, grad_format: Fp8Format, out_dtype: torch.dtype):
        with torch.autocast(x.device.type, enabled=False):
            x2 = x.reshape(-1, x.shape[-1])  # [M, K]
            xq, sx = fp8_quantize(x2, "e4m3")
            wq, sw = fp8_quantize(weight, "e4m3")  # [N, K]
            y = scaled_mm(xq, wq.t(), sx.reciprocal(), sw.reciprocal())  # [M, N] fp32
            if bias is not None:
                y = y + bias.float()
        # The FP8 copies (1 byte per value) are what backward needs; x and W in high precision are not kept.
        ctx.save_for_backward(xq, sx, wq, sw)
        ctx.grad_format, ctx.has_bias = grad_format, bias is not None
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return y.to(out_dtype).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad_y):
        xq, sx, wq, sw = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        with torch.autocast(grad_y.device.type, enabled=False):
            g2 = grad_y.reshape(-1, grad_y.shape[-1])  # [M, N]
            gq, sg = fp8_quantize(g2, ctx.grad_format)
            grad_x = scaled_mm(gq, wq, sg.reciprocal(), sw.reciprocal())  # [M, K]
            grad_w = scaled_mm(gq.t(), xq, sg.reciprocal(), sx.reciprocal())  # [N, K]
            grad_b = g2.float().sum(0).to(b_dtype) if ctx.has_bias else None
        grad_x = grad_x.to(x_dtype).reshape(*grad_y.shape[:-1], xq.shape[-1])
        return grad_x, grad_w.to(w_dtype), grad_b, None, None


class Float8Linear(nn.Linear):
    """`nn.Linear` whose forward, dgrad and wgrad GEMMs run in FP8 (`torch._scaled_mm` or its emulation).

    Forward: x and W in E4M3, each with its own current (amax) scale. Backward: grad_y in `grad_format`
    (E5M2 by default: more range, which gradients need) times the saved E4M3 x and W.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, grad_format: Fp8Format = "e5m2",
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.grad_format = grad_format

    @classmethod
    def from_linear(cls, linear: nn.Linear, grad_format: Fp8Format = "e5m2") -> Float8Linear:
        """Wrap an existing linear, sharing its parameters (an optimizer built on them keeps working)."""
        with torch.device("meta"):
            new = cls(linear.in_features, linear.out_features, linear.bias is not None, grad_format)
        new.weight, new.bias = linear.weight, linear.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Float8LinearFn.apply(x, self.weight, self.bias, self.grad_format, _output_dtype(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fp8=e4m3, grad_format={self.grad_format}"


class _NVFP4LinearFn(torch.autograd.Function):
    """NVFP4 linear after the Nemotron 3 recipe (emulated: quantize -> dequantize -> fp32 GEMM)."""

    @staticmethod
    def forward(ctx: Any, x, weight, bias, module: NVFP4Linear, out_dtype: torch.dtype):
        with torch.autocast(x.device.type, enabled=False):
            x2 = x.reshape(-1, x.shape[-1]).float()  # [M, K]
            xq = nvfp4_dequantize(nvfp4_quantize(x2))  # 1x16 blocks along K
            # 16x16 blocks: W and W^T quantize alike, so dgrad reuses exactly this quantized weight.
            wq = nvfp4_dequantize(nvfp4_quantize(weight, block_2d=module.weight_2d_blocks))  # [N, K]
            y = xq @ wq.t()  # [M, N]
            if bias is not None:
                y = y + bias.float()
        ctx.save_for_backward(x2, wq)
        ctx.module, ctx.has_bias = module, bias is not None
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return y.to(out_dtype).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad_y):
        x2, wq = ctx.saved_tensors
        module: NVFP4Linear = ctx.module
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        sr = module.stochastic_rounding
        gen = module.generator(grad_y.device) if sr else None
        with torch.autocast(grad_y.device.type, enabled=False):
            g2 = grad_y.reshape(-1, grad_y.shape[-1]).float()  # [M, N]
            # dgrad reduces over N: grad_y in 1x16 blocks along N, stochastically rounded.
            gq = nvfp4_dequantize(nvfp4_quantize(g2, stochastic=sr, generator=gen))
            grad_x = gq @ wq  # [M, K]
            # wgrad reduces over M: both operands laid out [*, M], blocks along M, the RHT mixing M.
            gt, xt = g2.t(), x2.t()  # [N, M], [K, M]
            if module.hadamard:
                h = random_hadamard_matrix(16, module.seed, g2.device)
                gt, xt = apply_hadamard(gt, h), apply_hadamard(xt, h)  # [N, M_p], [K, M_p]
            gtq = nvfp4_dequantize(nvfp4_quantize(gt, stochastic=sr, generator=gen))
            xtq = nvfp4_dequantize(nvfp4_quantize(xt))
            grad_w = gtq @ xtq.t()  # [N, K]
            grad_b = g2.sum(0).to(b_dtype) if ctx.has_bias else None
        grad_x = grad_x.to(x_dtype).reshape(*grad_y.shape[:-1], x2.shape[-1])
        return grad_x, grad_w.to(w_dtype), grad_b, None, None


class NVFP4Linear(nn.Linear):
    """`nn.Linear` trained in NVFP4 (Nemotron 3 recipe), emulated exactly on any device.

    Inputs in 1x16 blocks, weights in 16x16 blocks (`weight_2d_blocks`), gradients stochastically rounded
    (`stochastic_rounding`, draws from a generator seeded with `seed`), and a 16x16 random Hadamard
    transform on both inputs of the weight-gradient GEMM (`hadamard`).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, weight_2d_blocks: bool = True,
                 stochastic_rounding: bool = True, hadamard: bool = True, seed: int = 0, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.weight_2d_blocks, self.stochastic_rounding, self.hadamard = weight_2d_blocks, stochastic_rounding, hadamard
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    @classmethod
    def from_linear(cls, linear: nn.Linear, **options: Any) -> NVFP4Linear:
        """Wrap an existing linear, sharing its parameters; `options` are the keyword knobs of `__init__`."""
        with torch.device("meta"):
            new = cls(linear.in_features, linear.out_features, linear.bias is not None, **options)
        new.weight, new.bias = linear.weight, linear.bias
        return new

    def generator(self, device: torch.device) -> torch.Generator:
        """The seeded generator for stochastic rounding on `device` (one stream per module and device)."""
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NVFP4LinearFn.apply(x, self.weight, self.bias, self, _output_dtype(x))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, nvfp4, weight_2d_blocks={self.weight_2d_blocks}, "
                f"stochastic_rounding={self.stochastic_rounding}, hadamard={self.hadamard}")
