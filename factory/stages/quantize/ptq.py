"""Post-training quantization of a causal LM (NemotronH, Llama, Qwen2/3, Mistral) on `factory.precision`'s FP8 and
NVFP4 formats, with Model Optimizer's export arithmetic.

Calibration runs the BF16 model (weights rounded through BF16, FP32 compute) over calibration windows and records,
per linear, the amax of its input; per attention layer the amax of K and V as the attention sees them (after RoPE,
before the heads are repeated: what the KV cache stores, where Model Optimizer's KV quantizers sit); and which
linears read one and the same input tensor (q/k/v; gate/up in the Llama family): the groups an engine fuses into one
GEMM. Then each quantized linear gets (scales are *dequantization* multipliers, Model Optimizer's convention):

    FP8    weight  float8_e4m3fn [out, in]          weight_scale  fp32 scalar  = amax(W) / 448
           input_scale fp32 scalar = calibrated amax(x) / 448
    NVFP4  weight  uint8 [out, in / 2]  (two E2M1 codes per byte, even column in the low nibble)
           weight_scale float8_e4m3fn [out, in / 16]  (1 x 16 blocks)
           weight_scale_2 fp32 scalar = amax / (6 * 448), amax over the weights of its fused group
           input_scale fp32 scalar    = calibrated amax(x) / (6 * 448), amax over the inputs of its fused group
    KV     k_scale, v_scale fp32 scalars = calibrated amax(k), amax(v) / 448   (FP8 KV cache)

A fused group shares its NVFP4 global scales, as Model Optimizer's export makes them: vLLM loads q/k/v as one
`qkv_proj` (gate/up as one `gate_up_proj`) with one `weight_scale_2`, the largest of the group's, so separate scales
would dequantize the others too large. FP8 groups keep a scale each (vLLM requantizes them to the largest on load),
as Model Optimizer writes them.

Kept in BF16 by rule: conv1d (not a linear), embeddings, lm_head, MoE routers (`mixer.gate`), and whatever
`exclude` names (fnmatch patterns on module names). A fused group always shares one format. With a `bits_budget`,
`choose_formats` measures each unit's sensitivity (calibration loss increase when it alone is NVFP4) and picks per
unit NVFP4 / FP8 / BF16 under the effective-bits budget.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from factory.model.checkpoints import lm_loss
from factory.precision.fp8 import FP8_MAX, finite_amax, fp8_quantize
from factory.precision.nvfp4 import BLOCK, E2M1_MAX, NVFP4Tensor, nvfp4_dequantize, nvfp4_global_scale, nvfp4_quantize

FORMATS = ("bf16", "fp8", "nvfp4")
# Bits per weight, scales included: NVFP4 = 4 + 8 / 16 (one E4M3 scale per block of 16 values).
BITS = {"bf16": 16.0, "fp8": 8.0, "nvfp4": 4.0 + 8.0 / BLOCK}
ALWAYS_BF16 = ("lm_head", "*.mixer.gate", "*.mixer.gate.*", "*conv1d*", "*embeddings*", "*embed_tokens*")
NVFP4_DIVISOR = E2M1_MAX * FP8_MAX["e4m3"]  # 6 * 448: amax -> NVFP4 global scale

# The attention implementation that sees K and V as the KV cache stores them (transformers calls it with the
# attention module and K, V after RoPE, before the heads are repeated). Calibration records their amax through it;
# a model loaded back from an FP8-KV export rounds them through FP8 with the stored scales. Both then run sdpa,
# transformers' default attention, so nothing else changes.
KV_ATTENTION = "factory_kv_cache"
_kv_actions: WeakKeyDictionary[nn.Module, Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = WeakKeyDictionary()


def _kv_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args, **kwargs):
    action = _kv_actions.get(module)
    if action is not None:
        key, value = action(key, value)
    return sdpa_attention_forward(module, query, key, value, *args, **kwargs)


AttentionInterface.register(KV_ATTENTION, _kv_attention)


def set_kv_action(attention: nn.Module, action: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Run `action(k, v) -> (k, v)` on the K and V an attention module attends to (while its model's attention
    implementation is KV_ATTENTION)."""
    _kv_actions[attention] = action


@contextmanager
def kv_attention(model: nn.Module) -> Iterator[None]:
    """`model` attends through KV_ATTENTION inside the block, through its own implementation again after it."""
    before = model.config._attn_implementation
    model.set_attn_implementation(KV_ATTENTION)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def quantizable_linears(model: nn.Module, exclude: tuple[str, ...] = ()) -> dict[str, nn.Linear]:
    """The nn.Linear modules PTQ may quantize: not kept in BF16 by rule nor by `exclude`."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not any(fnmatch.fnmatch(name, p) for p in (*ALWAYS_BF16, *exclude)):
            out[name] = module
    return out


def format_units(names: list[str], fused: list[list[str]]) -> list[list[str]]:
    """Linears that must share a format, in `names`' order: each fused group of `fused` (linears reading one input,
    which an engine runs as one GEMM), every other linear alone."""
    group_of = {n: tuple(g) for g in fused for n in g}
    units: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        units.setdefault(group_of.get(name, (name,)), []).append(name)
    return list(units.values())


@dataclass
class Calibration:
    """Calibrated maxima and the fused groups (module names)."""

    input_amax: dict[str, float] = field(default_factory=dict)
    kv_amax: dict[str, float] = field(default_factory=dict)  # "<attention>.k_proj" / ".v_proj" -> amax of its K / V
    fused: list[list[str]] = field(default_factory=list)  # linears that read one and the same input tensor, 2 or more


def calibrate(model: nn.Module, windows: torch.Tensor, batch_size: int = 8) -> Calibration:
    """Run `model` over windows (N, T+1) and record the amax of every linear's input, of K and V per attention layer,
    and the linears that share an input."""
    cal = Calibration()
    hooks = []
    # id(input) -> (the input, kept alive so that no other tensor takes its id during the pass; the linears reading it)
    readers: dict[int, tuple[torch.Tensor, list[str]]] = {}

    def hook(name: str):
        def fn(module, args, out):
            x = args[0]
            cal.input_amax[name] = max(cal.input_amax.get(name, 0.0), float(x.detach().abs().amax()))
            if start == 0:  # one pass shows which linears share an input (the same tensor object)
                readers.setdefault(id(x), (x, []))[1].append(name)
        return fn

    def observe(name: str):
        def action(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            for proj, t in (("k_proj", k), ("v_proj", v)):
                cal.kv_amax[f"{name}.{proj}"] = max(cal.kv_amax.get(f"{name}.{proj}", 0.0), float(t.detach().abs().amax()))
            return k, v
        return action

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(hook(name)))
        elif _is_attention(module):
            set_kv_action(module, observe(name))
    try:
        with torch.no_grad(), kv_attention(model):
            for start in range(0, windows.shape[0], batch_size):
                model(input_ids=windows[start : start + batch_size, :-1], use_cache=False)
    finally:
        for h in hooks:
            h.remove()
        for module in model.modules():
            _kv_actions.pop(module, None)
    cal.fused = [names for _, names in readers.values() if len(names) > 1]
    return cal


def _is_attention(module: nn.Module) -> bool:
    """An attention layer whose K and V go to a KV cache: it owns k_proj and v_proj linears."""
    return isinstance(getattr(module, "k_proj", None), nn.Linear) and isinstance(getattr(module, "v_proj", None), nn.Linear)


def quantize_weight(weight: torch.Tensor, fmt: str, global_amax: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The exported tensors of one linear's weight [out, in] in `fmt` (see the module docstring), byte for byte
    what Model Optimizer's export of the BF16 model writes.

    FP8: weight_scale = amax / 448 in FP32; the codes are the BF16 weight divided by that scale *in BF16*, then cast to E4M3: the export divides the BF16 weight by
    an FP32 scalar, which rounds the quotient to BF16 before E4M3 (a few percent of the codes sit one step away from a
    direct FP32 rounding). NVFP4: `factory.precision.nvfp4_quantize` in 1 x 16 blocks, the quantizer training uses
    too, with the global scale `global_amax` / (6 * 448); `global_amax` (default: the weight's own amax) is the largest
    amax of the weights an engine fuses with this one.
    """
    w = weight.detach().float()
    if fmt == "fp8":
        amax = finite_amax(w)
        scale = amax / FP8_MAX["e4m3"] if amax > 0 else torch.tensor(1.0)
        data = (w.to(torch.bfloat16) / scale).clamp(-FP8_MAX["e4m3"], FP8_MAX["e4m3"]).to(torch.float8_e4m3fn)
        return {"weight": data, "weight_scale": scale}
    if fmt != "nvfp4":
        raise ValueError(f"format must be fp8 or nvfp4, got {fmt!r}")
    if w.ndim != 2 or w.shape[-1] % BLOCK:
        raise ValueError(f"NVFP4 needs a [out, in] weight with in divisible by {BLOCK}, got {tuple(w.shape)}")
    q = nvfp4_quantize(w, global_scale=None if global_amax is None else nvfp4_global_scale(global_amax.float().reshape(())))
    return {"weight": q.codes, "weight_scale": q.block_scales, "weight_scale_2": q.global_scale.reshape(())}


def input_scale(amax: float, fmt: str) -> torch.Tensor:
    """Static per-tensor input scale (dequantization multiplier) from a calibrated amax, divided in FP32."""
    divisor = FP8_MAX["e4m3"] if fmt == "fp8" else NVFP4_DIVISOR
    return torch.tensor(amax, dtype=torch.float32) / divisor if amax > 0 else torch.tensor(1.0)


def export_tensors(linears: dict[str, nn.Linear], formats: dict[str, str], calibration: Calibration) -> dict[str, dict[str, torch.Tensor]]:
    """Each quantized linear's exported tensors (weight, scales, input_scale), NVFP4 global scales shared across a
    fused group: the largest weight amax of the group sets every member's `weight_scale_2`, the largest input amax
    its `input_scale`."""
    group_of = {n: g for g in calibration.fused for n in g}
    out = {}
    for name, fmt in formats.items():
        if fmt == "bf16":
            continue
        members = [n for n in group_of.get(name, [name]) if formats.get(n) == fmt] if fmt == "nvfp4" else [name]
        w_amax = max(finite_amax(linears[n].weight.detach()) for n in members)
        x_amax = max(calibration.input_amax.get(n, 0.0) for n in members)
        out[name] = {**quantize_weight(linears[name].weight, fmt, w_amax if fmt == "nvfp4" else None),
                     "input_scale": input_scale(x_amax, fmt)}
    return out


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
        formats = {n: fmt for n in unit}
        apply_fake_quant(trial, formats, export_tensors({n: modules[n] for n in unit}, formats, calibration))
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
