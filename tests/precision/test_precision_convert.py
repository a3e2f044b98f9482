"""The precision converter: which linears it swaps, what it keeps, and the converter order check."""

import pytest
import torch
from torch import nn
from transformers import NemotronHConfig, NemotronHForCausalLM

from factory.model.converter_order import CONVERTER_ORDER
from factory.precision import ConverterOrderError, Float8Linear, NVFP4Linear, PrecisionConfig, convert_model, record_converter
from factory.precision.convert import applied_converters, count_low_precision, plan_conversion
from factory.precision.layers import module_spellings, select_modules


def tiny_nemotron_h(pattern: str = "M*-M*-") -> NemotronHForCausalLM:
    torch.manual_seed(0)
    config = NemotronHConfig(
        vocab_size=64, hidden_size=64, hybrid_override_pattern=pattern, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, intermediate_size=128, ssm_state_size=16, mamba_num_heads=4, mamba_head_dim=32, n_groups=1,
        chunk_size=16,
    )
    return NemotronHForCausalLM(config)


def test_layers_are_chosen_by_name_with_indices_from_either_end():
    model = tiny_nemotron_h()
    assert module_spellings(model)["model.layers.5.mixer.down_proj"] == ("model.layers.5.mixer.down_proj",
                                                                           "model.layers.-1.mixer.down_proj")
    assert select_modules(model, ("model.layers.-1.*",)) == ["model.layers.5.mixer.up_proj", "model.layers.5.mixer.down_proj"]
    assert select_modules(model, ("*.o_proj", "lm_head")) == ["model.layers.1.mixer.o_proj", "model.layers.4.mixer.o_proj",
                                                             "lm_head"]
    # "layers.1.*" is block 1 only, never 10-19; a pattern naming no module selects nothing.
    assert {n.split(".mixer")[0] for n in select_modules(model, ("model.layers.1.*",))} == {"model.layers.1"}
    assert select_modules(model, ("backbone.layers.0.*",)) == []


@pytest.mark.parametrize("recipe,cls", [("fp8", Float8Linear), ("nvfp4", NVFP4Linear)])
def test_converter_keeps_the_named_layers(recipe, cls):
    model = tiny_nemotron_h()
    keys, params = list(model.state_dict()), {id(p) for p in model.parameters()}
    convert_model(model, recipe, PrecisionConfig(high_precision_layers=("lm_head", "model.layers.0.*", "model.layers.-2.*",
                                                                         "model.layers.-1.*")))
    converted = sorted({name.split(".mixer")[0] for name, m in model.named_modules() if isinstance(m, cls)})
    assert converted == ["model.layers.1", "model.layers.2", "model.layers.3"]  # blocks 0, 4, 5 kept
    assert type(model.lm_head) is nn.Linear and type(model.model.layers[0].mixer.in_proj) is nn.Linear
    assert type(model.model.layers[1].mixer.q_proj) is cls and type(model.model.layers[2].mixer.up_proj) is cls
    assert count_low_precision(model) == {"fp8": 0, "nvfp4": 0, recipe: 8, "high": 16 - 8 + 1}  # q,k,v,o + up,down + in,out
    assert list(model.state_dict()) == keys  # checkpoints load unchanged
    assert {id(p) for p in model.parameters()} == params  # same parameters: the optimizer is unaffected


def test_default_keeps_first_and_last_block_and_the_head():
    model = tiny_nemotron_h()
    to_convert, kept = plan_conversion(model, PrecisionConfig())
    assert kept == ["model.layers.0.mixer.in_proj", "model.layers.0.mixer.out_proj", "model.layers.5.mixer.up_proj",
                    "model.layers.5.mixer.down_proj", "lm_head"]
    assert len(to_convert) == 17 - 5
    to_convert, kept = plan_conversion(model, PrecisionConfig(high_precision_layers=("*",)))
    assert to_convert == [] and len(kept) == 17
    to_convert, kept = plan_conversion(model, PrecisionConfig(high_precision_layers=()))
    assert kept == [] and len(to_convert) == 17


def test_patterns_work_on_any_model():
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.Linear(32, 4))
    convert_model(mlp, "fp8", PrecisionConfig(high_precision_layers=("0", "-1")))
    assert [type(m).__name__ for m in mlp if isinstance(m, nn.Linear)] == ["Linear", "Float8Linear", "Float8Linear", "Linear"]


def test_bf16_recipe_changes_no_module_but_is_recorded():
    model = tiny_nemotron_h()
    convert_model(model, "bf16")
    assert count_low_precision(model)["high"] == 17 and applied_converters(model) == ["precision"]


def test_converter_order_is_checked():
    model = tiny_nemotron_h()
    record_converter(model, "prune")
    convert_model(model, "fp8")
    with pytest.raises(ConverterOrderError, match="'precision' cannot run after 'precision'"):
        convert_model(model, "nvfp4")  # one precision decision per model
    record_converter(model, "compile")
    with pytest.raises(ConverterOrderError, match="prune -> precision"):
        record_converter(model, "activation_checkpointing")  # compile wraps the model: it comes later
    assert CONVERTER_ORDER == ("prune", "precision", "activation_checkpointing", "compile", "shard")  # the one list
    other = tiny_nemotron_h()
    record_converter(other, "shard")
    with pytest.raises(ConverterOrderError, match="'precision' cannot run after 'shard'"):
        convert_model(other, "fp8")


def test_bad_recipe_and_bad_config_are_refused():
    with pytest.raises(ValueError, match="fp8, nvfp4"):
        convert_model(nn.Linear(4, 4), "int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep_first_n"):
        PrecisionConfig(keep_first_n=1)  # layers are chosen by name, not by position
