"""FLOPs per token of a hybrid Mamba-2 / attention / MLP / MoE model, forward and backward.

One multiply-add is 2 FLOPs; the backward pass costs twice the forward (gradients with respect to inputs
and to weights), so a training token costs 3x its forward, as in Megatron-LM's
`num_floating_point_operations` (megatron/training/training.py), whose terms these follow:

- a linear layer of `n_in x n_out` costs 2 n_in n_out per token;
- attention's context term (QK^T and AV) costs 2 x 2 x heads x head_dim per attended position: T/2 positions
  on average with a causal mask (`causal=True`, Megatron's current count, which Megatron-Bridge's published
  TFLOP/s use), T positions as a dense kernel computes them (`causal=False`, what `FlopCounterMode` sees);
- Mamba-2 (Dao & Gu 2024, arXiv 2405.21060, section 6): in_proj to z, x, B, C, dt; the depthwise causal conv
  (2 x channels x kernel); the chunked SSD scan, counted as its four matmul steps with chunk length Q
  (intra-chunk C B^T and its product with x, chunk states B^T x, state output C h) plus the inter-chunk
  recurrence as transformers' reference implementation computes it; the gated RMSNorm (elementwise, ~5 d_in,
  which FLOP counters of matmuls do not see); out_proj. Megatron counts the scan as 7 d_in N per token
  (forward + backward) instead; the chunked count is what GPUs execute.
- MoE: the router (h x experts), top-k routed experts, the shared expert, latent projections;
- logits: 2 h V; the embedding lookup is free; MTP blocks (when configured) add their projection, blocks and
  a second logits pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from factory.cost.shape import Shape, as_shape

# Parts that are elementwise rather than matmuls (FLOP counters of matmuls, and MFU conventions, skip them).
ELEMENTWISE = frozenset({"mamba_gated_norm"})


@dataclass(frozen=True)
class TokenFlops:
    """Forward FLOPs per token, by part (summed over layers), at one sequence length."""

    seq_len: int
    by_part: dict[str, float] = field(default_factory=dict)

    @property
    def forward(self) -> float:
        return sum(self.by_part.values())

    @property
    def matmul_forward(self) -> float:
        """Forward FLOPs of matmuls and convolutions only (what `torch.utils.flop_counter` counts)."""
        return sum(v for k, v in self.by_part.items() if k not in ELEMENTWISE)

    @property
    def backward(self) -> float:
        return 2 * self.forward

    @property
    def training(self) -> float:
        """Model FLOPs of one trained token: forward + backward (recomputation is not model work)."""
        return 3 * self.forward


def ssd_flops(s: Shape, seq_len: int) -> float:
    """Forward FLOPs per token of one layer's chunked SSD scan (B and C are broadcast from groups to heads)."""
    q = min(s.chunk, seq_len)
    chunks = math.ceil(seq_len / q)
    h, p, n = s.mamba_heads, s.mamba_head_dim, s.state
    intra = 2 * h * (q * n + q * p)  # C B^T over the chunk, then (masked scores) x
    states = 2 * h * n * p * 2  # B^T x into chunk states; C times the carried state
    # transformers passes the chunk states through a (chunks+1) x (chunks+1) decay matrix per sequence
    inter = 2 * h * p * n * (chunks + 1) ** 2 / seq_len
    return intra + states + inter


def mamba_flops(s: Shape, seq_len: int) -> dict[str, float]:
    d_in = s.mamba_inner
    return {
        "mamba_in_proj": 2 * s.hidden * (d_in + s.conv_dim + s.mamba_heads),
        "mamba_conv": 2 * s.conv_dim * s.conv_kernel,
        "mamba_ssd": ssd_flops(s, seq_len),
        "mamba_gated_norm": 5 * d_in,
        "mamba_out_proj": 2 * d_in * s.hidden,
    }


def attention_flops(hidden: int, heads: int, kv_heads: int, head_dim: int, seq_len: int, causal: bool) -> dict[str, float]:
    attended = seq_len / 2 if causal else seq_len
    return {
        "attention_qkvo": 2 * hidden * head_dim * (2 * heads + 2 * kv_heads),
        "attention_context": 2 * 2 * heads * head_dim * attended,
    }


def mlp_flops(hidden: int, width: int, matrices: int = 2) -> float:
    """A `matrices`-matrix MLP: 2 for squared ReLU (up, down), 3 for SwiGLU (gate, up, down)."""
    return 2 * matrices * hidden * width


def moe_flops(s: Shape) -> dict[str, float]:
    d = s.latent or s.hidden
    return {
        "moe_router": 2 * s.hidden * s.experts,
        "moe_routed": s.top_k * mlp_flops(d, s.expert_hidden),
        "moe_shared": mlp_flops(s.hidden, s.shared_hidden) + (2 * 2 * s.hidden * s.latent if s.latent else 0),
    }


def layer_flops(s: Shape, kind: str, seq_len: int, causal: bool = True) -> dict[str, float]:
    """Forward FLOPs per token of one block of `kind` (a pattern character)."""
    if kind == "M":
        return mamba_flops(s, seq_len)
    if kind == "*":
        return attention_flops(s.hidden, s.heads, s.kv_heads, s.head_dim, seq_len, causal)
    if kind == "-":
        return {"mlp": mlp_flops(s.hidden, s.mlp_hidden, s.mlp_matrices)}
    if kind == "E":
        return moe_flops(s)
    raise ValueError(f"unknown layer kind {kind!r}")


def flops_per_token(model: Any, seq_len: int, *, vocab_size: int | None = None, causal: bool = True) -> TokenFlops:
    """Forward FLOPs per token of `model` (ModelSpec, ModelConfig or NemotronHConfig) on `seq_len`-token sequences."""
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    s = as_shape(model, vocab_size)
    parts: dict[str, float] = {}

    def add(more: dict[str, float], scale: float = 1.0, prefix: str = "") -> None:
        for k, v in more.items():
            parts[prefix + k] = parts.get(prefix + k, 0.0) + scale * v

    for kind in s.pattern:
        add(layer_flops(s, kind, seq_len, causal))
    parts["logits"] = 2.0 * s.hidden * s.vocab_size
    if s.mtp_layers:
        mtp: dict[str, float] = {"proj": 2 * 2 * s.hidden * s.hidden, "logits": 2.0 * s.hidden * s.vocab_size}
        for kind in s.mtp_pattern:
            for k, v in layer_flops(s, kind, seq_len, causal).items():
                mtp[k] = mtp.get(k, 0.0) + v
        parts["mtp"] = s.mtp_layers * sum(mtp.values())
    return TokenFlops(seq_len=seq_len, by_part=parts)


def dense_transformer_flops(
    *, hidden: int, layers: int, heads: int, kv_heads: int, ffn: int, vocab: int, seq_len: int, gated: bool = True, causal: bool = True
) -> TokenFlops:
    """Forward FLOPs per token of a plain transformer (Llama-style, SwiGLU when `gated`) from the same
    attention, MLP and logits terms: the yardstick against published dense-model throughput."""
    att = attention_flops(hidden, heads, kv_heads, hidden // heads, seq_len, causal)
    parts = {k: layers * v for k, v in att.items()}
    parts["mlp"] = layers * mlp_flops(hidden, ffn, 3 if gated else 2)
    parts["logits"] = 2.0 * hidden * vocab
    return TokenFlops(seq_len=seq_len, by_part=parts)
