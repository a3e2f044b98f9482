"""Memory a model needs: to serve it (weights, KV cache, Mamba states) and to train it on one GPU of a
parallel layout (weights, gradients, optimizer state, activations).

    serving_memory(ModelSpec(preset="nemotron_nano_12b_v2"), context_len=131072).total_gib  # 26.1: over 22 GiB
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from factory.cost.layout import ParallelLayout
from factory.cost.param_count import parameter_counts
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


# --- training ------------------------------------------------------------------------------------------

# Bytes per parameter of the training state, by engine. The factory's trainer keeps FP32 weights (they are
# the master weights; BF16/FP8/NVFP4 are autocast or converter copies), FP32 gradients and AdamW's two FP32
# moments. Megatron-Core keeps BF16 weights, FP32 main gradients, and in the optimizer an FP32 master copy
# plus the two moments (the 18 bytes/parameter of the ZeRO paper's mixed-precision Adam, 16 + 2).
STATE_BYTES = {
    "factory": {"weights": 4, "grads": 4, "optimizer": 8},
    "megatron": {"weights": 2, "grads": 4, "optimizer": 12},
}
# Low-precision weight copies a step holds while it runs: BF16 autocast casts each weight once per forward
# and saves the cast for backward; FP8 (Transformer Engine) keeps the FP8 weight and its transpose; NVFP4 the
# same in 4-bit blocks with E4M3 scales.
WEIGHT_COPY_BYTES = {"fp32": 0.0, "bf16": 2.0, "fp8": 2.0, "nvfp4": 2 * FORMAT_BYTES["nvfp4"]}


def activation_elements(s, kind: str, seq_len: int) -> float:
    """Elements one block of `kind` saves for backward, per token, in transformers' PyTorch path (the path
    the factory's trainer runs on CPU): read off the tensors autograd saves, layer by layer.

    Every block saves its input, the RMSNorm output and its copy feeding the mixer (3 h) and the norm's
    reciprocal RMS (1). Shapes per token: h hidden, d_in = H P Mamba inner width, H heads, P head dim,
    N state, G groups, Q chunk, c = ceil(T / Q) chunks. A length that is not a multiple of Q is padded to
    one inside the scan, and saves a little more than this (up to ~20% of the Mamba term at T = 2.5 Q).
    """
    h = s.hidden
    base = 3 * h + 1
    if kind == "M":
        d_in, heads, p, n, g = s.mamba_inner, s.mamba_heads, s.mamba_head_dim, s.state, s.groups
        q = min(s.chunk, seq_len)
        c = math.ceil(seq_len / q)
        in_proj_out = 2 * d_in + 2 * g * n + heads
        conv = s.conv_dim * (seq_len + s.conv_kernel - 1) / seq_len + s.conv_dim  # padded conv output, its SiLU
        dt = 5 * heads  # dt, softplus(dt), dt x A, its cumsum and the per-head decay
        x = 4 * d_in  # x per head, and as the scan's chunked operand (x, x dt, C h)
        scan = 3 * heads * q + 5 * heads * n  # L, C B^T, masked scores; B and C broadcast to heads, B decayed
        states = heads * p * n * (2 * c + 1) / seq_len + heads * (c + 1) ** 2 / seq_len  # chunk states, decays
        gated_norm = 5 * d_in + g  # its input, gate, products, normed output and out_proj input; rstd per group
        return base + in_proj_out + conv + dt + x + scan + states + gated_norm
    if kind == "*":
        # q, k, v, the attention output and the per-head log-sum-exp of SDPA
        return base + 2 * s.heads * s.head_dim + 2 * s.kv_heads * s.head_dim + s.heads
    if kind == "-":
        # up_proj output and its activation; SwiGLU: gate and up outputs, the gate's activation, their product
        return base + (2 if s.mlp_matrices == 2 else 4) * s.mlp_hidden
    if kind == "E":
        d = s.latent or s.hidden
        routed = s.top_k * (2 * d + 2 * s.expert_hidden)  # per routed copy: input, up output, activation, down output
        router = s.experts * 1.25 + s.top_k * 9 + 3  # sigmoid scores (fp32) and the bool group mask; indices, weights
        latent = 2 * s.latent if s.latent else 0
        return base + routed + router + 2 * s.shared_hidden + latent
    raise ValueError(f"unknown layer kind {kind!r}")


def autocast_activation_bytes(s, kind: str, seq_len: int) -> float:
    """Bytes one block saves for backward, per token, in transformers' PyTorch path under BF16 autocast (the
    factory's trainer at bf16, fp8 and nvfp4): norms, the SSD's decay terms and the gated norm stay FP32;
    matmul operands are saved as their BF16 casts (each linear keeps its own cast of a shared input).
    Symbols as in `activation_elements`; weight casts are counted with the weights."""
    h = s.hidden
    fp32 = 2 * h + 1  # block input and norm output (FP32), reciprocal RMS
    if kind == "M":
        d_in, heads, p, n, g = s.mamba_inner, s.mamba_heads, s.mamba_head_dim, s.state, s.groups
        q = min(s.chunk, seq_len)
        c = math.ceil(seq_len / q)
        decays = heads * (c + 1) ** 2 / seq_len
        fp32 += 7 * d_in + heads * n + 4 * heads + heads * q + g + decays
        low = (h + s.conv_dim * (seq_len + s.conv_kernel - 1) / seq_len + s.conv_dim + 2 * heads + 4 * heads * n
               + 2 * heads * q + 3 * d_in + heads * p * n * (2 * c + 1) / seq_len + decays + d_in)
    elif kind == "*":
        fp32 += s.heads  # log-sum-exp
        low = 3 * h + 2 * s.heads * s.head_dim + 2 * s.kv_heads * s.head_dim  # q, k, v inputs; q, k, v; output
    elif kind == "-":
        low = h + (2 if s.mlp_matrices == 2 else 4) * s.mlp_hidden
    elif kind == "E":
        d = s.latent or s.hidden
        fp32 += h + s.experts * 1.25 + s.top_k * 9 + 3  # the router runs in FP32
        low = h + s.top_k * (2 * d + 2 * s.expert_hidden) + 2 * s.shared_hidden + (2 * s.latent if s.latent else 0)
    else:
        raise ValueError(f"unknown layer kind {kind!r}")
    return 4 * fp32 + 2 * low


def fused_activation_bytes(s, kind: str, precision: str) -> float:
    """Bytes one block saves for backward, per token, with fused GPU kernels (Megatron-Core with Transformer
    Engine, FlashAttention and mamba-ssm's fused conv + scan, which recompute the scan's chunk tensors):
    16-bit tensors, and the inputs of the low-precision linears in their FP8 / NVFP4 copies (Korthikanti et
    al. 2022, "Reducing Activation Recomputation in Large Transformer Models", with sequence parallel).
    """
    h = s.hidden
    linear_in = {"fp8": 1.0, "nvfp4": FORMAT_BYTES["nvfp4"]}.get(precision, 2.0)
    base = 2 * h + linear_in * h  # the block input (residual) and its norm output, as the first linear's input
    if kind == "M":
        # in_proj output (z, x, B, C, dt) for the fused conv + scan backward, the scan output for the gated
        # norm, and the out_proj input
        return base + 2 * (2 * s.mamba_inner + 2 * s.groups * s.state + s.mamba_heads) + 2 * s.mamba_inner + linear_in * s.mamba_inner
    if kind == "*":
        qkv = s.heads * s.head_dim + 2 * s.kv_heads * s.head_dim
        return base + 2 * qkv + linear_in * s.heads * s.head_dim + 4 * s.heads  # q, k, v; output (o_proj input); fp32 lse
    if kind == "-":
        # up output (SwiGLU: gate and up outputs); activation (down_proj input)
        return base + 2 * (s.mlp_matrices - 1) * s.mlp_hidden + linear_in * s.mlp_hidden
    if kind == "E":
        d = s.latent or s.hidden
        routed = s.top_k * (linear_in * d + 2 * s.expert_hidden + linear_in * s.expert_hidden)
        return base + routed + 2 * s.shared_hidden + linear_in * s.shared_hidden + 4 * s.experts
    raise ValueError(f"unknown layer kind {kind!r}")


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes one GPU holds at the peak of a training step."""

    weights: int
    grads: int
    optimizer: int
    activations: int
    transient: int  # the loss's backward: gradients of the FP32 log-softmax and of the logits
    grads_preallocated: bool = False  # Megatron's contiguous gradient buffer lives through the whole step

    @property
    def total(self) -> int:
        """The step's peak. Gradients the factory's trainer frees after each step (`zero_grad(set_to_none)`)
        are born during backward as the saved activations die, so the peak holds the larger of the two."""
        if self.grads_preallocated:
            return self.weights + self.grads + self.optimizer + self.activations + self.transient
        return self.weights + self.optimizer + max(self.activations + self.transient, self.grads)

    @property
    def total_gib(self) -> float:
        return self.total / GIB

    def terms(self) -> dict[str, int]:
        return {"weights": self.weights, "grads": self.grads, "optimizer": self.optimizer,
                "activations": self.activations, "transient": self.transient}

    def largest(self) -> str:
        terms = self.terms()
        return max(terms, key=terms.__getitem__)


def training_memory(
    model: Any,
    *,
    seq_len: int,
    micro_batch: int,
    layout: ParallelLayout | None = None,
    precision: str = "fp32",
    recompute: bool = False,
    engine: str = "factory",
    vocab_size: int | None = None,
) -> TrainingMemory:
    """Peak memory of one GPU in a training step of `model` on `micro_batch` sequences of `seq_len` tokens.

    - weights, grads, optimizer: `STATE_BYTES[engine]` per parameter, over tensor x pipeline parallel
      (the embedding and the output head sit on the first and last stage); `layout.sharding` divides the
      optimizer state (optimizer) or all three (fsdp) over the data-parallel ranks.
    - low-precision weight copies (`WEIGHT_COPY_BYTES[precision]`) count with the activations.
    - activations: the factory engine runs transformers' PyTorch path (`activation_elements` x 4 bytes per
      block and token in fp32, `autocast_activation_bytes` under bf16 autocast, as fp8 and nvfp4 also run
      their linears' surroundings); the megatron engine fused kernels
      (`fused_activation_bytes`); both plus the FP32 log-softmax of the logits; over tensor x context parallel (sequence parallel splits the
      rest); a pipeline's first stage holds `pipeline` micro-batches of its 1/`pipeline` of the layers, the
      same as one micro-batch of all. With `recompute`, each block keeps only its input, and one block's
      activations are rebuilt at a time.
    """
    layout = layout or ParallelLayout()
    if engine not in STATE_BYTES:
        raise ValueError(f"unknown engine {engine!r}; known: {sorted(STATE_BYTES)}")
    if precision not in WEIGHT_COPY_BYTES:
        raise ValueError(f"unknown precision {precision!r}; known: {sorted(WEIGHT_COPY_BYTES)}")
    if seq_len <= 0 or micro_batch <= 0:
        raise ValueError(f"seq_len and micro_batch must be positive, got {seq_len} and {micro_batch}")
    s = as_shape(model, vocab_size)
    counts = parameter_counts(s)
    ends = counts.by_part.get("embedding", 0) + counts.by_part.get("lm_head", 0)
    if layout.pipeline > 1:
        ends = max(counts.by_part.get("embedding", 0), counts.by_part.get("lm_head", 0))
    local = (counts.total - counts.by_part.get("embedding", 0) - counts.by_part.get("lm_head", 0)) / (layout.tensor * layout.pipeline)
    local += ends / layout.tensor
    state = STATE_BYTES[engine]
    dp = layout.data
    weights = local * state["weights"] / (dp if layout.sharding == "fsdp" else 1)
    grads = local * state["grads"] / (dp if layout.sharding == "fsdp" else 1)
    optimizer = local * state["optimizer"] / (dp if layout.sharding in ("optimizer", "fsdp") else 1)

    act_bytes = 2 if engine == "megatron" else 4  # the residual stream a recomputed block keeps: FP32 in the factory
    tokens = micro_batch * seq_len / (layout.tensor * layout.context)
    if engine == "megatron":
        per_block = {k: fused_activation_bytes(s, k, precision) for k in set(s.pattern)}
        final = 2 * s.hidden * 2
    elif precision == "fp32":
        per_block = {k: activation_elements(s, k, seq_len) * 4 for k in set(s.pattern)}
        final = (3 * s.hidden + 1) * 4  # the final norm
    else:
        per_block = {k: autocast_activation_bytes(s, k, seq_len) for k in set(s.pattern)}
        final = (2 * s.hidden + 1) * 4 + 2 * s.hidden
    if recompute:
        blocks = len(s.pattern) * s.hidden * act_bytes + max(per_block.values())
    else:
        blocks = sum(per_block[k] for k in s.pattern)
    logits_fp32 = 4 * s.vocab_size  # the loss upcasts the logits and saves their log-softmax
    activations = tokens * (blocks + final + logits_fp32) + local * WEIGHT_COPY_BYTES[precision]
    transient = 2 * 4 * tokens * s.vocab_size
    return TrainingMemory(round(weights), round(grads), round(optimizer), round(activations), round(transient),
                          grads_preallocated=engine == "megatron")
