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

    model: ModelSpec = Field(default_factory=ModelSpec, description="Model preset and overrides (factory.model.PRESETS); "
                             "not with an `init` input, whose model it continues.")

    def check_wiring(self, inputs: Any) -> None:
        """Continued pretraining (an `init` input) keeps that model's architecture: a `model` of its own is refused."""
        if "init" in inputs and self.model != ModelSpec():
            raise ValueError(f"model: this step continues the model of step {inputs['init']} (its `init` input) and "
                             "keeps its architecture; remove `model` here and from the spec's top level")


def spec_defaults(config: dict[str, Any], spec: Any) -> dict[str, Any]:
    """The spec's top-level model preset is each pretrain step's model unless the step names its own, or continues an
    `init` model (whose architecture it keeps)."""
    if "model" in spec.data and "model" not in config and "init" not in spec.wired:
        return {**config, "model": spec.data["model"]}
    return config


def architecture(config: Config, storage: Any = None) -> str:
    """Pretraining from scratch builds the factory's hybrid, transformers' `NemotronHForCausalLM` (`factory.model`);
    with an `init` input the executor passes that model's on instead."""
    return "NemotronHForCausalLM"
