"""`ModelConfig` -> Megatron-Core's hybrid Mamba model arguments (`MambaModel` / `HybridModel`).

Field names are Megatron-Core's `TransformerConfig` / `MambaModel` names, as Megatron-Bridge's NemotronH
bridge maps them from the Hugging Face `NemotronHConfig` (`n_groups -> mamba_num_groups`,
`ssm_state_size -> mamba_state_dim`, `intermediate_size -> ffn_hidden_size`,
`num_key_value_heads -> num_query_groups`, `head_dim -> kv_channels`, `n_routed_experts -> num_moe_experts`,
...). `megatron_cli_args` writes the same as `pretrain_mamba.py` flags.
"""

from __future__ import annotations

from typing import Any

from factory.errors import InputError, SpecError
from factory.model.config import LAYER_TYPES, ModelConfig

# Keys of `megatron_model_args` that are `MambaModel` constructor arguments (Megatron-LM flags for the
# vocabulary divisor and context length); every other key is a `TransformerConfig` field.
MODEL_KWARGS = frozenset({"hybrid_override_pattern", "vocab_size", "make_vocab_size_divisible_by", "seq_length",
                          "max_position_embeddings", "position_embedding_type", "share_embeddings_and_output_weights",
                          "activation_func"})

# Megatron pads the vocabulary to a multiple of this times the tensor-parallel size (its default, 128).
VOCAB_DIVISOR = 128


def megatron_model_args(config: ModelConfig, vocab_size: int, seq_length: int) -> dict[str, Any]:
    """Keyword arguments of Megatron-Bridge's hybrid model provider (Megatron-Core config names)."""
    if vocab_size <= 0:
        raise SpecError(f"vocab_size: must be positive, got {vocab_size}")
    if not 0 < seq_length <= config.max_position_embeddings:
        raise SpecError(f"pretrain.seq_len: {seq_length} must be in 1..{config.max_position_embeddings} "
                        "(the model's max_position_embeddings)")
    if config.mtp_layers:
        raise SpecError("model.overrides.mtp_layers: the Megatron engine does not build MTP layers yet; set it to 0")
    if config.moe_latent_size is not None:
        raise SpecError("model.overrides.moe_latent_size: latent MoE is not mapped to Megatron yet; leave it unset")
    if config.mlp_activation != "relu2":
        raise SpecError(f"model.overrides.mlp_activation: Megatron's hybrid model uses squared ReLU; got {config.mlp_activation!r}")
    args: dict[str, Any] = {
        "hybrid_override_pattern": config.pattern,
        "num_layers": config.num_layers,
        "hidden_size": config.hidden_size,
        "ffn_hidden_size": config.intermediate_size,
        "num_attention_heads": config.num_attention_heads,
        "num_query_groups": config.num_key_value_heads,
        "kv_channels": config.head_dim,
        "mamba_num_heads": config.mamba_num_heads,
        "mamba_head_dim": config.mamba_head_dim,
        "mamba_num_groups": config.mamba_groups,
        "mamba_state_dim": config.ssm_state_size,
        "vocab_size": vocab_size,
        "make_vocab_size_divisible_by": VOCAB_DIVISOR,
        "seq_length": seq_length,
        "max_position_embeddings": config.max_position_embeddings,
        "layernorm_epsilon": config.norm_eps,
        "init_method_std": config.initializer_range,
        "normalization": "RMSNorm",
        "activation_func": "squared_relu",  # a callable in TransformerConfig: megatron.core.activations.squared_relu
        "position_embedding_type": "none",  # Nemotron-H attention has no RoPE: the Mamba layers carry position
        "add_bias_linear": False,
        "share_embeddings_and_output_weights": config.tie_embeddings,
        "num_moe_experts": None,
    }
    if "E" in config.pattern:
        # Nemotron 3's router, as Megatron-Bridge sets it: sigmoid scores with a learned expert bias.
        args.update(
            num_moe_experts=config.moe_num_experts,
            moe_router_topk=config.moe_top_k,
            moe_ffn_hidden_size=config.moe_intermediate_size,
            moe_shared_expert_intermediate_size=config.moe_shared_intermediate_size,
            moe_router_topk_scaling_factor=config.moe_routed_scaling_factor,
            moe_router_score_function="sigmoid",
            moe_router_enable_expert_bias=True,
            moe_grouped_gemm=True,
        )
    return args


_FLAG_VALUES = ("hybrid_override_pattern", "num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads",
                "num_query_groups", "kv_channels", "mamba_num_heads", "mamba_head_dim", "mamba_num_groups",
                "mamba_state_dim", "make_vocab_size_divisible_by", "seq_length", "max_position_embeddings",
                "init_method_std", "normalization", "position_embedding_type")
_MOE_FLAGS = {"num_moe_experts": "num-experts", "moe_router_topk": "moe-router-topk", "moe_ffn_hidden_size": "moe-ffn-hidden-size",
              "moe_shared_expert_intermediate_size": "moe-shared-expert-intermediate-size",
              "moe_router_topk_scaling_factor": "moe-router-topk-scaling-factor",
              "moe_router_score_function": "moe-router-score-function"}


def megatron_cli_args(args: dict[str, Any]) -> list[str]:
    """`megatron_model_args` as Megatron-LM `pretrain_mamba.py` flags (vocabulary size comes from the tokenizer)."""
    flags = [f"--{name.replace('_', '-')}={args[name]}" for name in _FLAG_VALUES]
    flags += ["--group-query-attention", f"--norm-epsilon={args['layernorm_epsilon']}", "--squared-relu",
              "--disable-bias-linear"]
    if not args["share_embeddings_and_output_weights"]:
        flags.append("--untie-embeddings-and-output-weights")
    if args["num_moe_experts"]:
        flags += [f"--{flag}={args[name]}" for name, flag in _MOE_FLAGS.items()]
        flags += ["--moe-router-enable-expert-bias", "--moe-grouped-gemm"]
    return flags


def model_config_of(hf_config: Any) -> ModelConfig:
    """The `ModelConfig` of a transformers `NemotronHConfig` (the inverse of `ModelConfig.to_hf`): what the Megatron
    engine builds when it continues a Hugging Face checkpoint. A setting the Megatron mapping does not carry (a
    config `to_hf` would not write) is an `InputError` naming it."""
    if getattr(hf_config, "model_type", None) != "nemotron_h":
        raise InputError(f"the Megatron engine trains NemotronH models (Megatron-Core's hybrid MambaModel); this model "
                         f"is {getattr(hf_config, 'model_type', type(hf_config).__name__)!r}")
    fixed = {"use_bias": False, "attention_bias": False, "mlp_bias": False, "use_conv_bias": True,
             "residual_in_fp32": False, "mamba_hidden_act": "silu", "time_step_min": 1e-3, "norm_topk_prob": True,
             "n_group": 1, "topk_group": 1}
    differ = sorted(k for k, v in fixed.items() if getattr(hf_config, k, v) != v)
    if differ:
        raise InputError(f"the Megatron engine builds NemotronH with {', '.join(f'{k}={fixed[k]!r}' for k in differ)}; "
                         f"this model's config differs ({', '.join(f'{k}={getattr(hf_config, k)!r}' for k in differ)})")
    letter = {name: char for char, name in LAYER_TYPES.items()}
    pattern = "".join(letter[t] for t in hf_config.layers_block_type)
    moe = "E" in pattern
    return ModelConfig(
        pattern=pattern, hidden_size=hf_config.hidden_size, num_attention_heads=hf_config.num_attention_heads,
        num_key_value_heads=hf_config.num_key_value_heads, head_dim=hf_config.head_dim,
        intermediate_size=hf_config.intermediate_size, mlp_activation=hf_config.mlp_hidden_act,
        mamba_num_heads=hf_config.mamba_num_heads, mamba_head_dim=hf_config.mamba_head_dim,
        ssm_state_size=hf_config.ssm_state_size, mamba_groups=hf_config.n_groups, conv_kernel=hf_config.conv_kernel,
        chunk_size=hf_config.chunk_size,
        moe_num_experts=hf_config.n_routed_experts if moe else 0, moe_top_k=hf_config.num_experts_per_tok if moe else 0,
        moe_intermediate_size=hf_config.moe_intermediate_size if moe else 0,
        moe_shared_intermediate_size=hf_config.moe_shared_expert_intermediate_size if moe else 0,
        moe_routed_scaling_factor=hf_config.routed_scaling_factor if moe else 1.0,
        moe_latent_size=hf_config.moe_latent_size, mtp_layers=hf_config.num_nextn_predict_layers or 0,
        mtp_pattern="".join(letter[t] for t in hf_config.mtp_layers_block_type),
        max_position_embeddings=hf_config.max_position_embeddings, norm_eps=hf_config.layer_norm_epsilon,
        initializer_range=hf_config.initializer_range)
