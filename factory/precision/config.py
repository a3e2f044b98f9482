"""The precision recipes' knobs as a plain pydantic model, importable without torch.

It lives apart from `convert.py` (which swaps torch modules) because every stage config that trains a
model embeds it, and loading a spec must not pay for importing torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PrecisionConfig(BaseModel):
    """Knobs of the low-precision training recipes; the recipe itself is `convert_model`'s argument."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    high_precision_layers: tuple[str, ...] = Field(
        ("lm_head", "model.layers.0.*", "model.layers.-1.*"),
        description="Module-name patterns (fnmatch; a layer index may count from the end, -1 = last) of the "
        "linears kept in high precision; every other linear is converted. Default: the first and last blocks "
        "and the LM head, as the Nemotron recipes keep them in BF16.",
    )
    fp8_grad_format: Literal["e5m2", "e4m3"] = Field(
        "e5m2", description="FP8 format of output gradients in the FP8 backward GEMMs."
    )
    nvfp4_weight_2d_blocks: bool = Field(
        True, description="Quantize NVFP4 weights in 16x16 blocks (so W and W^T match) instead of 1x16."
    )
    nvfp4_stochastic_rounding: bool = Field(
        True, description="Round NVFP4 gradients stochastically (unbiased) instead of to nearest."
    )
    nvfp4_hadamard: bool = Field(
        True, description="Apply the 16x16 random Hadamard transform to both inputs of the NVFP4 wgrad GEMM."
    )
    seed: int = Field(
        0, description="Seed of the Hadamard signs and of the stochastic-rounding streams (offset per layer)."
    )


__all__ = ["PrecisionConfig"]
