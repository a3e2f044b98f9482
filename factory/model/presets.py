"""Model presets as functions (STYLE rule 4), the `PRESETS` registry, and `ModelSpec`.

Published shapes follow NVIDIA's released configs, as transcribed by NeMo Megatron-Bridge's model
providers (`megatron/bridge/models/nemotronh/nemotron_h_provider.py`: `NemotronHModelProvider8B`,
`NemotronNanoModelProvider12Bv2`, `Nemotron3NanoProvider`) and the Hugging Face model cards
(nvidia/Nemotron-H-8B-Base-8K, nvidia/NVIDIA-Nemotron-Nano-12B-v2-Base,
nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16). `PUBLISHED` records the totals those checkpoints report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.errors import SpecError
from factory.model.config import ModelConfig


def tiny() -> ModelConfig:
    """A few hundred thousand parameters at a ~2k vocabulary: tens of steps per second on one CPU core."""
    return ModelConfig(
        pattern="M-M*-",
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=256,
        mamba_num_heads=8,
        mamba_head_dim=16,  # inner width 128 = 2 x hidden, as Nemotron-H
        ssm_state_size=16,
        mamba_groups=1,
        chunk_size=32,
        max_position_embeddings=1024,
    )


def tiny_moe() -> ModelConfig:
    """`tiny` with MoE layers in place of the MLPs (Nemotron 3 layout, in miniature)."""
    return tiny().model_copy(
        update=dict(
            pattern="ME*E",
            moe_num_experts=4,
            moe_top_k=2,
            moe_intermediate_size=64,
            moe_shared_intermediate_size=128,
            moe_routed_scaling_factor=2.5,
        )
    )


def small_20m() -> ModelConfig:
    """About 20M parameters at a 16k vocabulary (about 9.7M without the two embedding matrices)."""
    return ModelConfig(
        pattern="M-M-M*-M-M-M*-",
        hidden_size=320,
        num_attention_heads=10,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=1280,
        mamba_num_heads=20,
        mamba_head_dim=32,
        ssm_state_size=64,
        mamba_groups=2,
        chunk_size=128,
        max_position_embeddings=4096,
    )


def nemotron_h_8b() -> ModelConfig:
    """Nemotron-H 8B base (arXiv 2504.03624): 52 layers, 4 attention, 8,100,852,736 parameters."""
    return ModelConfig(
        pattern="M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-",
        hidden_size=4096,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=21504,
        mamba_num_heads=128,
        mamba_head_dim=64,
        ssm_state_size=128,
        mamba_groups=8,
        max_position_embeddings=8192,
    )


def nemotron_nano_12b_v2() -> ModelConfig:
    """Nemotron Nano 2 12B base (arXiv 2508.14444): 62 layers, 6 attention, 12.31B parameters."""
    return ModelConfig(
        pattern="M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-",
        hidden_size=5120,
        num_attention_heads=40,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=20480,
        mamba_num_heads=128,
        mamba_head_dim=80,
        ssm_state_size=128,
        mamba_groups=8,
        max_position_embeddings=131072,
    )


def nemotron3_nano_30b_a3b() -> ModelConfig:
    """Nemotron 3 Nano 30B-A3B: 52 layers (23 Mamba-2, 23 MoE, 6 attention), 128 experts top-6, 31.6B total.

    The released checkpoint has no MTP head, so `mtp_layers` stays 0 (set it for Super/Ultra-style runs;
    transformers 5.x records it in the config but builds no MTP modules).
    """
    return ModelConfig(
        pattern="MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME",
        hidden_size=2688,
        num_attention_heads=32,
        num_key_value_heads=2,
        head_dim=128,
        intermediate_size=1856,
        mamba_num_heads=64,
        mamba_head_dim=64,
        ssm_state_size=128,
        mamba_groups=8,
        moe_num_experts=128,
        moe_top_k=6,
        moe_intermediate_size=1856,
        moe_shared_intermediate_size=3712,
        moe_routed_scaling_factor=2.5,
        max_position_embeddings=262144,
    )


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "tiny": tiny,
    "tiny_moe": tiny_moe,
    "small_20m": small_20m,
    "nemotron_h_8b": nemotron_h_8b,
    "nemotron_nano_12b_v2": nemotron_nano_12b_v2,
    "nemotron3_nano_30b_a3b": nemotron3_nano_30b_a3b,
}


class Published(NamedTuple):
    """A released checkpoint's parameter total and the vocabulary it was counted at."""

    params: int
    vocab_size: int
    source: str


PUBLISHED: dict[str, Published] = {
    "nemotron_h_8b": Published(8_100_852_736, 131072, "huggingface.co/nvidia/Nemotron-H-8B-Base-8K"),
    "nemotron_nano_12b_v2": Published(12_310_000_000, 131072, "huggingface.co/nvidia/NVIDIA-Nemotron-Nano-12B-v2-Base (12.31B)"),
    "nemotron3_nano_30b_a3b": Published(31_600_000_000, 131072, "huggingface.co/nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16 (31.6B)"),
}


class ModelSpec(BaseModel):
    """Which model to build: a preset name plus field overrides, e.g. `{"pattern": "M*M-"}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = Field("tiny", description="Name of a model preset in factory.model.PRESETS.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="ModelConfig fields that replace the preset's.")

    @model_validator(mode="after")
    def _resolves(self) -> ModelSpec:
        self.resolve()  # fail when the spec is loaded, not when training starts
        return self

    def resolve(self) -> ModelConfig:
        """The `ModelConfig` this spec names; raises `SpecError` naming the bad preset or override key."""
        if self.preset not in PRESETS:
            raise SpecError(f"model.preset: unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        base = PRESETS[self.preset]()
        unknown = sorted(set(self.overrides) - set(ModelConfig.model_fields))
        if unknown:
            raise SpecError(
                f"model.overrides.{unknown[0]}: not a ModelConfig field; known fields: {sorted(ModelConfig.model_fields)}"
            )
        # model_copy(update=...) does not validate, so the merged fields are validated explicitly.
        try:
            return ModelConfig.model_validate(base.model_copy(update=self.overrides).model_dump())
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SpecError(f"model.overrides{'.' + where if where else ''}: {first['msg']}") from None
