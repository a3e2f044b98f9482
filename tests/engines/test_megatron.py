"""The Megatron engine's CPU parts: model args, TE recipe and parallel args as data, and the exact
Megatron <-> Hugging Face state-dict round trip for every preset and published shape."""

from __future__ import annotations

import pytest
import torch

from factory.cost.layout import ParallelLayout
from factory.cost.published import SHAPES
from factory.engines.megatron import (
    MegatronAdapter,
    megatron_cli_args,
    megatron_model_args,
    megatron_parallel_args,
    te_recipe,
)
from factory.errors import InputError, SpecError
from factory.model import PRESETS, build_model
from factory.precision.config import PrecisionConfig

VOCAB = 256
SMALL = ("tiny", "tiny_moe", "small_20m")
BIG = sorted({*PRESETS, *SHAPES} - set(SMALL))


def test_model_args_nemotron_h_8b():
    args = megatron_model_args(PRESETS["nemotron_h_8b"](), vocab_size=131072, seq_length=8192)
    assert args["hybrid_override_pattern"] == PRESETS["nemotron_h_8b"]().pattern
    assert {k: args[k] for k in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
                                 "kv_channels", "mamba_num_heads", "mamba_head_dim", "mamba_num_groups", "mamba_state_dim")} == {
        "num_layers": 52, "hidden_size": 4096, "ffn_hidden_size": 21504, "num_attention_heads": 32, "num_query_groups": 8,
        "kv_channels": 128, "mamba_num_heads": 128, "mamba_head_dim": 64, "mamba_num_groups": 8, "mamba_state_dim": 128}
    assert args["num_moe_experts"] is None and args["position_embedding_type"] == "none"
    flags = megatron_cli_args(args)
    assert "--hybrid-override-pattern=" + args["hybrid_override_pattern"] in flags
    assert "--untie-embeddings-and-output-weights" in flags and not any(f.startswith("--num-experts") for f in flags)


def test_model_args_moe_and_errors():
    args = megatron_model_args(PRESETS["nemotron3_nano_30b_a3b"](), vocab_size=131072, seq_length=4096)
    assert (args["num_moe_experts"], args["moe_router_topk"], args["moe_ffn_hidden_size"],
            args["moe_shared_expert_intermediate_size"], args["moe_router_topk_scaling_factor"]) == (128, 6, 1856, 3712, 2.5)
    assert "--num-experts=128" in megatron_cli_args(args)
    with pytest.raises(SpecError, match="pretrain.seq_len"):
        megatron_model_args(PRESETS["tiny"](), vocab_size=VOCAB, seq_length=4096)
    with pytest.raises(SpecError, match="mtp_layers"):
        megatron_model_args(PRESETS["tiny"]().model_copy(update={"mtp_layers": 1}), vocab_size=VOCAB, seq_length=64)


@pytest.mark.parametrize("preset", SMALL)
def test_round_trip_real_tensors(preset):
    torch.manual_seed(0)
    config = PRESETS[preset]()
    hf = build_model(config, VOCAB).state_dict()
    # the trainer's models hold random init; make every tensor distinct so a swapped row would show
    hf = {name: torch.randn_like(t) for name, t in hf.items()}
    adapter = MegatronAdapter(config)
    megatron = adapter.from_hf(hf)
    assert set(megatron) == adapter.megatron_names and all(n.startswith(("decoder.", "embedding.", "output_layer.")) for n in megatron)
    back = adapter.to_hf(megatron)
    assert set(back) == set(hf)
    assert all(torch.equal(back[n], hf[n]) for n in hf)
    again = adapter.from_hf(back)
    assert all(torch.equal(again[n], megatron[n]) for n in megatron)


@pytest.mark.parametrize("name", BIG)
def test_round_trip_meta(name):
    config = (PRESETS.get(name) or SHAPES[name])()
    hf = build_model(config, 131072, device="meta").state_dict()
    adapter = MegatronAdapter(config)
    megatron = adapter.from_hf(hf)
    back = adapter.to_hf(megatron)
    assert {n: (t.shape, t.dtype) for n, t in back.items()} == {n: (t.shape, t.dtype) for n, t in hf.items()}
    c = config
    attn = c.pattern.index("*")
    qkv = megatron[f"decoder.layers.{attn}.self_attention.linear_qkv.weight"]
    assert qkv.shape == ((c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim, c.hidden_size)
    assert sum(t.numel() for t in megatron.values()) == sum(t.numel() for t in hf.values())


def test_qkv_layout_is_grouped_per_kv_head():
    # tiny: 4 query heads, 2 KV groups, head_dim 16: rows [q0 q1 k0 v0 | q2 q3 k1 v1]
    config = PRESETS["tiny"]()
    adapter = MegatronAdapter(config)
    hf = {n: torch.zeros(t.shape) for n, t in build_model(config, VOCAB, device="meta").state_dict().items()}
    attn = "model.layers.3.mixer."
    hf[attn + "q_proj.weight"] = torch.cat([torch.full((16, 64), 10.0 + h) for h in range(4)])
    hf[attn + "k_proj.weight"] = torch.cat([torch.full((16, 64), 20.0 + g) for g in range(2)])
    hf[attn + "v_proj.weight"] = torch.cat([torch.full((16, 64), 30.0 + g) for g in range(2)])
    qkv = adapter.from_hf(hf)["decoder.layers.3.self_attention.linear_qkv.weight"]
    assert qkv[::16, 0].tolist() == [10, 11, 20, 30, 12, 13, 21, 31]


def test_vocab_padding_and_bad_names():
    config = PRESETS["tiny"]()
    hf = {n: torch.randn(t.shape) for n, t in build_model(config, 250, device="meta").state_dict().items()}
    adapter = MegatronAdapter(config, vocab_size=250, padded_vocab_size=256)
    megatron = adapter.from_hf(hf)
    assert megatron["embedding.word_embeddings.weight"].shape == (256, 64)
    assert torch.equal(megatron["output_layer.weight"][250:], torch.zeros(6, 64))
    back = adapter.to_hf(megatron)
    assert all(torch.equal(back[n], hf[n]) for n in hf)
    with pytest.raises(InputError, match="missing.*model.layers.0.mixer.A_log"):
        MegatronAdapter(config).from_hf({n: t for n, t in hf.items() if n != "model.layers.0.mixer.A_log"})
    with pytest.raises(InputError, match="unexpected.*decoder.layers.9"):
        MegatronAdapter(config).to_hf({**MegatronAdapter(config).from_hf(hf), "decoder.layers.9.mixer.D": torch.zeros(1)})
    bad = dict(hf, **{"model.layers.3.mixer.k_proj.weight": torch.zeros(48, 64)})
    with pytest.raises(InputError, match=r"k_proj.weight has shape \(48, 64\)"):
        MegatronAdapter(config).from_hf(bad)


def test_unfused_norm_names():
    names = MegatronAdapter(PRESETS["tiny_moe"](), fused_norms=False).megatron_names  # pattern ME*E
    assert {"decoder.layers.0.norm.weight", "decoder.layers.1.pre_mlp_layernorm.weight",
            "decoder.layers.2.input_layernorm.weight"} <= names
    assert not any("layer_norm_weight" in n for n in names)


def test_te_recipes():
    spec = PrecisionConfig()
    fp8 = te_recipe("fp8", spec, num_layers=52)
    assert fp8["te"] == {"class": "Float8CurrentScaling", "fp8_format": "HYBRID"}
    assert fp8["megatron"] == {"bf16": True, "fp8": "hybrid", "fp8_recipe": "tensorwise", "first_last_layers_bf16": True,
                               "num_layers_at_start_in_bf16": 1, "num_layers_at_end_in_bf16": 1}
    delayed = te_recipe("fp8", spec.model_copy(update={"fp8_grad_format": "e4m3"}), 52, scaling="delayed")
    assert delayed["te"]["class"] == "DelayedScaling" and delayed["megatron"]["fp8"] == "e4m3"
    nvfp4 = te_recipe("nvfp4", spec.model_copy(update={"nvfp4_hadamard": False}), 52)
    assert nvfp4["te"] == {"class": "NVFP4BlockScaling", "disable_rht": True, "disable_stochastic_rounding": False,
                           "disable_2d_quantization": False}
    assert te_recipe("bf16", spec, 52) == {"te": None, "megatron": {"bf16": True}}
    with pytest.raises(SpecError, match="pretrain.precision"):
        te_recipe("fp16", spec, 52)
    two = spec.model_copy(update={"high_precision_layers": ("model.layers.0.*", "model.layers.1.*", "model.layers.-1.*")})
    assert te_recipe("fp8", two, 52)["megatron"]["num_layers_at_start_in_bf16"] == 2
    with pytest.raises(SpecError, match="precision.high_precision_layers"):
        te_recipe("fp8", spec.model_copy(update={"high_precision_layers": ("model.layers.*.mixer.out_proj",)}), 52)
    with pytest.raises(SpecError, match="precision.high_precision_layers"):
        te_recipe("fp8", spec.model_copy(update={"high_precision_layers": ("model.layers.2.*",)}), 52)


def test_parallel_args():
    config = PRESETS["nemotron3_nano_30b_a3b"]()
    args = megatron_parallel_args(ParallelLayout(data=8, tensor=2, pipeline=2, context=2, sharding="optimizer"), config, expert=8)
    assert args == {"tensor_model_parallel_size": 2, "pipeline_model_parallel_size": 2, "context_parallel_size": 2,
                    "expert_model_parallel_size": 8, "sequence_parallel": True, "use_distributed_optimizer": True,
                    "use_megatron_fsdp": False, "data_parallel_size": 8}
    assert megatron_parallel_args(ParallelLayout(), config)["sequence_parallel"] is False
    with pytest.raises(SpecError, match="resources.layout.tensor: 4 does not divide model num_key_value_heads = 2"):
        megatron_parallel_args(ParallelLayout(tensor=4), config)
    with pytest.raises(SpecError, match="resources.layout.expert"):
        megatron_parallel_args(ParallelLayout(data=4), PRESETS["nemotron_h_8b"](), expert=2)


def test_names_are_megatron_core_config_fields():
    """Where megatron-core is installed (it needs no GPU to build a config), every argument is a real
    `TransformerConfig` / `DistributedDataParallelConfig` field or `MambaModel` argument."""
    import dataclasses
    import inspect

    transformer_config = pytest.importorskip("megatron.core.transformer.transformer_config")
    from megatron.core.activations import squared_relu
    from megatron.core.distributed.distributed_data_parallel_config import (
        DistributedDataParallelConfig,
    )
    from megatron.core.models.mamba.mamba_model import MambaModel

    from factory.engines.megatron.model_args import MODEL_KWARGS

    fields = {f.name for f in dataclasses.fields(transformer_config.TransformerConfig)}
    mamba_model = set(inspect.signature(MambaModel).parameters) | {"make_vocab_size_divisible_by", "seq_length",
                                                                   "max_position_embeddings", "activation_func"}
    for name in [*SMALL, *BIG]:  # every preset and published shape
        config = (PRESETS.get(name) or SHAPES[name])()
        args = megatron_model_args(config, vocab_size=VOCAB, seq_length=512)
        assert args["hybrid_override_pattern"] == config.pattern and args["num_layers"] == len(config.pattern)
        config_args = {k: v for k, v in args.items() if k not in MODEL_KWARGS}
        assert set(config_args) <= fields and MODEL_KWARGS <= mamba_model | fields
        built = transformer_config.TransformerConfig(activation_func=squared_relu, **config_args)
        assert (built.hidden_size, built.mamba_num_heads, built.mamba_num_groups, built.num_query_groups, built.num_moe_experts) == (
            config.hidden_size, config.mamba_num_heads, config.mamba_groups, config.num_key_value_heads, config.moe_num_experts or None)
    for recipe in ("bf16", "fp8", "nvfp4"):
        assert set(te_recipe(recipe, PrecisionConfig(), 52)["megatron"]) <= fields
    parallel = megatron_parallel_args(ParallelLayout(), PRESETS["tiny"]())
    ddp = {f.name for f in dataclasses.fields(DistributedDataParallelConfig)}
    assert set(parallel) - {"data_parallel_size"} <= fields | ddp
