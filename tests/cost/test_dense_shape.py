"""The cost formulas on the dense decoders users import: parameter counts equal the modules transformers builds."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from factory.cost.flops import flops_per_token
from factory.cost.param_count import parameter_counts
from factory.cost.shape import DENSE_DECODERS, as_shape

SMALL = dict(vocab_size=1000, hidden_size=64, intermediate_size=176, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2)
CASES = [
    ("llama", {}), ("llama", {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True}),
    ("llama", {"head_dim": 32}), ("mistral", {}), ("qwen2", {}), ("qwen2", {"tie_word_embeddings": True}),
    ("qwen3", {"head_dim": 24}), ("qwen3", {"attention_bias": True}),
]


@pytest.mark.parametrize(("model_type", "extra"), CASES, ids=[f"{t}-{'-'.join(e) or 'plain'}" for t, e in CASES])
def test_parameter_counts_equal_the_built_model(model_type, extra):
    config = AutoConfig.for_model(model_type, **SMALL, **extra)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    built = sum(p.numel() for p in model.parameters())  # tied weights are one parameter
    assert parameter_counts(config).total == built


def test_a_dense_layer_is_attention_then_a_three_matrix_mlp():
    config = AutoConfig.for_model("llama", **SMALL)
    shape = as_shape(config)
    assert shape.pattern == "*-" * 3 and shape.mlp_matrices == 3
    flops = flops_per_token(config, 128).by_part
    assert flops["mlp"] == 3 * 2 * 3 * 64 * 176  # layers x 2 FLOPs x gate, up, down


def test_other_architectures_are_named_not_guessed():
    config = AutoConfig.for_model("mixtral", **SMALL)
    with pytest.raises(TypeError, match="mixtral"):
        as_shape(config)
    assert set(DENSE_DECODERS) >= {"llama", "qwen2", "qwen3", "mistral"}
