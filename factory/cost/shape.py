"""`Shape`: the numbers cost arithmetic needs, read from a `ModelConfig`, a `ModelSpec`, a transformers
`NemotronHConfig` or the config of a dense decoder users import (Llama, Mistral, Qwen2, Qwen3), so every formula in
`factory.cost` works on one plain record whatever it was given.

A dense decoder layer is two blocks in the hybrid's pattern notation, attention then MLP, each with its pre-norm
("*-" per layer), with a SwiGLU MLP (three matrices: gate, up, down) where the hybrid's has two."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from factory.model import LAYER_TYPES, ModelConfig, ModelSpec

# The vocabulary every published Nemotron-H / Nano 2 / Nemotron 3 checkpoint uses.
DEFAULT_VOCAB = 131072
_CHAR = {v: k for k, v in LAYER_TYPES.items()}


@dataclass(frozen=True)
class Shape:
    """One hybrid model's dimensions. Layer kinds are pattern characters (M * - E)."""

    pattern: str
    vocab_size: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    mlp_hidden: int
    mamba_heads: int
    mamba_head_dim: int
    state: int
    groups: int
    conv_kernel: int
    chunk: int
    experts: int
    top_k: int
    expert_hidden: int
    shared_hidden: int
    latent: int | None
    mtp_layers: int
    mtp_pattern: str
    tied: bool = False
    mamba_bias: bool = False  # in_proj / out_proj bias (NemotronHConfig.use_bias)
    conv_bias: bool = True
    mlp_bias: bool = False
    mlp_matrices: int = 2  # 2: squared ReLU (up, down); 3: SwiGLU (gate, up, down)
    qkv_bias: bool = False  # biases on q, k and v (Qwen2; Llama and Qwen3 with attention_bias)
    o_bias: bool = False  # a bias on o_proj (Llama and Qwen3 with attention_bias)
    qk_norm: bool = False  # RMSNorm over each head's q and k (Qwen3)
    max_position_embeddings: int | None = None  # the longest context the config declares, where a Shape is all there is

    @property
    def mamba_inner(self) -> int:
        """d_in = heads x head_dim: the width the SSM works in."""
        return self.mamba_heads * self.mamba_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the causal conv: x, B and C (d_in + 2 G N)."""
        return self.mamba_inner + 2 * self.groups * self.state

    def count(self, kind: str) -> int:
        return self.pattern.count(kind)


def as_shape(model: Any, vocab_size: int | None = None) -> Shape:
    """A `Shape` from a `Shape`, `ModelSpec`, `ModelConfig` or transformers `NemotronHConfig`.

    `vocab_size` is needed for a `ModelSpec`/`ModelConfig` (the tokenizer sets it); it defaults to the
    published checkpoints' 131,072. A `NemotronHConfig` carries its own.
    """
    if isinstance(model, Shape):
        return model
    if isinstance(model, ModelSpec):
        model = model.resolve()
    if isinstance(model, ModelConfig):
        moe = model.moe_num_experts > 0
        return Shape(
            pattern=model.pattern,
            vocab_size=vocab_size or DEFAULT_VOCAB,
            hidden=model.hidden_size,
            heads=model.num_attention_heads,
            kv_heads=model.num_key_value_heads,
            head_dim=model.head_dim,
            mlp_hidden=model.intermediate_size,
            mamba_heads=model.mamba_num_heads,
            mamba_head_dim=model.mamba_head_dim,
            state=model.ssm_state_size,
            groups=model.mamba_groups,
            conv_kernel=model.conv_kernel,
            chunk=model.chunk_size,
            # to_hf() builds 1 expert of width intermediate_size when there are no E layers; unused then
            experts=model.moe_num_experts if moe else 1,
            top_k=model.moe_top_k if moe else 1,
            expert_hidden=model.moe_intermediate_size or model.intermediate_size,
            shared_hidden=model.moe_shared_intermediate_size or model.intermediate_size,
            latent=model.moe_latent_size,
            mtp_layers=model.mtp_layers,
            mtp_pattern=model.mtp_pattern,
            tied=model.tie_embeddings,
        )
    if hasattr(model, "layers_block_type"):  # transformers NemotronHConfig
        c = model
        return Shape(
            pattern="".join(_CHAR[t] for t in c.layers_block_type),
            vocab_size=vocab_size or c.vocab_size,
            hidden=c.hidden_size,
            heads=c.num_attention_heads,
            kv_heads=c.num_key_value_heads,
            head_dim=c.head_dim,
            mlp_hidden=c.intermediate_size,
            mamba_heads=c.mamba_num_heads,
            mamba_head_dim=c.mamba_head_dim,
            state=c.ssm_state_size,
            groups=c.n_groups,
            conv_kernel=c.conv_kernel,
            chunk=c.chunk_size,
            experts=c.n_routed_experts,
            top_k=c.num_experts_per_tok,
            expert_hidden=c.moe_intermediate_size,
            shared_hidden=c.moe_shared_expert_intermediate_size,
            latent=c.moe_latent_size,
            mtp_layers=c.num_nextn_predict_layers or 0,
            mtp_pattern="".join(_CHAR[t] for t in (c.mtp_layers_block_type or [])),
            tied=bool(c.tie_word_embeddings),
            mamba_bias=bool(c.use_bias),
            conv_bias=bool(c.use_conv_bias),
            mlp_bias=bool(c.mlp_bias),
        )
    if getattr(model, "model_type", None) in DENSE_DECODERS:
        return _dense_shape(model, vocab_size)
    raise TypeError(f"cannot read a model shape from {type(model).__name__} (model_type "
                    f"{getattr(model, 'model_type', None)!r}); give a ModelSpec, ModelConfig, NemotronHConfig or the "
                    f"config of a dense decoder ({', '.join(sorted(DENSE_DECODERS))})")


# Dense decoders whose modules the cost formulas count exactly (tests/cost/test_dense_shape.py builds each):
# model_type -> (q/k/v bias always, q/k norms).
DENSE_DECODERS = {"llama": (False, False), "mistral": (False, False), "qwen2": (True, False), "qwen3": (False, True)}


def _dense_shape(c: Any, vocab_size: int | None) -> Shape:
    qkv_always, qk_norm = DENSE_DECODERS[c.model_type]
    attention_bias = bool(getattr(c, "attention_bias", False))
    heads = c.num_attention_heads
    return Shape(
        pattern="*-" * c.num_hidden_layers,
        vocab_size=vocab_size or c.vocab_size,
        hidden=c.hidden_size,
        heads=heads,
        kv_heads=getattr(c, "num_key_value_heads", None) or heads,
        head_dim=getattr(c, "head_dim", None) or c.hidden_size // heads,
        mlp_hidden=c.intermediate_size,
        mamba_heads=0, mamba_head_dim=0, state=0, groups=1, conv_kernel=1, chunk=1,
        experts=1, top_k=1, expert_hidden=c.intermediate_size, shared_hidden=c.intermediate_size, latent=None,
        mtp_layers=0, mtp_pattern="",
        tied=bool(getattr(c, "tie_word_embeddings", False)),
        mlp_bias=bool(getattr(c, "mlp_bias", False)),
        mlp_matrices=3,
        qkv_bias=qkv_always or attention_bias,
        o_bias=attention_bias,
        qk_norm=qk_norm,
        max_position_embeddings=getattr(c, "max_position_embeddings", None),
    )
