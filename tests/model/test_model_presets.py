"""Model presets, the transformers config mapping, spec errors and converter ordering."""

from __future__ import annotations

import pytest
import torch

from factory.errors import SpecError
from factory.model import PRESETS, PUBLISHED, ModelConfig, ModelSpec, build_model, count_parameters
from factory.model.converter_order import CONVERTER_ORDER, applied_converters, apply_converters, check_order
from factory.train.converters import training_converters


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_shapes_match_published_parameter_totals(name):
    published = PUBLISHED[name]
    model = build_model(PRESETS[name](), published.vocab_size, device="meta")  # allocates nothing
    assert count_parameters(model) == pytest.approx(published.params, rel=0.02)


def test_small_presets_have_their_advertised_size():
    assert 300_000 < count_parameters(build_model(PRESETS["tiny"](), 2048, device="meta")) < 500_000
    assert count_parameters(build_model(PRESETS["small_20m"](), 16384, device="meta")) == pytest.approx(20e6, rel=0.05)


def test_to_hf_maps_the_pattern_and_fields():
    cfg = PRESETS["nemotron3_nano_30b_a3b"]().to_hf(131072, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    assert cfg.hybrid_override_pattern == PRESETS["nemotron3_nano_30b_a3b"]().pattern
    assert cfg.layers_block_type[:3] == ["linear_attention", "moe", "linear_attention"]
    assert (cfg.n_routed_experts, cfg.num_experts_per_tok, cfg.moe_intermediate_size) == (128, 6, 1856)
    assert (cfg.moe_shared_expert_intermediate_size, cfg.routed_scaling_factor) == (3712, 2.5)
    assert (cfg.mamba_num_heads, cfg.mamba_head_dim, cfg.n_groups, cfg.ssm_state_size) == (64, 64, 8, 128)
    assert (cfg.num_key_value_heads, cfg.head_dim, cfg.mlp_hidden_act) == (2, 128, "relu2")
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (1, 2, 0)
    mtp = PRESETS["tiny_moe"]().model_copy(update={"mtp_layers": 1}).to_hf(64)
    assert mtp.num_nextn_predict_layers == 1 and mtp.mtp_layers_block_type == ["full_attention", "moe"]


def test_tiny_moe_trains_a_step_on_cpu():
    torch.manual_seed(0)
    model = build_model(PRESETS["tiny_moe"](), 128)
    ids = torch.randint(0, 128, (2, 16))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss) and model.model.layers[1].mixer.experts.up_proj.grad.abs().sum() > 0


def test_spec_resolves_overrides_and_names_bad_keys():
    cfg = ModelSpec(preset="tiny", overrides={"pattern": "M*M-", "hidden_size": 96}).resolve()
    assert isinstance(cfg, ModelConfig) and (cfg.pattern, cfg.hidden_size, cfg.num_layers) == ("M*M-", 96, 4)
    with pytest.raises(SpecError, match=r"^model.overrides.hidden: not a ModelConfig field"):
        ModelSpec(overrides={"hidden": 96})
    with pytest.raises(SpecError, match=r"^model.preset: unknown preset 'gpt5'"):
        ModelSpec(preset="gpt5")
    with pytest.raises(SpecError, match=r"^model.overrides: .*pattern 'MX'"):
        ModelSpec(overrides={"pattern": "MX"})
    with pytest.raises(SpecError, match=r"^model.overrides.hidden_size: "):
        ModelSpec(overrides={"hidden_size": "wide"})
    with pytest.raises(SpecError, match="moe_num_experts"):
        ModelSpec(overrides={"pattern": "ME"})  # tiny has no experts configured


def test_converters_run_in_the_checked_order():
    check_order(["precision", "activation_checkpointing"])
    with pytest.raises(SpecError, match="order"):
        check_order(["activation_checkpointing", "precision"])
    with pytest.raises(SpecError, match="unknown converter 'fp3'"):
        check_order(["fp3"])
    model = apply_converters(build_model(PRESETS["tiny"](), 64),
                             training_converters("fp8", activation_checkpointing=True))
    assert model.is_activation_checkpointing and applied_converters(model) == ["precision", "activation_checkpointing"]
    assert type(model.model.layers[1].mixer.up_proj).__name__ == "Float8Linear"
    assert [c.name for c in training_converters("bf16")] == []  # bf16 is autocast: no module changes
    # Every converter a run can name has an implementation (none listed without one).
    assert {c.name for c in training_converters("nvfp4", activation_checkpointing=True)} | {"prune", "compile", "shard"} \
        == set(CONVERTER_ORDER)
