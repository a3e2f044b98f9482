"""The precision converter: rewrites a model's linears for FP8 or NVFP4 training before training starts.

    model = NemotronHForCausalLM(config)
    convert_model(model, "fp8", PrecisionConfig(high_precision_layers=("lm_head", "model.layers.0.*")))
    optimizer = torch.optim.AdamW(model.parameters())  # parameters are shared, before or after

Every `nn.Linear` is swapped except those whose name matches one of `high_precision_layers`
(`factory.precision.layers`: shell patterns on module names, a layer index may count from the end). The
default keeps the first and last blocks (`model.layers.0.*`, `model.layers.-1.*` in Nemotron-H) and the
LM head in high precision, as the Nemotron recipes keep the first and last layers in BF16; embeddings
are not linears and are never swapped.

It is the "precision" step of the model converters (`factory.model.converter_order.CONVERTER_ORDER`) and
records itself on the model, so it refuses to run twice or after a converter that must come later.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from factory.model.converter_order import ConverterOrderError, applied_converters, record_converter
from factory.precision.config import PrecisionConfig
from factory.precision.layers import select_modules
from factory.precision.linear import Float8Linear, NVFP4Linear

Recipe = Literal["bf16", "fp8", "nvfp4"]
RECIPES: tuple[str, ...] = ("bf16", "fp8", "nvfp4")


def plan_conversion(model: nn.Module, config: PrecisionConfig) -> tuple[list[str], list[str]]:
    """(names of the linears to convert, names of the linears kept in high precision), in model order."""
    kept = set(select_modules(model, config.high_precision_layers))
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return [n for n in linears if n not in kept], [n for n in linears if n in kept]


def convert_model(model: nn.Module, recipe: Recipe, config: PrecisionConfig | None = None) -> nn.Module:
    """Swap the model's linears in place for `recipe` ("bf16": none; "fp8": Float8Linear; "nvfp4":
    NVFP4Linear), keeping the linears `config.high_precision_layers` names; returns the model.

    "bf16" changes no module: BF16 training is autocast in the trainer; the converter still records
    itself so that the order check sees one precision decision per model.
    """
    if recipe not in RECIPES:
        raise ValueError(f"precision recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    config = config or PrecisionConfig()
    record_converter(model, "precision")
    if recipe == "bf16":
        return model
    to_convert, _ = plan_conversion(model, config)
    for index, name in enumerate(to_convert):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        if recipe == "fp8":
            new = Float8Linear.from_linear(linear, grad_format=config.fp8_grad_format)
        else:
            new = NVFP4Linear.from_linear(
                linear,
                weight_2d_blocks=config.nvfp4_weight_2d_blocks,
                stochastic_rounding=config.nvfp4_stochastic_rounding,
                hadamard=config.nvfp4_hadamard,
                seed=config.seed + index,
            )
        setattr(parent, child, new)
    return model


def count_low_precision(model: nn.Module) -> dict[str, int]:
    """How many linears of each kind the model holds: {"fp8": n, "nvfp4": n, "high": n}."""
    counts = {"fp8": 0, "nvfp4": 0, "high": 0}
    for m in model.modules():
        if isinstance(m, Float8Linear):
            counts["fp8"] += 1
        elif isinstance(m, NVFP4Linear):
            counts["nvfp4"] += 1
        elif isinstance(m, nn.Linear):
            counts["high"] += 1
    return counts


__all__ = [
    "ConverterOrderError",
    "PrecisionConfig",
    "applied_converters",
    "convert_model",
    "count_low_precision",
    "plan_conversion",
    "record_converter",
]
