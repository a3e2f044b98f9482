"""`ModelConfig`: the shape of a hybrid Mamba-2 / attention / MLP / MoE model, as data.

The layer layout is a pattern string (STYLE rule 7): one character per layer,
`M` = Mamba-2 mixer, `*` = self-attention, `-` = dense MLP, `E` = mixture of experts.
`to_hf()` maps it onto transformers' `NemotronHConfig`, so the model that trains here is stock
`NemotronHForCausalLM` and the saved folder loads in plain transformers and vLLM.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# NemotronHConfig names for the pattern characters (`layers_block_type` in transformers 5.x).
LAYER_TYPES = {"M": "linear_attention", "*": "full_attention", "-": "mlp", "E": "moe"}


class ModelConfig(BaseModel):
    """Architecture of one hybrid model. Vocabulary size and special token ids come from the tokenizer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = Field(description="Layer layout, one char per layer: M=Mamba-2, *=attention, -=MLP, E=MoE.")
    hidden_size: int = Field(gt=0, description="Width of the residual stream.")
    # attention
    num_attention_heads: int = Field(gt=0, description="Query heads of each attention layer.")
    num_key_value_heads: int = Field(gt=0, description="Key/value heads (grouped-query attention).")
    head_dim: int = Field(gt=0, description="Width of one attention head.")
    # dense MLP (squared-ReLU, as in Nemotron-H)
    intermediate_size: int = Field(gt=0, description="Hidden width of the dense MLP layers.")
    mlp_activation: str = Field("relu2", description="Activation of MLP and expert layers (transformers ACT2FN name).")
    # Mamba-2
    mamba_num_heads: int = Field(gt=0, description="SSM heads of each Mamba-2 layer.")
    mamba_head_dim: int = Field(gt=0, description="Width of one SSM head (heads * head_dim = the mixer's inner width).")
    ssm_state_size: int = Field(gt=0, description="SSM state size N per head.")
    mamba_groups: int = Field(gt=0, description="Groups sharing B and C projections (like KV groups).")
    conv_kernel: int = Field(4, gt=0, description="Width of the causal depthwise convolution.")
    chunk_size: int = Field(128, gt=0, description="Chunk length of the chunked SSD scan.")
    # mixture of experts (used by `E` layers)
    moe_num_experts: int = Field(0, ge=0, description="Routed experts per MoE layer.")
    moe_top_k: int = Field(0, ge=0, description="Experts each token is routed to.")
    moe_intermediate_size: int = Field(0, ge=0, description="Hidden width of one routed expert.")
    moe_shared_intermediate_size: int = Field(0, ge=0, description="Hidden width of the one shared expert of each MoE layer.")
    moe_routed_scaling_factor: float = Field(1.0, gt=0, description="Scale applied to the routed experts' combined output.")
    moe_latent_size: int | None = Field(None, description="Latent width routed experts work in (latent MoE); None = hidden_size.")
    # multi-token prediction: recorded in the config; transformers 5.x builds no MTP modules
    mtp_layers: int = Field(0, ge=0, description="Multi-token-prediction depth (num_nextn_predict_layers).")
    mtp_pattern: str = Field("*E", description="Layer layout of one MTP block.")
    # misc
    max_position_embeddings: int = Field(4096, gt=0, description="Longest context the config declares.")
    tie_embeddings: Literal[False] = Field(
        False, description="Tied input/output embeddings; NemotronHForCausalLM declares no tied weights, so only False."
    )
    norm_eps: float = Field(1e-5, gt=0, description="RMSNorm epsilon.")
    initializer_range: float = Field(0.02, gt=0, description="Std of the normal init of linear and embedding weights.")

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        bad = sorted(set(self.pattern) - set(LAYER_TYPES))
        if not self.pattern or bad:
            raise ValueError(f"pattern {self.pattern!r} must be non-empty and use only M * - E (bad: {bad})")
        if set(self.mtp_pattern) - set(LAYER_TYPES):
            raise ValueError(f"mtp_pattern {self.mtp_pattern!r} must use only M * - E")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.mamba_num_heads % self.mamba_groups:
            raise ValueError("mamba_num_heads must be a multiple of mamba_groups")
        if "E" in self.pattern + (self.mtp_pattern if self.mtp_layers else ""):
            # transformers' NemotronHMoE always builds one shared expert, so its width must be given too.
            if not (0 < self.moe_top_k <= self.moe_num_experts) or min(self.moe_intermediate_size, self.moe_shared_intermediate_size) <= 0:
                raise ValueError(
                    "an E layer needs moe_num_experts > 0, 0 < moe_top_k <= moe_num_experts, "
                    "moe_intermediate_size > 0 and moe_shared_intermediate_size > 0"
                )
        return self

    @property
    def num_layers(self) -> int:
        return len(self.pattern)

    def to_hf(self, vocab_size: int, **special_token_ids: int | None):
        """The transformers `NemotronHConfig` for this shape and a tokenizer's vocabulary.

        `special_token_ids` are `bos_token_id`, `eos_token_id`, `pad_token_id` (as the tokenizer has them).
        """
        from transformers import NemotronHConfig  # loading a spec imports this module; transformers only here

        unknown = set(special_token_ids) - {"bos_token_id", "eos_token_id", "pad_token_id"}
        if unknown:
            raise TypeError(f"unknown special token ids: {sorted(unknown)}")
        moe = self.moe_num_experts > 0
        return NemotronHConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            layers_block_type=[LAYER_TYPES[c] for c in self.pattern],
            tie_word_embeddings=self.tie_embeddings,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            max_position_embeddings=self.max_position_embeddings,
            intermediate_size=self.intermediate_size,
            mlp_hidden_act=self.mlp_activation,
            ssm_state_size=self.ssm_state_size,
            mamba_num_heads=self.mamba_num_heads,
            mamba_head_dim=self.mamba_head_dim,
            n_groups=self.mamba_groups,
            conv_kernel=self.conv_kernel,
            chunk_size=self.chunk_size,
            n_routed_experts=self.moe_num_experts if moe else 1,
            num_experts_per_tok=self.moe_top_k if moe else 1,
            moe_intermediate_size=self.moe_intermediate_size or self.intermediate_size,
            moe_shared_expert_intermediate_size=self.moe_shared_intermediate_size or self.intermediate_size,
            n_shared_experts=1,
            routed_scaling_factor=self.moe_routed_scaling_factor,
            moe_latent_size=self.moe_latent_size,
            num_nextn_predict_layers=self.mtp_layers,
            mtp_layers_block_type=[LAYER_TYPES[c] for c in self.mtp_pattern],
            layer_norm_epsilon=self.norm_eps,
            initializer_range=self.initializer_range,
            **special_token_ids,
        )
