"""The order of model converters, rewrites of a built model applied before training (STYLE rule 8).

A converter (torchtitan's idea) has a `name` and a `convert(model) -> model`, and records itself on the
model with `record_converter`, which refuses one that runs out of `CONVERTER_ORDER` or twice. The order lives
here, below every package that converts a model (precision, train, the compress stage):

    prune                     compression changes shapes, so it runs before anything sees the layers
    precision                 FP8 / NVFP4 training linears (`factory.precision.convert_model`), with the layers
                              kept in high precision chosen by name (`PrecisionConfig.high_precision_layers`)
    activation_checkpointing  recompute each block in the backward pass; it wraps the final modules
    compile, shard            torch.compile and data parallelism (`factory.train.parallel.parallelize`) wrap
                              modules and parameters, so they come last

The training stages' converters are `factory.train.converters`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from factory.errors import SpecError

if TYPE_CHECKING:
    from torch import nn

CONVERTER_ORDER: tuple[str, ...] = ("prune", "precision", "activation_checkpointing", "compile", "shard")
_APPLIED_ATTR = "_factory_converters"

__all__ = ["CONVERTER_ORDER", "ConverterOrderError", "ModelConverter", "applied_converters", "apply_converters", "check_order",
           "record_converter"]


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
