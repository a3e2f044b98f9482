"""The factory's precision recipe and `PrecisionConfig` -> Transformer Engine recipe and Megatron-Core arguments.

FP8 is E4M3 forward with `fp8_grad_format` gradients (TE's `Format.HYBRID` when that is E5M2) under
tensorwise current scaling (`Float8CurrentScaling`, the spec's recipe), or delayed scaling on request.
NVFP4 is TE's `NVFP4BlockScaling`, whose switches are the negations of the spec's knobs. The spec's
high-precision layers become Megatron's `first_last_layers_bf16` counts.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from factory.errors import SpecError
from factory.precision.config import PrecisionConfig

_LAYER = re.compile(r"model\.layers\.(-?\d+)\.\*")


def te_recipe(recipe: str, precision: PrecisionConfig, num_layers: int,
              scaling: Literal["tensorwise", "delayed"] = "tensorwise") -> dict[str, Any]:
    """`{"te": {"class": TE recipe class name, **its kwargs} or None, "megatron": TransformerConfig fields}`."""
    if recipe == "bf16":
        return {"te": None, "megatron": {"bf16": True}}
    start, end = _bf16_layers(precision.high_precision_layers, num_layers)
    keep = {"first_last_layers_bf16": bool(start or end), "num_layers_at_start_in_bf16": start,
            "num_layers_at_end_in_bf16": end}
    if recipe == "fp8":
        fmt = "HYBRID" if precision.fp8_grad_format == "e5m2" else "E4M3"
        if scaling == "tensorwise":
            te = {"class": "Float8CurrentScaling", "fp8_format": fmt}
        elif scaling == "delayed":
            te = {"class": "DelayedScaling", "fp8_format": fmt, "amax_history_len": 1024, "amax_compute_algo": "max"}
        else:
            raise SpecError(f"fp8 scaling must be tensorwise or delayed, got {scaling!r}")
        return {"te": te, "megatron": {"bf16": True, "fp8": fmt.lower(), "fp8_recipe": scaling, **keep}}
    if recipe == "nvfp4":
        te = {"class": "NVFP4BlockScaling", "disable_rht": not precision.nvfp4_hadamard,
              "disable_stochastic_rounding": not precision.nvfp4_stochastic_rounding,
              "disable_2d_quantization": not precision.nvfp4_weight_2d_blocks}
        return {"te": te, "megatron": {"bf16": True, "fp4": "e2m1", "fp4_recipe": "nvfp4", **keep}}
    raise SpecError(f"pretrain.precision: the Megatron engine runs bf16, fp8 or nvfp4, got {recipe!r}")


def _bf16_layers(patterns: tuple[str, ...], num_layers: int) -> tuple[int, int]:
    """How many leading and trailing layers the patterns keep in BF16 (Megatron keeps whole layers only)."""
    first, last = set(), set()
    for pattern in patterns:
        if pattern == "lm_head":
            continue  # Megatron's output layer is never quantized
        match = _LAYER.fullmatch(pattern)
        if not match:
            raise SpecError(f"precision.high_precision_layers: {pattern!r} is not a whole layer "
                            "('model.layers.N.*'); the Megatron engine keeps only first and last layers in BF16")
        index = int(match.group(1))
        (last if index < 0 else first).add(index)
    start, end = len(first), len(last)
    if first != set(range(start)) or last != set(range(-end, 0)) or start + end > num_layers:
        raise SpecError(f"precision.high_precision_layers: {sorted(first)} / {sorted(last)} are not the first and last "
                        f"layers of a {num_layers}-layer model; the Megatron engine keeps only such runs in BF16")
    return start, end
