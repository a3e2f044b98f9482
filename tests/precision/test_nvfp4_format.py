"""NVFP4 quantizer: E2M1 grid and rounding, packing, special values, parity with the reference."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from factory.precision import nvfp4_dequantize, nvfp4_quantize
from factory.precision.nvfp4 import E2M1_GRID, e2m1_decode, e2m1_round, pack_e2m1, unpack_e2m1
from factory.precision.reference import nvfp4_quantize_reference, round_to_grid


def grid_values(index: torch.Tensor) -> list[float]:
    return [E2M1_GRID[i] for i in index.tolist()]


def test_e2m1_grid_maps_to_itself():
    grid = torch.tensor(E2M1_GRID)
    assert grid_values(e2m1_round(grid)) == list(E2M1_GRID)
    assert [round_to_grid(v, E2M1_GRID)[0] for v in E2M1_GRID] == list(E2M1_GRID)


def test_e2m1_midpoints_round_to_even():
    midpoints = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    expected = [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0]
    assert grid_values(e2m1_round(torch.tensor(midpoints))) == expected
    assert [round_to_grid(v, E2M1_GRID)[0] for v in midpoints] == expected
    assert grid_values(e2m1_round(torch.tensor([0.26, 5.01, 6.5, 1e30]))) == [0.5, 6.0, 6.0, 6.0]


def test_quantizer_keeps_grid_values_when_the_block_max_is_6():
    # amax 6 -> block scale 448 in E4M3 -> each value divides by ~1 and lands on its own code.
    x = torch.tensor([E2M1_GRID + tuple(-v for v in E2M1_GRID)])  # [1, 16]
    q = nvfp4_quantize(x)
    assert q.block_scales.float().item() == 448.0
    codes = unpack_e2m1(q.codes)
    assert codes.tolist() == [list(range(8)) + [0] + [8 + i for i in range(1, 8)]]  # -0.0 is code 0
    torch.testing.assert_close(nvfp4_dequantize(q), x, rtol=1e-6, atol=0)


def test_packing_is_low_nibble_first():
    assert pack_e2m1(torch.tensor([1, 2], dtype=torch.uint8)).tolist() == [0x21]
    assert unpack_e2m1(torch.tensor([0x21], dtype=torch.uint8)).tolist() == [1, 2]
    # through the quantizer: 0.5 is code 1, 1.0 is code 2, 6 is code 7, -6 is code 15
    x = torch.tensor([[0.5, 1.0, 6.0, -6.0] + [0.0] * 12])
    assert nvfp4_quantize(x).codes[0, :2].tolist() == [0x21, 0xF7]
    assert e2m1_decode(torch.tensor([0x7, 0xF, 0x9], dtype=torch.uint8)).tolist() == [6.0, -6.0, -0.5]


def test_layout_shapes_and_global_scale():
    x = torch.randn(3, 5, 40, generator=torch.Generator().manual_seed(0))
    q = nvfp4_quantize(x)
    assert q.codes.shape == (15, 24) and q.codes.dtype == torch.uint8  # 40 -> padded to 48, 2 per byte
    assert q.block_scales.shape == (15, 3) and q.block_scales.dtype == torch.float8_e4m3fn
    assert q.global_scale.item() == pytest.approx(x.abs().max().item() / (6 * 448), rel=1e-6)
    assert q.block == (1, 16) and q.shape == x.shape
    w = nvfp4_quantize(torch.randn(40, 72), block_2d=True)
    assert w.block == (16, 16) and w.block_scales.shape == (3, 5) and w.codes.shape == (48, 40)
    assert nvfp4_dequantize(w).shape == (40, 72)


def test_zeros_infinities_and_nan():
    zeros = nvfp4_quantize(torch.zeros(2, 16))  # an all-zero block gets scale 1, as Model Optimizer sets it
    assert zeros.global_scale.item() == 1.0 and not zeros.codes.any() and (zeros.block_scales.float() == 1).all()
    assert not nvfp4_dequantize(zeros).any()

    x = torch.zeros(3, 16)
    x[0, :4] = torch.tensor([1.0, -3.0, math.inf, -math.inf])  # infinities saturate to +-amax (3)
    x[1, 5] = math.nan  # NaN poisons its own block, only
    x[2, :2] = torch.tensor([0.5, 2.0])
    out = nvfp4_dequantize(nvfp4_quantize(x))
    torch.testing.assert_close(out[0, :4], torch.tensor([1.0, -3.0, 3.0, -3.0]), rtol=1e-6, atol=0)
    assert out[1].isnan().all()
    assert out[[0, 2]].isfinite().all()
    torch.testing.assert_close(out[2, :2], torch.tensor([0.5, 2.0]), rtol=0.05, atol=0)  # E4M3 block scale

    tiny = nvfp4_quantize(torch.full((1, 16), 1e-44))  # amax / 2688 underflows: global scale 1, codes 0
    assert tiny.global_scale.item() == 1.0 and not nvfp4_dequantize(tiny).any()


def test_error_is_within_the_block_grid_spacing():
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    for block_2d in (False, True):
        q = nvfp4_quantize(x, block_2d=block_2d)
        err = (nvfp4_dequantize(q) - x).abs()
        bh = q.block[0]
        # half the widest E2M1 gap (2, between 4 and 6) times the block's step = its E4M3 scale x global
        step = (q.block_scales.float() * q.global_scale).repeat_interleave(bh, 0).repeat_interleave(16, 1)
        assert (err <= step[: x.shape[0], : x.shape[1]] * 1.0 + 1e-7).all()
        assert (err.norm() / x.norm()).item() < 0.13  # typical NVFP4 error on Gaussian data is ~0.1


def test_2d_blocks_make_w_and_w_transpose_quantize_alike():
    w = torch.randn(48, 80, generator=torch.Generator().manual_seed(2))
    a = nvfp4_dequantize(nvfp4_quantize(w, block_2d=True))
    b = nvfp4_dequantize(nvfp4_quantize(w.t(), block_2d=True))
    assert torch.equal(a.t(), b)
    assert not torch.equal(nvfp4_dequantize(nvfp4_quantize(w)).t(), nvfp4_dequantize(nvfp4_quantize(w.t())))


def test_stochastic_rounding_is_unbiased_and_seeded():
    # every row holds the same values: same block scale, independent draws per element
    row = torch.tensor([0.3, 0.7, 1.2, 2.6, 4.9, -3.3, 0.05] + [6.0] + [0.0] * 8)  # [16], amax 6
    x = row.repeat(4000, 1)
    rne = nvfp4_dequantize(nvfp4_quantize(x))[0]
    sr = nvfp4_dequantize(nvfp4_quantize(x, stochastic=True, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(sr.mean(0), row, atol=0.03, rtol=0)
    assert (rne - row).abs()[:7].max() > 0.09  # round-to-nearest is biased on these values
    again = nvfp4_quantize(x[:8], stochastic=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.codes, nvfp4_quantize(x, stochastic=True, generator=torch.Generator().manual_seed(0)).codes[:8])


floats = st.one_of(
    st.floats(min_value=-100, max_value=100, width=32),
    st.floats(min_value=-(2.0**-8), max_value=2.0**-8, width=32),
    st.sampled_from([0.0, math.inf, -math.inf, math.nan, 1e30, 6.0, 0.25, 1e-44]),
)


@settings(max_examples=40, deadline=None)
@given(
    st.tuples(st.integers(1, 20), st.integers(1, 40)).flatmap(
        lambda shape: st.tuples(st.just(shape), st.lists(floats, min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]))
    ),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_fast_path_matches_reference(shape_and_values, block_2d, stochastic, seed):
    shape, vals = shape_and_values
    x = torch.tensor(vals, dtype=torch.float32).reshape(shape)
    q = nvfp4_quantize(x, block_2d=block_2d, stochastic=stochastic, generator=torch.Generator().manual_seed(seed))
    uniform = None
    if stochastic:  # the same draws the fast path made: one per element of the padded matrix
        rows_p = shape[0] + (-shape[0] % q.block[0])
        uniform = torch.rand((rows_p, shape[1] + (-shape[1] % 16)), generator=torch.Generator().manual_seed(seed))
    ref = nvfp4_quantize_reference(x, block_2d=block_2d, uniform=uniform)
    assert torch.equal(q.codes, ref.codes)
    torch.testing.assert_close(q.block_scales.float(), ref.block_scales.float(), rtol=0, atol=0, equal_nan=True)
    assert torch.equal(q.global_scale, ref.global_scale)
    torch.testing.assert_close(nvfp4_dequantize(q), nvfp4_dequantize(ref), rtol=0, atol=0, equal_nan=True)


def _underflowing_blocks() -> torch.Tensor:
    """[128, 128]: one value of 100 sets the global scale (100 / 2688); every other block's amax (~6e-5) over 6 x
    that is ~3e-4, below 2^-10 (half E4M3's smallest value 2^-9), so each of those scales underflows E4M3.
    Flushing them to zero made 430 of the 9,216 bytes (codes and scales) equal Model Optimizer's."""
    w = torch.randn(128, 128, generator=torch.Generator().manual_seed(0)) * 3e-5
    w[0, 0] = 100.0
    return w


def test_matches_model_optimizer_weight_packing():
    """NVIDIA Model Optimizer's NVFP4QTensor as an outside reference (skipped when not installed)."""
    pytest.importorskip("modelopt.torch.quantization.qtensor")
    from modelopt.torch.quantization.qtensor import NVFP4QTensor

    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(3))
    packed, block_scales, global_scale = NVFP4QTensor.quantize(w, 16)
    ours = nvfp4_quantize(w)
    theirs = NVFP4QTensor.dequantize(packed, dtype=torch.float32, scale=block_scales, double_scale=global_scale, block_sizes={-1: 16})
    torch.testing.assert_close(nvfp4_dequantize(ours), theirs, rtol=1e-5, atol=1e-6)
    # bit for bit: same packed bytes (low nibble first), same E4M3 block scales, same global scale
    assert torch.equal(packed._quantized_data, ours.codes)
    assert torch.equal(block_scales.view(torch.uint8), ours.block_scales.view(torch.uint8))
    torch.testing.assert_close(global_scale.float(), ours.global_scale, rtol=1e-6, atol=0)


def test_underflowing_block_scales_clamp_as_model_optimizer_and_the_reference():
    """Block scales below E4M3's range are clamped to 2^-9, not flushed to zero: every byte (codes and scales)
    equals Model Optimizer's and the pure-Python reference's, and those blocks keep values instead of zeros."""
    w = _underflowing_blocks()
    ours = nvfp4_quantize(w)
    assert (ours.block_scales.float().flatten()[1:] == 2.0**-9).all()
    assert nvfp4_dequantize(ours)[1:].count_nonzero() > 127 * 128 // 2  # flushed, these rows would be all 0
    ref = nvfp4_quantize_reference(w)
    assert torch.equal(ours.codes, ref.codes)
    assert torch.equal(ours.block_scales.view(torch.uint8), ref.block_scales.view(torch.uint8))
    assert torch.equal(ours.global_scale, ref.global_scale)
    pytest.importorskip("modelopt.torch.quantization.qtensor")
    from modelopt.torch.quantization.qtensor import NVFP4QTensor

    packed, block_scales, global_scale = NVFP4QTensor.quantize(w.clone(), 16)
    ours_bytes = torch.cat([ours.codes.flatten(), ours.block_scales.view(torch.uint8).flatten()])
    theirs_bytes = torch.cat([packed._quantized_data.flatten(), block_scales.view(torch.uint8).flatten()])
    assert ours_bytes.numel() == 9216 and torch.equal(ours_bytes, theirs_bytes)
    assert torch.equal(ours.global_scale, global_scale.float().reshape(()))


def test_given_global_scale_matches_the_reference():
    """A static global scale (a serving engine's calibrated input scale): values above what it allows saturate."""
    x = torch.randn(6, 40, generator=torch.Generator().manual_seed(4)) * torch.logspace(-7, 1, 40)
    scale = torch.tensor(0.5 / 2688)  # amax 0.5 "calibrated", below x's largest values
    ours = nvfp4_quantize(x, global_scale=scale)
    ref = nvfp4_quantize_reference(x, global_scale=float(scale))
    assert torch.equal(ours.codes, ref.codes) and torch.equal(ours.global_scale, scale)
    assert torch.equal(ours.block_scales.view(torch.uint8), ref.block_scales.view(torch.uint8))
    assert nvfp4_dequantize(ours).abs().max().item() == pytest.approx(0.5 * 448 / 448, rel=1e-6)
