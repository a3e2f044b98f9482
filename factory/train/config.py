"""The training-stage shell's config, composed from parts (torchtitan's typed config tree, kept flat in the spec).

Every kind that trains (pretrain, sft, rl, preference, reward_model, distill) builds its `Config` from these parts
and the shell (`factory.train.shell`) reads every field they declare:

    Loop          optimizer, WSD schedule, batch, seed, checkpoints, stability                    every trainer kind
    Precision     fp32 / bf16 / fp8 / nvfp4, the recipe's knobs, activation checkpointing         every trainer kind
    Parallelism   DDP or FSDP2 under torchrun, torch.compile                                       kinds that run distributed
    Sequences     tokens per training row                                                          kinds whose data has a length
    Blend         data blend phases                                                                pretrain

A kind that cannot do what a part asks does not take the part, so the field is refused at spec load ("unknown
field"). Per-kind defaults come from `with_defaults`, which keeps each field's type, bounds and description:

    class Config(with_defaults(Loop, steps=20, lr=1e-4, warmup_steps=0), Precision):
        ...
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic.fields import FieldInfo

from factory.precision.config import PrecisionConfig
from factory.stage import StageConfig, no_effect

PrecisionName = Literal["fp32", "bf16", "fp8", "nvfp4"]
M = TypeVar("M", bound=type[StageConfig])


class Loop(StageConfig):
    """Optimizer, schedule, batch, checkpointing and stability settings of a training run."""

    micro_batch_size: int = Field(8, gt=0, description="Rows per forward/backward pass (per rank under torchrun).")
    grad_accum: int = Field(1, gt=0, description="Micro-batches accumulated into one optimizer step.")
    steps: int = Field(200, gt=0, description="Optimizer steps to train.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate as a fraction of the peak.")
    warmup_steps: int = Field(20, ge=0, description="Steps of linear warmup.")
    decay_fraction: float = Field(0.2, ge=0, le=1, description="Fraction of the steps spent in the final linear decay (WSD).")
    weight_decay: float = Field(0.1, ge=0, description="Decoupled AdamW weight decay (not on norms, biases, embeddings).")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW beta1, beta2.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm to this (0 = no clipping).")
    seed: int = Field(0, description="Seed of torch, numpy and random at the start of the run (model init, data order).")
    checkpoint_interval: int = Field(100, ge=0, description="Steps between resumable checkpoints (0 = none).")
    keep_checkpoints: int = Field(2, ge=1, description="How many of the latest checkpoints to keep.")
    log_interval: int = no_effect(10, "Steps between metric logs to the tracker.")
    max_consecutive_nonfinite: int = Field(5, gt=0, description="Stop after this many non-finite steps in a row.")
    fused_optimizer: bool | None = Field(
        None, description="AdamW's fused kernel (all parameters in one kernel) instead of the multi-tensor one. "
        "None: fused on GPU, where it is the faster; multi-tensor on CPU, whose results the CPU runs pin. The two "
        "differ in the last bits of the update.")

    @model_validator(mode="after")
    def _schedule_fits(self) -> Loop:
        if self.warmup_steps + round(self.decay_fraction * self.steps) > self.steps:
            raise ValueError("warmup_steps + decay_fraction * steps must not exceed steps")
        return self


class Precision(StageConfig):
    """Training precision: the model converters the shell applies before training (`factory.train.converters`)."""

    precision: PrecisionName = Field(
        "fp32",
        description="Training precision: fp32; bf16 (autocast); fp8 / nvfp4 (bf16 autocast plus FP8 / NVFP4 linears). "
        "Master weights and optimizer stay fp32.",
    )
    precision_options: PrecisionConfig = Field(
        default_factory=PrecisionConfig,
        description="FP8 / NVFP4 recipe knobs (layers kept in high precision, formats); only with precision fp8 or nvfp4.")
    activation_checkpointing: bool = no_effect(
        False, "Recompute each block's activations in the backward pass: less memory, one more forward per block; "
        "the same numbers (the `activation_checkpointing` model converter).")

    @model_validator(mode="after")
    def _options_need_a_recipe(self) -> Precision:
        if self.precision not in ("fp8", "nvfp4") and self.precision_options != PrecisionConfig():
            raise ValueError(f"precision_options: used only by precision fp8 or nvfp4, not {self.precision!r}; "
                             "remove them or set precision")
        return self


class Parallelism(StageConfig):
    """How the run spreads over ranks under torchrun (`factory.train.parallel.parallelize`)."""

    data_parallel: Literal["ddp", "fsdp"] = no_effect(
        "ddp", "Data parallelism under torchrun (WORLD_SIZE > 1): 'ddp' (replicated) or 'fsdp' (FSDP2 sharded); "
        "one process trains unwrapped.")
    compile: bool = no_effect(
        False, "torch.compile each block (changes float rounding only). On GPUs FP8 needs it: eager FP8 scaling "
        "costs more than the FP8 GEMMs save (bench/fp8_linear.py).")


class Sequences(StageConfig):
    """The length of a training row."""

    seq_len: int = Field(128, gt=0, description="Tokens per training sequence.")


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


def check_phases(phases: list[BlendPhase]) -> None:
    """Raise `ValueError` unless the phases' ends increase strictly and the last is 1.0."""
    ends = [phase.until_fraction for phase in phases]
    if not ends or ends != sorted(set(ends)) or ends[-1] != 1.0:
        raise ValueError(f"blend: until_fraction must increase strictly and end at 1.0, got {ends}")


class Blend(StageConfig):
    """Which token datasets a run trains on, and in which proportions over time."""

    blend: list[BlendPhase] | None = Field(
        None, description="Data blend phases, in order, the last ending at 1.0; none: the tokens input's blend.json "
                          "(from a mix step) if it has one, else the single 'train' dataset."
    )

    @model_validator(mode="after")
    def _phases(self) -> Blend:
        if self.blend is not None:
            check_phases(self.blend)
        return self


def with_defaults(part: M, **defaults: Any) -> M:
    """`part` with other defaults for the named fields (type, bounds and description kept): a kind's defaults
    without redeclaring its fields."""
    unknown = sorted(set(defaults) - set(part.model_fields))
    if unknown:
        raise TypeError(f"{part.__name__} has no fields {unknown}")
    fields: dict[str, Any] = {}
    for name, value in defaults.items():
        info = part.model_fields[name]
        fields[name] = (info.annotation, FieldInfo.merge_field_infos(info, default=value))
    return create_model(part.__name__, __base__=part, __module__=part.__module__, **fields)  # type: ignore[call-overload]


class TrainConfig(Loop, Precision, Sequences):
    """A single-process run on token rows (loop, precision, sequences): what a bench or a test builds a bare `Trainer`
    with."""
