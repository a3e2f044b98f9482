"""Post-training quantization of a NemotronH model on `factory.precision`'s FP8 and NVFP4 formats.

Calibration runs the BF16/FP32 model over calibration windows and records, per linear, the amax of its
input, and per attention layer the amax of its K and V projections (the KV cache). Then each quantized
linear gets (scales are *dequantization* multipliers, Model Optimizer's convention):

    FP8    weight  float8_e4m3fn [out, in]          weight_scale  fp32 scalar  = amax(W) / 448
           input_scale fp32 scalar = calibrated amax(x) / 448
    NVFP4  weight  uint8 [out, in / 2]  (two E2M1 codes per byte, even column in the low nibble)
           weight_scale float8_e4m3fn [out, in / 16]  (1 x 16 blocks)
           weight_scale_2 fp32 scalar = amax(W) / (6 * 448)
           input_scale fp32 scalar    = calibrated amax(x) / (6 * 448)
    KV     k_scale, v_scale fp32 scalars = calibrated amax(k), amax(v) / 448   (FP8 KV cache)

Kept in BF16 by rule: conv1d (not a linear), embeddings, lm_head, MoE routers (`mixer.gate`), and whatever
`exclude` names (fnmatch patterns on module names). q, k and v always share one format. With a
`bits_budget`, `choose_formats` measures each unit's sensitivity (calibration loss increase when it alone
is NVFP4) and picks per unit NVFP4 / FP8 / BF16 under the effective-bits budget.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from factory.model.checkpoints import lm_loss
from factory.precision.fp8 import FP8_MAX, finite_amax, fp8_quantize
from factory.precision.nvfp4 import BLOCK, E2M1_MAX, NVFP4Tensor, nvfp4_dequantize, nvfp4_quantize

FORMATS = ("bf16", "fp8", "nvfp4")
# Bits per weight, scales included: NVFP4 = 4 + 8 / 16 (one E4M3 scale per block of 16 values).
BITS = {"bf16": 16.0, "fp8": 8.0, "nvfp4": 4.0 + 8.0 / BLOCK}
ALWAYS_BF16 = ("lm_head", "*.mixer.gate", "*.mixer.gate.*", "*conv1d*", "*embeddings*")


def quantizable_linears(model: nn.Module, exclude: tuple[str, ...] = ()) -> dict[str, nn.Linear]:
    """The nn.Linear modules PTQ may quantize: not kept in BF16 by rule nor by `exclude`."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not any(fnmatch.fnmatch(name, p) for p in (*ALWAYS_BF16, *exclude)):
            out[name] = module
    return out


def format_units(names: list[str]) -> list[list[str]]:
    """Linears that must share a format: q, k, v of one attention layer together, the rest alone."""
    units: dict[str, list[str]] = {}
    for name in names:
        key = name.rsplit(".", 1)[0] + ".qkv" if name.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj") else name
        units.setdefault(key, []).append(name)
    return list(units.values())


@dataclass
class Calibration:
    """Calibrated maxima: input amax per linear, K and V amax per attention layer (module names)."""

    input_amax: dict[str, float] = field(default_factory=dict)
    kv_amax: dict[str, float] = field(default_factory=dict)  # "<layer>.mixer.k_proj" / ".v_proj" -> amax of its output


def calibrate(model: nn.Module, windows: torch.Tensor, batch_size: int = 8) -> Calibration:
    """Run `model` over windows (N, T+1) and record the amax of every linear's input and of K and V."""
    cal = Calibration()
    hooks = []

    def hook(name: str):
        def fn(module, args, out):
            cal.input_amax[name] = max(cal.input_amax.get(name, 0.0), float(args[0].detach().abs().amax()))
            if name.endswith(("k_proj", "v_proj")):
                cal.kv_amax[name] = max(cal.kv_amax.get(name, 0.0), float(out.detach().abs().amax()))
        return fn

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            for start in range(0, windows.shape[0], batch_size):
                model(input_ids=windows[start : start + batch_size, :-1], use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return cal


def quantize_weight(weight: torch.Tensor, fmt: str) -> dict[str, torch.Tensor]:
    """The exported tensors of one linear's weight [out, in] in `fmt` (see the module docstring).

    Scales follow Model Optimizer's export arithmetic exactly (so the packed bytes match it bit for bit):
    FP8 divides by amax / 448; NVFP4 is `factory.precision.nvfp4_quantize` in 1 x 16 blocks, the quantizer
    training uses too.
    """
    w = weight.detach().float()
    if fmt == "fp8":
        amax = finite_amax(w)
        scale = torch.where(amax > 0, amax / FP8_MAX["e4m3"], torch.ones_like(amax))  # dequantization multiplier
        data = (w / scale).clamp(-FP8_MAX["e4m3"], FP8_MAX["e4m3"]).to(torch.float8_e4m3fn)
        return {"weight": data, "weight_scale": scale.reshape(())}
    if fmt != "nvfp4":
        raise ValueError(f"format must be fp8 or nvfp4, got {fmt!r}")
    if w.ndim != 2 or w.shape[-1] % BLOCK:
        raise ValueError(f"NVFP4 needs a [out, in] weight with in divisible by {BLOCK}, got {tuple(w.shape)}")
    q = nvfp4_quantize(w)
    return {"weight": q.codes, "weight_scale": q.block_scales, "weight_scale_2": q.global_scale.reshape(())}


def input_scale(amax: float, fmt: str) -> torch.Tensor:
    """Static per-tensor input scale (dequantization multiplier) from a calibrated amax."""
    divisor = FP8_MAX["e4m3"] if fmt == "fp8" else E2M1_MAX * FP8_MAX["e4m3"]
    return torch.tensor(amax / divisor if amax > 0 else 1.0, dtype=torch.float32)


def dequantize_weight(tensors: dict[str, torch.Tensor], fmt: str, shape: torch.Size) -> torch.Tensor:
    """fp32 weight [out, in] back from its exported tensors."""
    if fmt == "fp8":
        return tensors["weight"].float() * tensors["weight_scale"].float()
    q = NVFP4Tensor(tensors["weight"], tensors["weight_scale"], tensors["weight_scale_2"].float(), torch.Size(shape), (1, BLOCK))
    return nvfp4_dequantize(q)


class FakeQuantInput(nn.Module):
    """Wraps a linear whose weight already holds dequantized values: quantizes its input as the engine
    would (FP8: static per-tensor `input_scale`; NVFP4: 1 x 16 blocks, E4M3 block scales, with the static
    global scale) and dequantizes it again before the matmul."""

    def __init__(self, linear: nn.Linear, fmt: str, scale: torch.Tensor) -> None:
        super().__init__()
        self.linear, self.fmt = linear, fmt
        self.register_buffer("input_scale", scale.float().reshape(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        if self.fmt == "fp8":
            data, _ = fp8_quantize(x32, "e4m3", scale=1.0 / self.input_scale)
            xq = data.float() * self.input_scale
        else:
            xq = _nvfp4_static(x32, self.input_scale)
        return self.linear(xq.to(x.dtype))


def _nvfp4_static(x: torch.Tensor, global_scale: torch.Tensor) -> torch.Tensor:
    """NVFP4 fake quantization of activations [..., in] with a fixed global scale (vLLM's static `input_scale`)."""
    return nvfp4_dequantize(nvfp4_quantize(x, global_scale=global_scale))


def apply_fake_quant(model: nn.Module, formats: dict[str, str], exported: dict[str, dict[str, torch.Tensor]]) -> nn.Module:
    """Put dequantized weights and input fake-quantization into `model` for the linears in `formats`
    (name -> "fp8" | "nvfp4"), from `exported` tensors (name -> its tensors). In place; returns `model`."""
    modules = dict(model.named_modules())
    for name, fmt in formats.items():
        if fmt == "bf16":
            continue
        linear = modules[name]
        t = exported[name]
        with torch.no_grad():
            linear.weight.copy_(dequantize_weight(t, fmt, linear.weight.shape).to(linear.weight.dtype))
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name], child, FakeQuantInput(linear, fmt, t["input_scale"]))
    return model


def sensitivities(model: nn.Module, windows: torch.Tensor, units: list[list[str]], calibration: Calibration, fmt: str = "nvfp4") -> dict[int, float]:
    """Calibration-loss increase when unit i alone is in `fmt` (weights and inputs), per unit index."""
    base = lm_loss(model, windows)
    out = {}
    for i, unit in enumerate(units):
        trial = copy.deepcopy(model)
        modules = dict(trial.named_modules())
        exported = {n: {**quantize_weight(modules[n].weight.detach(), fmt), "input_scale": input_scale(calibration.input_amax.get(n, 0.0), fmt)} for n in unit}
        apply_fake_quant(trial, {n: fmt for n in unit}, exported)
        out[i] = lm_loss(trial, windows) - base
    return out


def choose_formats(units: list[list[str]], sizes: dict[str, int], sensitivity: dict[int, float], bits_budget: float) -> dict[str, str]:
    """Per-linear formats under an effective-bits budget (mean bits per quantizable weight).

    Start with every unit in NVFP4; promote units to FP8, most sensitive per added bit first, while the
    budget allows; then to BF16 the same way. Raises ValueError when even all-NVFP4 exceeds the budget.
    """
    total = sum(sizes.values())
    unit_size = [sum(sizes[n] for n in u) for u in units]
    chosen = ["nvfp4"] * len(units)

    def bits() -> float:
        return sum(BITS[f] * s for f, s in zip(chosen, unit_size)) / max(total, 1)

    if bits() > bits_budget + 1e-9:
        raise ValueError(f"bits_budget {bits_budget} is below NVFP4's {BITS['nvfp4']} bits per weight")
    for upgrade in ("fp8", "bf16"):
        order = sorted(range(len(units)), key=lambda i: -sensitivity.get(i, 0.0) / max(unit_size[i], 1))
        for i in order:
            previous = chosen[i]
            chosen[i] = upgrade
            if bits() > bits_budget + 1e-9:
                chosen[i] = previous
    return {n: f for u, f in zip(units, chosen) for n in u}


def effective_bits(formats: dict[str, str], sizes: dict[str, int]) -> float:
    total = sum(sizes[n] for n in formats)
    return sum(BITS[f] * sizes[n] for n, f in formats.items()) / max(total, 1) if total else math.nan
