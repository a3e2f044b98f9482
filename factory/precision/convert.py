"""The precision converter: rewrites a model's linears for FP8 or NVFP4 training before training starts.

    model = NemotronHForCausalLM(config)
    convert_model(model, "fp8", PrecisionConfig(keep_first_n=1, keep_last_n=1))
    optimizer = torch.optim.AdamW(model.parameters())  # parameters are shared, before or after

The model's *blocks* are the entries of its longest `nn.ModuleList` (`backbone.layers` in Nemotron-H); a
model without one counts each `nn.Linear` as a block. The linears inside the blocks are swapped, except in
the first `keep_first_n` and last `keep_last_n` blocks; linears outside the blocks (the LM head) and
embeddings stay in high precision, as the Nemotron recipes keep the first and last layers in BF16.

Converters are applied in a fixed order (`CONVERTER_ORDER`); each one records itself on the model and
`record_converter` raises when one runs after a converter that must come later, or runs twice.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from factory.precision.config import PrecisionConfig
from factory.precision.linear import Float8Linear, NVFP4Linear

Recipe = Literal["bf16", "fp8", "nvfp4"]
RECIPES: tuple[str, ...] = ("bf16", "fp8", "nvfp4")

# Why this order: pruning changes shapes, so it runs before the linears are swapped; activation
# checkpointing, torch.compile and sharding (FSDP) wrap modules and parameters, so they see the final ones.
CONVERTER_ORDER: tuple[str, ...] = ("prune", "precision", "activation_checkpointing", "compile", "shard")
_APPLIED_ATTR = "_factory_converters"


class ConverterOrderError(RuntimeError):
    """A model converter ran out of order (or twice)."""


def record_converter(model: nn.Module, name: str) -> None:
    """Note that converter `name` is being applied to `model`; raise if that breaks `CONVERTER_ORDER`."""
    if name not in CONVERTER_ORDER:
        raise ValueError(f"unknown converter {name!r}; known, in order: {', '.join(CONVERTER_ORDER)}")
    applied: list[str] = list(getattr(model, _APPLIED_ATTR, []))
    for earlier in applied:
        if CONVERTER_ORDER.index(earlier) >= CONVERTER_ORDER.index(name):
            raise ConverterOrderError(
                f"converter {name!r} cannot run after {earlier!r} (already applied: {applied}); "
                f"apply converters in the order {' -> '.join(CONVERTER_ORDER)}, each once"
            )
    setattr(model, _APPLIED_ATTR, [*applied, name])


def applied_converters(model: nn.Module) -> list[str]:
    """The converters applied to `model` so far, in order."""
    return list(getattr(model, _APPLIED_ATTR, []))


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's blocks as (qualified name, module): its longest `nn.ModuleList`, else each `nn.Linear`."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if lists:
        name, longest = max(lists, key=lambda item: len(item[1]))  # max keeps the first of equal lengths
        return [(f"{name}.{i}" if name else str(i), block) for i, block in enumerate(longest)]
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def plan_conversion(model: nn.Module, config: PrecisionConfig) -> tuple[list[str], list[str]]:
    """(names of the linears to convert, names of the linears kept in high precision), in model order."""
    blocks = find_blocks(model)
    converted_blocks = blocks[config.keep_first_n : max(config.keep_first_n, len(blocks) - config.keep_last_n)]
    to_convert: set[str] = set()
    for block_name, block in converted_blocks:
        if isinstance(block, nn.Linear):
            to_convert.add(block_name)
        to_convert |= {f"{block_name}.{n}" for n, m in block.named_modules() if n and isinstance(m, nn.Linear)}
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return [n for n in linears if n in to_convert], [n for n in linears if n not in to_convert]


def convert_model(model: nn.Module, recipe: Recipe, config: PrecisionConfig | None = None) -> nn.Module:
    """Swap the model's linears in place for `recipe` ("bf16": none; "fp8": Float8Linear; "nvfp4":
    NVFP4Linear), keeping the configured first/last blocks; returns the model.

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
    "CONVERTER_ORDER",
    "ConverterOrderError",
    "PrecisionConfig",
    "applied_converters",
    "convert_model",
    "count_low_precision",
    "find_blocks",
    "plan_conversion",
    "record_converter",
]
