"""Model converters: rewrites of a built model applied before training, in a checked order (STYLE rule 8).

A converter (torchtitan's idea) has a `name` and a `convert(model) -> model`. Precision recipes swap
linears for FP8 / NVFP4 training linears and keep chosen layers in high precision; compression
prunes. Their order matters (prune before quantising; choose the high-precision layers before the
low-precision swap sees them), so `apply_converters` refuses a list out of `CONVERTER_ORDER`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from factory.errors import SpecError

if TYPE_CHECKING:
    from torch import nn

# Canonical order; a run uses any subsequence of it.
CONVERTER_ORDER: tuple[str, ...] = ("prune", "high_precision_layers", "float8", "nvfp4", "activation_checkpointing")


class ModelConverter(Protocol):
    name: str

    def convert(self, model: nn.Module) -> nn.Module: ...


class ActivationCheckpointing:
    """Recompute each block's activations in the backward pass (transformers' gradient checkpointing)."""

    name = "activation_checkpointing"

    def convert(self, model: nn.Module) -> nn.Module:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model


def check_order(names: Sequence[str]) -> None:
    """Raise `SpecError` unless `names` are known, distinct and in `CONVERTER_ORDER` order."""
    unknown = [n for n in names if n not in CONVERTER_ORDER]
    if unknown:
        raise SpecError(f"converters: unknown converter {unknown[0]!r}; known, in order: {list(CONVERTER_ORDER)}")
    ranks = [CONVERTER_ORDER.index(n) for n in names]
    if ranks != sorted(set(ranks)):
        raise SpecError(f"converters: {list(names)} must be distinct and in the order {list(CONVERTER_ORDER)}")


def apply_converters(model: nn.Module, converters: Sequence[ModelConverter]) -> nn.Module:
    """Apply `converters` in order, after checking that order."""
    check_order([c.name for c in converters])
    for converter in converters:
        model = converter.convert(model)
    return model


class LowPrecisionLinears:
    """Swap the linears inside the blocks for FP8 (`name="float8"`) or NVFP4 (`name="nvfp4"`) training
    linears (`factory.precision.convert_model`), keeping `options.keep_first_n` / `keep_last_n` blocks,
    embeddings and the LM head in high precision. Parameters are shared, so the state dict is unchanged."""

    def __init__(self, recipe: str, options=None) -> None:
        if recipe not in ("fp8", "nvfp4"):
            raise ValueError(f"recipe must be 'fp8' or 'nvfp4', got {recipe!r}")
        self.recipe, self.options = recipe, options
        self.name = "float8" if recipe == "fp8" else "nvfp4"

    def convert(self, model: nn.Module) -> nn.Module:
        from factory.precision import convert_model

        return convert_model(model, self.recipe, self.options)  # type: ignore[arg-type]


def precision_converters(precision: str, options=None) -> list[ModelConverter]:
    """The converters of a training `precision` ("fp32", "bf16", "fp8", "nvfp4"): fp32 and bf16 change
    no module (bf16 is autocast in the trainer)."""
    return [LowPrecisionLinears(precision, options)] if precision in ("fp8", "nvfp4") else []
