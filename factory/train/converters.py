"""The training converters the shell applies before training, in `CONVERTER_ORDER` (`factory.model.converter_order`).

    model = apply_converters(model, training_converters("fp8", PrecisionConfig(), activation_checkpointing=True))

`compile` and `shard` are applied by `factory.train.parallel.parallelize`, after these.
"""

from __future__ import annotations

from torch import nn

from factory.model.converter_order import ModelConverter, apply_converters, record_converter
from factory.precision import convert_model
from factory.precision.config import PrecisionConfig


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


__all__ = ["ActivationCheckpointing", "LowPrecisionLinears", "apply_converters", "training_converters"]
