"""Memory a model needs: to serve it (weights, KV cache, Mamba states) and to train it on one GPU of a
parallel layout (weights, gradients, optimizer state, activations).

    serving_memory(ModelSpec(preset="nemotron_nano_12b_v2"), context_len=131072).total_gib  # 26.1: over 22 GiB
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from factory.cost.params import parameter_counts
from factory.cost.shape import as_shape

GIB = 1024**3

# Bytes per element of a number format. NVFP4: a 4-bit E2M1 value plus one E4M3 scale per 16 values.
FORMAT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "nvfp4": 0.5 + 1 / 16}


def format_bytes(fmt: str | float) -> float:
    """Bytes per element of `fmt` (a name in `FORMAT_BYTES`, or a number of bytes)."""
    if isinstance(fmt, (int, float)):
        return float(fmt)
    if fmt not in FORMAT_BYTES:
        raise ValueError(f"unknown number format {fmt!r}; known: {sorted(FORMAT_BYTES)}")
    return FORMAT_BYTES[fmt]


@dataclass(frozen=True)
class ServingMemory:
    """Bytes to serve a model at one context length and batch: weights, the attention layers' KV cache,
    and the Mamba layers' conv and SSM states (which do not grow with context)."""

    weights: int
    kv_cache: int
    mamba_conv: int
    mamba_ssm: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.mamba_conv + self.mamba_ssm

    @property
    def total_gib(self) -> float:
        return self.total / GIB

    def fits(self, budget_gib: float) -> bool:
        return self.total <= budget_gib * GIB

    def terms(self) -> dict[str, int]:
        return {"weights": self.weights, "kv_cache": self.kv_cache, "mamba_conv": self.mamba_conv, "mamba_ssm": self.mamba_ssm}


def serving_memory(
    model: Any,
    context_len: int,
    batch: int = 1,
    *,
    weights: str | float = "bf16",
    kv_cache: str | float = "bf16",
    mamba_state: str | float = "fp32",
    vocab_size: int | None = None,
) -> ServingMemory:
    """Serving memory of `model` (ModelSpec, ModelConfig or NemotronHConfig) for `batch` sequences of
    `context_len` tokens. Formats are names in `FORMAT_BYTES` or bytes per element.

    - KV cache: per attention layer, K and V of kv_heads x head_dim per token.
    - Mamba conv state: per Mamba layer, the last conv_kernel - 1 inputs of the conv's d_in + 2 G N channels
      (vLLM keeps kernel - 1 columns).
    - Mamba SSM state: per Mamba layer, heads x head_dim x N; FP32 by default, as vLLM's
      `--mamba_ssm_cache_dtype float32` recommended for Nemotron-H.
    Activations and the serving engine's own buffers are not counted.
    """
    if context_len <= 0 or batch <= 0:
        raise ValueError(f"context_len and batch must be positive, got {context_len} and {batch}")
    s = as_shape(model, vocab_size)
    n_attn, n_mamba = s.count("*"), s.count("M")
    state_b = format_bytes(mamba_state)
    return ServingMemory(
        weights=round(parameter_counts(s).total * format_bytes(weights)),
        kv_cache=round(n_attn * 2 * s.kv_heads * s.head_dim * context_len * batch * format_bytes(kv_cache)),
        mamba_conv=round(n_mamba * s.conv_dim * (s.conv_kernel - 1) * batch * state_b),
        mamba_ssm=round(n_mamba * s.mamba_heads * s.mamba_head_dim * s.state * batch * state_b),
    )
