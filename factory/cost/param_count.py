"""Exact parameter counts of a hybrid Mamba-2 / attention / MLP / MoE model, from its shape alone.

The counts follow the modules transformers' `NemotronHForCausalLM` builds (`modeling_nemotron_h.py`),
tensor by tensor, so they equal `sum(p.numel())` of a model built on the meta device; the published
checkpoints' totals (Nemotron-H 8B: 8,100,852,736) come out exactly.

    parameter_counts(ModelSpec(preset="nemotron_h_8b")).total  # 8_100_852_736
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from factory.cost.shape import Shape, as_shape


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts: `total` (stored), `active` (used per token: MoE routes each token to top-k
    experts), and `by_part` (total per part: embedding, mamba, attention, mlp, moe_routed, moe_shared,
    moe_router, norms, lm_head, mtp)."""

    total: int
    active: int
    by_part: dict[str, int] = field(default_factory=dict)

    @property
    def embedding(self) -> int:
        return self.by_part.get("embedding", 0)


def mamba_params(s: Shape) -> int:
    """One Mamba-2 mixer: in_proj (z, x, B, C, dt), depthwise conv (+bias), dt_bias, A_log, D, gated norm, out_proj."""
    d_in, conv = s.mamba_inner, s.conv_dim
    in_proj = s.hidden * (d_in + conv + s.mamba_heads) + (d_in + conv + s.mamba_heads if s.mamba_bias else 0)
    conv1d = conv * s.conv_kernel + (conv if s.conv_bias else 0)
    out_proj = d_in * s.hidden + (s.hidden if s.mamba_bias else 0)
    return in_proj + conv1d + 3 * s.mamba_heads + d_in + out_proj


def attention_params(s: Shape) -> int:
    """q, k, v, o projections (grouped-query attention: k and v have kv_heads heads), their biases where the
    architecture has them, and Qwen3's per-head q and k norms."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    bias = (q + 2 * kv if s.qkv_bias else 0) + (s.hidden if s.o_bias else 0)
    return 2 * s.hidden * q + 2 * s.hidden * kv + bias + (2 * s.head_dim if s.qk_norm else 0)


def mlp_params(s: Shape, width: int | None = None) -> int:
    """Squared-ReLU MLP: up and down projections; SwiGLU (`mlp_matrices` 3): gate, up and down."""
    width = s.mlp_hidden if width is None else width
    return s.mlp_matrices * s.hidden * width + (((s.mlp_matrices - 1) * width + s.hidden) if s.mlp_bias else 0)


def moe_parts(s: Shape) -> dict[str, int]:
    """One MoE layer: routed experts (all of them), the shared expert, the router, latent projections."""
    d = s.latent or s.hidden
    latent = (2 * s.hidden * s.latent + ((s.latent + s.hidden) if s.mlp_bias else 0)) if s.latent else 0
    return {
        "moe_routed": s.experts * 2 * d * s.expert_hidden,
        "moe_shared": mlp_params(s, s.shared_hidden) + latent,
        "moe_router": s.experts * s.hidden,
    }


def layer_parts(s: Shape, kind: str) -> dict[str, int]:
    """Parameters of one block of `kind` (a pattern character), including its pre-norm."""
    parts = {"norms": s.hidden}
    if kind == "M":
        parts["mamba"] = mamba_params(s)
    elif kind == "*":
        parts["attention"] = attention_params(s)
    elif kind == "-":
        parts["mlp"] = mlp_params(s)
    elif kind == "E":
        parts.update(moe_parts(s))
    else:
        raise ValueError(f"unknown layer kind {kind!r}")
    return parts


def mtp_params(s: Shape) -> int:
    """One multi-token-prediction block as Megatron-Core builds it (DeepSeek-V3 MTP): two input norms, the
    2h -> h projection, the blocks of `mtp_pattern`, a final norm; embedding and output head are shared.
    transformers 5.x builds no MTP modules, so this part is absent from a transformers model."""
    blocks = sum(sum(layer_parts(s, k).values()) for k in s.mtp_pattern)
    return 2 * s.hidden + 2 * s.hidden * s.hidden + blocks + s.hidden


def parameter_counts(model: Any, vocab_size: int | None = None) -> ParamCounts:
    """Exact parameter counts of `model` (a `ModelSpec`, `ModelConfig`, transformers `NemotronHConfig`, or a dense
    decoder's config: `factory.cost.shape.DENSE_DECODERS`).

    `vocab_size` is the tokenizer's (default: a NemotronHConfig's own, else the published 131,072).
    MTP blocks, when configured, are counted in `by_part["mtp"]` and in `total` (Megatron-Core trains them).
    """
    s = as_shape(model, vocab_size)
    parts: dict[str, int] = {"embedding": s.vocab_size * s.hidden}
    for kind in s.pattern:
        for name, n in layer_parts(s, kind).items():
            parts[name] = parts.get(name, 0) + n
    parts["norms"] = parts.get("norms", 0) + s.hidden  # final norm
    parts["lm_head"] = 0 if s.tied else s.vocab_size * s.hidden
    if s.mtp_layers:
        parts["mtp"] = s.mtp_layers * mtp_params(s)
    total = sum(parts.values())
    # a token passes through top_k of the routed experts of each E layer (also inside MTP blocks)
    moe_layers = s.count("E") + s.mtp_layers * s.mtp_pattern.count("E")
    idle = moe_layers * (s.experts - s.top_k) * 2 * (s.latent or s.hidden) * s.expert_hidden
    return ParamCounts(total=total, active=total - idle, by_part={k: v for k, v in parts.items() if v})
