"""`TrainConfig`: the training-loop fields every train stage shares (pretrain, later SFT and distillation)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from factory.stage import StageConfig, no_effect


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
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Compute dtype: bfloat16 autocasts matmuls, weights and optimizer stay float32."
    )

    @model_validator(mode="after")
    def _schedule_fits(self) -> TrainConfig:
        if self.warmup_steps + round(self.decay_fraction * self.steps) > self.steps:
            raise ValueError("warmup_steps + decay_fraction * steps must not exceed steps")
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.micro_batch_size * self.grad_accum
