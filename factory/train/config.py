"""`TrainConfig`: the training-loop fields every train stage shares (pretrain, later SFT and distillation)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from factory.precision import PrecisionConfig
from factory.stage import StageConfig, no_effect

Precision = Literal["fp32", "bf16", "fp8", "nvfp4"]


class BlendPhase(BaseModel):
    """One phase of a data blend: the dataset weights used until `until_fraction` of the run's tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    until_fraction: float = Field(gt=0, le=1, description="This phase ends after this fraction of the run's tokens.")
    weights: dict[str, float] = Field(
        min_length=1, description="Dataset name -> sampling weight (normalised within the phase; all > 0)."
    )

    @model_validator(mode="after")
    def _positive(self) -> BlendPhase:
        bad = [name for name, w in self.weights.items() if not w > 0]
        if bad:
            raise ValueError(f"weights of {bad} must be > 0 (drop a dataset from the phase instead)")
        return self


class TrainConfig(StageConfig):
    """Optimiser, schedule, batch, checkpointing and stability settings of a training run."""

    seq_len: int = Field(128, gt=0, description="Tokens per training sequence.")
    micro_batch_size: int = Field(8, gt=0, description="Sequences per forward/backward pass.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches accumulated into one optimizer step.")
    steps: int = Field(200, gt=0, description="Optimizer steps to train.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate as a fraction of the peak.")
    warmup_steps: int = Field(20, ge=0, description="Steps of linear warmup.")
    decay_fraction: float = Field(0.2, ge=0, le=1, description="Fraction of the steps spent in the final linear decay (WSD).")
    weight_decay: float = Field(0.1, ge=0, description="Decoupled AdamW weight decay (not on norms, biases, embeddings).")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW beta1, beta2.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm to this (0 = no clipping).")
    seed: int = Field(0, description="Seed of the model init and of the data order.")
    checkpoint_interval: int = Field(100, ge=0, description="Steps between resumable checkpoints (0 = none).")
    keep_checkpoints: int = Field(2, ge=1, description="How many of the latest checkpoints to keep.")
    log_interval: int = no_effect(10, "Steps between metric logs to the tracker.")
    max_consecutive_nonfinite: int = Field(5, gt=0, description="Stop after this many non-finite steps in a row.")
    precision: Precision = Field(
        "fp32",
        description="Training precision: fp32; bf16 (autocast); fp8 / nvfp4 (bf16 autocast plus FP8 / NVFP4 linears). "
        "Master weights and optimizer stay fp32.",
    )
    precision_options: PrecisionConfig = Field(
        default_factory=PrecisionConfig, description="FP8 / NVFP4 recipe knobs (layers kept in high precision, formats)."
    )
    activation_checkpointing: bool = no_effect(
        False, "Recompute each block's activations in the backward pass: less memory, one more forward per block; "
        "the same numbers (the `activation_checkpointing` model converter).")
    blend: list[BlendPhase] | None = Field(
        None, description="Data blend phases, in order, the last ending at 1.0; none: the single 'train' dataset."
    )
    fused_optimizer: bool | None = Field(
        None, description="AdamW's fused kernel (all parameters in one kernel) instead of the multi-tensor one. "
        "None: fused on GPU, where it is the faster; multi-tensor on CPU, whose results the CPU runs pin. The two "
        "differ in the last bits of the update.")

    @model_validator(mode="after")
    def _schedule_fits(self) -> TrainConfig:
        if self.warmup_steps + round(self.decay_fraction * self.steps) > self.steps:
            raise ValueError("warmup_steps + decay_fraction * steps must not exceed steps")
        if self.blend is not None:
            ends = [phase.until_fraction for phase in self.blend]
            if not ends or ends != sorted(set(ends)) or ends[-1] != 1.0:
                raise ValueError(f"blend: until_fraction must increase strictly and end at 1.0, got {ends}")
        return self

    @property
    def blend_datasets(self) -> list[str]:
        """Every dataset name the blend uses, in first-use order (["train"] without a blend)."""
        if self.blend is None:
            return ["train"]
        return list(dict.fromkeys(name for phase in self.blend for name in phase.weights))

    def tokens_per_step(self, world_size: int = 1) -> int:
        """Tokens in one optimizer step over all `world_size` data-parallel ranks."""
        return self.seq_len * self.micro_batch_size * self.grad_accum * world_size
