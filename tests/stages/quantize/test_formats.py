"""Weight export arithmetic: FP8 / NVFP4 tensors round-trip, Model Optimizer packing bit for bit, mixed-precision choice."""

from __future__ import annotations

import pytest
import torch

from factory.precision.nvfp4 import unpack_e2m1
from factory.stages.quantize.ptq import choose_formats, dequantize_weight, effective_bits, format_units, quantize_weight


def _weights() -> torch.Tensor:
    """[32, 64] with a dynamic range of ~1e-9..1e2: one huge block, blocks far below the max (their scales
    sit at E4M3's smallest values), an all-zero block, negative values rounding to zero."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 64, generator=g)
    w[0, :16] *= 100
    w[1, 16:32] *= 1e-6
    w[2, 32:48] *= 1e-9
    w[3, 48:64] = 0
    w[4, :16] = -1e-12
    return w


def test_fp8_export_round_trips_within_half_an_ulp():
    w = _weights()
    t = quantize_weight(w, "fp8")
    assert t["weight"].dtype == torch.float8_e4m3fn and t["weight"].shape == w.shape
    assert t["weight_scale"].shape == () and t["weight_scale"] == w.abs().max() / 448
    back = dequantize_weight(t, "fp8", w.shape)
    big = w.abs() > 2**-6 * t["weight_scale"]  # normal E4M3 range: relative error <= 2^-4
    assert ((back - w).abs()[big] <= w.abs()[big] * 2**-4).all()


def test_nvfp4_export_layout_and_round_trip():
    w = _weights()
    t = quantize_weight(w, "nvfp4")
    assert t["weight"].dtype == torch.uint8 and t["weight"].shape == (32, 32)
    assert t["weight_scale"].dtype == torch.float8_e4m3fn and t["weight_scale"].shape == (32, 4)
    assert t["weight_scale_2"].shape == () and torch.isclose(t["weight_scale_2"], w.abs().max() / 2688)
    assert t["weight_scale"][3, 3].float() == 1.0  # an all-zero block gets scale 1, as Model Optimizer sets it
    assert t["weight_scale"][2, 2].float() == 2.0**-9  # far below the max: clamped to E4M3's smallest scale
    codes = unpack_e2m1(t["weight"])
    assert (codes[4, :16] == 8).all()  # tiny negatives round to -0 (sign bit kept), as Model Optimizer packs them
    back = dequantize_weight(t, "nvfp4", w.shape)
    block_max = w[5:, :].abs().reshape(27, 4, 16).amax(-1, keepdim=True)
    err = (back[5:] - w[5:]).abs().reshape(27, 4, 16)
    # at most half the widest grid step (2 of a block scaled to 6), widened by the E4M3 rounding of the scale
    assert (err <= block_max / 6 * (1 + 2**-4)).all()


def test_nvfp4_packing_matches_model_optimizer_bit_for_bit():
    """Optional: needs nvidia-modelopt (`NVFP4QTensor.quantize` runs on CPU)."""
    nvfp4_tensor = pytest.importorskip("modelopt.torch.quantization.qtensor.nvfp4_tensor")
    for w in (_weights(), torch.randn(48, 128, generator=torch.Generator().manual_seed(3)) * torch.logspace(-8, 2, 128)):
        ref, ref_scale, ref_scale_2 = nvfp4_tensor.NVFP4QTensor.quantize(w.clone(), 16)
        ours = quantize_weight(w, "nvfp4")
        assert torch.equal(ours["weight"], ref._quantized_data)
        assert torch.equal(ours["weight_scale"].view(torch.uint8), ref_scale.view(torch.uint8))
        assert torch.equal(ours["weight_scale_2"].reshape(()), ref_scale_2.float().reshape(()))


def test_a_fused_group_shares_a_format_and_mixed_precision_respects_the_bits_budget():
    names = ["l.1.mixer.q_proj", "l.1.mixer.k_proj", "l.1.mixer.v_proj", "l.1.mixer.o_proj", "l.2.mixer.up_proj", "l.2.mixer.down_proj"]
    units = format_units(names, [names[:3]])  # q, k and v read one input: an engine fuses them
    assert sorted(map(len, units)) == [1, 1, 1, 3]
    sizes = {n: 1000 for n in names}
    # the down_proj unit is by far the most sensitive, qkv next
    sens = {i: {"l.2.mixer.down_proj": 5.0, "l.1.mixer.q_proj": 1.0}.get(u[0], 0.01) for i, u in enumerate(units)}
    formats = choose_formats(units, sizes, sens, bits_budget=5.5)
    assert formats["l.2.mixer.down_proj"] == "fp8"
    assert len({formats[n] for n in names[:3]}) == 1
    assert effective_bits(formats, sizes) <= 5.5
    assert set(choose_formats(units, sizes, sens, bits_budget=16).values()) == {"bf16"}
    with pytest.raises(ValueError, match="below NVFP4"):
        choose_formats(units, sizes, sens, bits_budget=4.0)
