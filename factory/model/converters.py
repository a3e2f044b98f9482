"""Model converters: rewrites of a built model applied before training, in one checked order (STYLE rule 8).

A converter (torchtitan's idea) has a `name` and a `convert(model) -> model`, and records itself on the
model with `record_converter`, which refuses one that runs out of `CONVERTER_ORDER` or twice:

    prune                     compression changes shapes, so it runs before anything sees the layers
    precision                 FP8 / NVFP4 training linears (`factory.precision.convert_model`), with the layers
                              kept in high precision chosen by name (`PrecisionConfig.high_precision_layers`)
    activation_checkpointing  recompute each block in the backward pass; it wraps the final modules
    compile, shard            torch.compile and data parallelism (`factory.train.parallel.parallelize`) wrap
                              modules and parameters, so they come last

    model = apply_converters(model, training_converters("fp8", PrecisionConfig(), activation_checkpointing=True))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from factory.errors import SpecError

if TYPE_CHECKING:
    from torch import nn

    from factory.precision.config import PrecisionConfig

CONVERTER_ORDER: tuple[str, ...] = ("prune", "precision", "activation_checkpointing", "compile", "shard")
_APPLIED_ATTR = "_factory_converters"

__all__ = ["CONVERTER_ORDER", "ActivationCheckpointing", "ConverterOrderError", "LowPrecisionLinears", "ModelConverter",
           "applied_converters", "apply_converters", "check_order", "record_converter", "training_converters"]


class ConverterOrderError(RuntimeError):
    """A model converter ran out of order (or twice)."""


class ModelConverter(Protocol):
    name: str

    def convert(self, model: nn.Module) -> nn.Module: ...


def check_order(names: Sequence[str]) -> None:
    """Raise `SpecError` unless `names` are known, distinct and in `CONVERTER_ORDER` order."""
    unknown = [n for n in names if n not in CONVERTER_ORDER]
    if unknown:
        raise SpecError(f"converters: unknown converter {unknown[0]!r}; known, in order: {list(CONVERTER_ORDER)}")
    ranks = [CONVERTER_ORDER.index(n) for n in names]
    if ranks != sorted(set(ranks)):
        raise SpecError(f"converters: {list(names)} must be distinct and in the order {list(CONVERTER_ORDER)}")


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
    object.__setattr__(model, _APPLIED_ATTR, [*applied, name])  # a plain attribute: not in the state dict


def applied_converters(model: nn.Module) -> list[str]:
    """The converters applied to `model` so far, in order."""
    return list(getattr(model, _APPLIED_ATTR, []))


def apply_converters(model: nn.Module, converters: Sequence[ModelConverter]) -> nn.Module:
    """Apply `converters` in order, after checking that order."""
    check_order([c.name for c in converters])
    for converter in converters:
        model = converter.convert(model)
    return model


class LowPrecisionLinears:
    """Swap linears for FP8 (`recipe="fp8"`) or NVFP4 (`recipe="nvfp4"`) training linears
    (`factory.precision.convert_model`), except those `options.high_precision_layers` names. Parameters
    are shared, so the state dict is unchanged."""

    name = "precision"

    def __init__(self, recipe: str, options: PrecisionConfig | None = None) -> None:
        if recipe not in ("fp8", "nvfp4"):
            raise ValueError(f"recipe must be 'fp8' or 'nvfp4', got {recipe!r}")
        self.recipe, self.options = recipe, options

    def convert(self, model: nn.Module) -> nn.Module:
        from factory.precision import convert_model

        return convert_model(model, self.recipe, self.options)  # type: ignore[arg-type]


class ActivationCheckpointing:
    """Recompute each block's activations in the backward pass (transformers' gradient checkpointing): less
    activation memory for one more forward per block; the numbers are the same."""

    name = "activation_checkpointing"

    def convert(self, model: nn.Module) -> nn.Module:
        record_converter(model, self.name)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model


def training_converters(precision: str, options: PrecisionConfig | None = None,
                        activation_checkpointing: bool = False) -> list[ModelConverter]:
    """The converters of a training run: its `precision` ("fp32", "bf16", "fp8", "nvfp4"; fp32 and bf16 change
    no module, bf16 is autocast in the trainer), then activation checkpointing when asked."""
    converters: list[ModelConverter] = []
    if precision in ("fp8", "nvfp4"):
        converters.append(LowPrecisionLinears(precision, options))
    if activation_checkpointing:
        converters.append(ActivationCheckpointing())
    return converters
