"""The pretrain stage's config: a model spec on the training-stage shell's parts (loading a spec imports it)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from factory.model import ModelSpec
from factory.train.config import Blend, Loop, Parallelism, Precision, Sequences


class Config(Loop, Precision, Parallelism, Sequences, Blend):
    """Pretraining from scratch: a model spec plus the shell's loop, precision, parallelism, sequence and blend parts.
    Defaults: the tiny smoke run. Under torchrun, `micro_batch_size` is per rank: the global batch is world size x
    micro_batch_size x grad_accum sequences."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="Model preset and overrides (factory.model.PRESETS).")


def spec_defaults(config: dict[str, Any], spec: Any) -> dict[str, Any]:
    """The spec's top-level model preset is each pretrain step's model unless the step names its own."""
    if "model" in spec.data and "model" not in config:
        return {**config, "model": spec.data["model"]}
    return config


def architecture(config: Config, storage: Any = None) -> str:
    """Pretraining builds the factory's hybrid, transformers' `NemotronHForCausalLM` (`factory.model`)."""
    return "NemotronHForCausalLM"
