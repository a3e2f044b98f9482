"""FP8 quantizer: exact values, special values, parity with the elementwise reference and torch's cast."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from factory.precision import fp8_dequantize, fp8_quantize, scaled_mm
from factory.precision.fp8 import FP8_DTYPES, FP8_MAX
from factory.precision.reference import fp8_grid, fp8_quantize_reference

ONE = torch.tensor(1.0)


def values(data: torch.Tensor) -> list[float]:
    return data.float().tolist()


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_reference_grid_is_torchs_decoding_of_every_code(fmt):
    codes = torch.arange(256, dtype=torch.uint8).view(FP8_DTYPES[fmt]).float()
    finite_non_negative = sorted({v for v in codes.tolist() if math.isfinite(v) and v >= 0})
    assert list(fp8_grid(fmt)) == finite_non_negative
    assert fp8_grid(fmt)[-1] == FP8_MAX[fmt]


def test_e4m3_saturates_at_448_and_infinities_saturate():
    x = torch.tensor([447.0, 448.0, 460.0, 1e6, math.inf, -math.inf, -500.0])
    data, scale = fp8_quantize(x, "e4m3", scale=ONE)
    assert values(data) == [448.0, 448.0, 448.0, 448.0, 448.0, -448.0, -448.0]


def test_e5m2_saturates_at_57344_never_inf():
    x = torch.tensor([57344.0, 61440.0, 1e9, math.inf, -math.inf])
    data, _ = fp8_quantize(x, "e5m2", scale=ONE)
    assert values(data) == [57344.0, 57344.0, 57344.0, 57344.0, -57344.0]


def test_round_to_nearest_even_including_subnormals():
    # E4M3 near 1: spacing 1/8. 1.0625 ties between 1 (even code) and 1.125 -> 1;
    # 1.1875 ties between 1.125 and 1.25 (even) -> 1.25. Subnormals: spacing 2^-9, 2^-10 ties to 0.
    x = torch.tensor([1.0625, 1.1875, 1.07, 2.0**-10, 1.5 * 2.0**-10, -1.0625])
    data, _ = fp8_quantize(x, "e4m3", scale=ONE)
    assert values(data) == [1.0, 1.25, 1.125, 0.0, 2.0**-9, -1.0]


def test_nan_stays_nan_and_does_not_set_the_scale():
    x = torch.tensor([1.0, math.nan, -2.0, math.inf])
    data, scale = fp8_quantize(x, "e4m3")
    assert scale.item() == pytest.approx(448.0 / 2.0)  # amax over finite values only
    out = values(fp8_dequantize(data, scale))
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == -2.0 and out[3] == 2.0


def test_all_zero_tensor_has_scale_one():
    data, scale = fp8_quantize(torch.zeros(3, 4))
    assert scale.item() == 1.0 and values(data) == [[0.0] * 4] * 3
    data, scale = fp8_quantize(torch.tensor([1e-44, -1e-44]))  # max / amax overflows: capped, stays finite
    assert math.isfinite(scale.item()) and values(data) == [0.0, 0.0]


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_current_scaling_maps_amax_to_format_max_and_dequantizes_by_division(fmt):
    x = torch.randn(32, 48, generator=torch.Generator().manual_seed(0)) * 7
    data, scale = fp8_quantize(x, fmt)
    assert scale.item() == pytest.approx(FP8_MAX[fmt] / x.abs().max().item(), rel=1e-6)
    assert data.float().abs().max().item() == FP8_MAX[fmt]
    x_hat = fp8_dequantize(data, scale)
    assert torch.equal(x_hat, data.float() / scale)
    # half an ulp: 3 mantissa bits for E4M3, 2 for E5M2 (normal range)
    normal = x.abs() * scale > 2.0 ** (-6 if fmt == "e4m3" else -14)
    rel_bound = 2.0 ** -(4 if fmt == "e4m3" else 3)
    assert ((x_hat - x).abs() <= rel_bound * x.abs() + 1e-12)[normal].all()


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_reference_agrees_with_torch_cast_in_range(fmt):
    x = torch.randn(200, generator=torch.Generator().manual_seed(1)) * 3
    data, scale = fp8_quantize_reference(x, fmt)
    assert torch.equal(data.view(torch.uint8), (x * scale).to(FP8_DTYPES[fmt]).view(torch.uint8))


floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(min_value=-2.0**-10, max_value=2.0**-10, width=32),
    st.floats(min_value=-500, max_value=500, width=32),
    st.sampled_from([0.0, -0.0, 1e-44, 448.0, 464.0, 57344.0]),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=3).flatmap(
        lambda shape: st.tuples(st.just(shape), st.lists(floats, min_size=math.prod(shape), max_size=math.prod(shape)))
    ),
    st.sampled_from(["e4m3", "e5m2"]),
)
def test_fast_path_matches_reference(shape_and_values, fmt):
    shape, vals = shape_and_values
    x = torch.tensor(vals, dtype=torch.float32).reshape(shape)
    data, scale = fp8_quantize(x, fmt)
    ref_data, ref_scale = fp8_quantize_reference(x, fmt)
    assert torch.equal(scale, ref_scale)
    torch.testing.assert_close(data.float(), ref_data.float(), rtol=0, atol=0, equal_nan=True)


def test_scaled_mm_emulation_matches_torch_scaled_mm():
    gen = torch.Generator().manual_seed(2)
    a, sa = fp8_quantize(torch.randn(32, 64, generator=gen), "e5m2")
    b, sb = fp8_quantize(torch.randn(48, 64, generator=gen), "e4m3")
    emulated = scaled_mm(a, b.t(), sa.reciprocal(), sb.reciprocal(), native=False)
    native = scaled_mm(a, b.t(), sa.reciprocal(), sb.reciprocal(), native=True)  # torch._scaled_mm on CPU
    torch.testing.assert_close(emulated, native, rtol=1e-5, atol=1e-5)
    exact = fp8_dequantize(a, sa).double() @ fp8_dequantize(b, sb).double().t()
    torch.testing.assert_close(emulated.double(), exact, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_native_scaled_mm_on_gpu_matches_emulation():
    from factory.precision.fp8 import native_fp8_available

    if not native_fp8_available(torch.device("cuda")):
        pytest.skip("GPU has no FP8 tensor cores (compute capability < 8.9)")
    gen = torch.Generator(device="cuda").manual_seed(3)
    a, sa = fp8_quantize(torch.randn(64, 1024, device="cuda", generator=gen), "e4m3")
    b, sb = fp8_quantize(torch.randn(32, 1024, device="cuda", generator=gen), "e4m3")
    exact = (a.double() @ b.double().t()) / (sa.double() * sb.double())  # products of FP8 values, summed in fp64
    native = scaled_mm(a, b.t(), sa.reciprocal(), sb.reciprocal(), native=True)
    emulated = scaled_mm(a, b.t(), sa.reciprocal(), sb.reciprocal(), native=False)

    def rel(x: torch.Tensor) -> float:
        return ((x.double() - exact).norm() / exact.norm()).item()

    # The emulation sums exact products in fp32; Hopper's FP8 tensor cores accumulate with fewer mantissa
    # bits (measured on an H100: 1.3e-4 relative at K = 128 to 8192), so the kernel is bounded, not equal.
    assert rel(emulated) < 1e-6
    assert 0 < rel(native) < 5e-4
