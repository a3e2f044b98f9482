"""The pretrain stage's config: a model spec on the training-stage shell's parts (loading a spec imports it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from factory.cost.layout import ParallelLayout
from factory.engines.megatron.model_args import megatron_model_args
from factory.engines.megatron.parallel_args import megatron_parallel_args
from factory.engines.megatron.precision_args import te_recipe
from factory.errors import SpecError
from factory.model import ModelSpec
from factory.stage import no_effect
from factory.train.config import Blend, Loop, Parallelism, Precision, Sequences


class Config(Loop, Precision, Parallelism, Sequences, Blend):
    """Pretraining from scratch: a model spec plus the shell's loop, precision, parallelism, sequence and blend parts.
    Defaults: the tiny smoke run. Under torchrun, `micro_batch_size` is per data-parallel rank: the global batch is
    data-parallel ranks x micro_batch_size x grad_accum sequences."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="Model preset and overrides (factory.model.PRESETS); "
                             "not with an `init` input, whose model it continues.")
    engine: Literal["factory", "megatron"] = Field(
        "factory", description="What trains the model: 'factory' (the transformers model, torch DDP / FSDP2; CPU and "
        "GPU) or 'megatron' (Megatron-Core's MambaModel: tensor, pipeline, expert and data parallelism, distributed "
        "checkpoints, Transformer Engine's FP8 / NVFP4 on GPU; tensor and data parallelism in fp32 / bf16 on CPU). "
        "Both read the same data in the same order and export the same model/ format.")
    layout: ParallelLayout | None = no_effect(
        None, "engine megatron only: data x tensor x pipeline x context parallel sizes (their product is the torchrun "
        "world size) and `sharding: optimizer` for Megatron's distributed optimizer; None: data parallel over every "
        "rank. Changes float summation order only.")
    expert_parallel: int = no_effect(
        1, "engine megatron only: expert-parallel size for MoE layers, carved out of the data-parallel ranks (GPU).")

    @model_validator(mode="after")
    def _engine_settings(self) -> Config:
        """Every setting is honoured by the engine that reads it, or refused here with one line."""
        if self.engine == "factory":
            for name, default in (("layout", None), ("expert_parallel", 1)):
                if getattr(self, name) != default:
                    raise ValueError(f"{name}: read by engine megatron only; the factory engine lays data parallelism out "
                                     "with data_parallel")
            return self
        refusals = [
            (self.data_parallel != "ddp", ("data_parallel: fsdp is the factory engine's; engine megatron shards with "
                                           "layout.sharding: optimizer (Megatron's distributed optimizer)")),
            (self.compile, "compile: the factory engine's torch.compile; engine megatron runs Megatron's modules as they are"),
            (self.activation_checkpointing, ("activation_checkpointing: Megatron's hybrid Mamba stack recomputes no "
                                             "layers; leave it off with engine megatron")),
            (self.fused_optimizer is not None, ("fused_optimizer: engine megatron picks its optimizer (the factory's "
                                                "AdamW on CPU, Megatron's fused Adam on GPU); leave it unset")),
        ]
        for refused, message in refusals:
            if refused:
                raise ValueError(message)
        layout = self.layout or ParallelLayout()
        if layout.context > 1:
            raise ValueError("layout.context: the factory's batches are not split over context-parallel ranks; use "
                             "tensor, pipeline or data parallelism")
        if layout.sharding == "fsdp":
            raise ValueError("layout.sharding: Megatron FSDP is not built; use none or optimizer (the distributed "
                             "optimizer)")
        try:  # the model's own settings (an `init` model's are checked when the run reads it)
            model = self.model.resolve()
            megatron_model_args(model, vocab_size=1, seq_length=self.seq_len)
            megatron_parallel_args(layout, model, expert=1, where="layout")
            if self.expert_parallel > 1 and (not model.moe_num_experts or model.moe_num_experts % self.expert_parallel):
                raise SpecError(f"expert_parallel: {self.expert_parallel} must divide the model's "
                                f"{model.moe_num_experts} experts")
            if self.precision in ("fp8", "nvfp4"):
                te_recipe(self.precision, self.precision_options, model.num_layers)
        except SpecError as e:  # pydantic reports a ValueError with the field's path
            raise ValueError(str(e)) from None
        return self

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
