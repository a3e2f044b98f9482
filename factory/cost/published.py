"""Published shapes the factory has no training preset for, and the figures NVIDIA reports for them.

Shapes follow the released Hugging Face `config.json` files as NeMo Megatron-Bridge transcribes them
(`NemotronNano9Bv2Provider`, `NemotronHModel56BProvider`); parameter totals are the model cards' figures
(exact where the card prints every digit, otherwise to the digits it prints).
"""

from __future__ import annotations

from typing import NamedTuple

from factory.model import PRESETS, ModelConfig


def nemotron_nano_9b_v2() -> ModelConfig:
    """Nemotron Nano 2 9B (arXiv 2508.14444): the 12B pruned by Minitron to fit 128k context in 22 GiB."""
    return PRESETS["nemotron_nano_12b_v2"]().model_copy(
        update=dict(
            pattern="M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-",
            hidden_size=4480,
            intermediate_size=15680,
        )
    )


def nemotron_h_56b() -> ModelConfig:
    """Nemotron-H 56B base (arXiv 2504.03624): 118 layers, 10 attention, trained on 20T tokens in FP8."""
    return PRESETS["nemotron_h_8b"]().model_copy(
        update=dict(
            pattern="M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-"
            "M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-",
            hidden_size=8192,
            num_attention_heads=64,
            intermediate_size=32768,
            mamba_num_heads=256,
            ssm_state_size=256,
        )
    )


# Every published shape the cost tools know: the factory's presets plus the two above.
SHAPES = {
    "nemotron_h_8b": PRESETS["nemotron_h_8b"],
    "nemotron_h_56b": nemotron_h_56b,
    "nemotron_nano_9b_v2": nemotron_nano_9b_v2,
    "nemotron_nano_12b_v2": PRESETS["nemotron_nano_12b_v2"],
    "nemotron3_nano_30b_a3b": PRESETS["nemotron3_nano_30b_a3b"],
}


class PublishedCount(NamedTuple):
    """A model card's parameter figure: `total` (and `active` for MoE, without / with embeddings) as
    printed, and how many units of `unit` parameters the figure is rounded to (1 = exact)."""

    total: int
    unit: int
    active: int | None = None
    active_with_embeddings: int | None = None
    source: str = ""


PUBLISHED_COUNTS = {
    "nemotron_h_8b": PublishedCount(8_100_852_736, 1, source="Nemotron-H-8B-Base-8K model card"),
    "nemotron_nano_9b_v2": PublishedCount(8_890_000_000, 10_000_000, source="NVIDIA-Nemotron-Nano-9B-v2 model card (8.89B)"),
    "nemotron_nano_12b_v2": PublishedCount(12_310_000_000, 10_000_000, source="NVIDIA-Nemotron-Nano-12B-v2-Base model card (12.31B)"),
    "nemotron3_nano_30b_a3b": PublishedCount(
        31_600_000_000, 100_000_000, active=3_200_000_000, active_with_embeddings=3_600_000_000,
        source="NVIDIA-Nemotron-3-Nano-30B-A3B model card (31.6B total; 3.2B active, 3.6B with embeddings)",
    ),
}
