"""Float8Linear and NVFP4Linear against the fp32 linear, and against their own quantizers."""

import pytest
import torch
from torch import nn

from factory.precision import Float8Linear, NVFP4Linear, fp8_dequantize, fp8_quantize, nvfp4_dequantize, nvfp4_quantize


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def fp32_run(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    linear = nn.Linear(128, 96)
    x = torch.randn(4, 16, 128, generator=gen, requires_grad=True)  # [B, T, K]
    grad_y = torch.randn(4, 16, 96, generator=gen)
    linear(x).backward(grad_y)
    reference = (linear(x).detach(), x.grad.clone(), linear.weight.grad.clone(), linear.bias.grad.clone())
    x.grad, linear.weight.grad, linear.bias.grad = None, None, None
    return linear, x, grad_y, reference


@pytest.mark.parametrize(
    ("convert", "tolerance"),
    [
        (lambda lin: Float8Linear.from_linear(lin, grad_format="e5m2"), (0.05, 0.08, 0.08)),
        (lambda lin: Float8Linear.from_linear(lin, grad_format="e4m3"), (0.05, 0.05, 0.05)),
        (lambda lin: NVFP4Linear.from_linear(lin), (0.2, 0.22, 0.22)),
    ],
    ids=["fp8-e5m2-grads", "fp8-e4m3-grads", "nvfp4"],
)
def test_forward_and_backward_close_to_fp32(convert, tolerance):
    linear, x, grad_y, (y_ref, gx_ref, gw_ref, gb_ref) = fp32_run()
    converted = convert(linear)
    assert converted.weight is linear.weight  # the master weight is shared, in fp32
    y = converted(x)
    y.backward(grad_y)
    errors = (relative_error(y.detach(), y_ref), relative_error(x.grad, gx_ref), relative_error(linear.weight.grad, gw_ref))
    assert all(e < t for e, t in zip(errors, tolerance)), errors
    assert all(e > 1e-4 for e in errors)  # the arithmetic really is low precision
    torch.testing.assert_close(linear.bias.grad, gb_ref)  # the bias gradient is a plain sum
    assert x.grad.dtype == linear.weight.grad.dtype == torch.float32


def test_float8_linear_is_exactly_the_gemm_of_quantized_operands():
    linear, x, grad_y, _ = fp32_run()
    y = Float8Linear.from_linear(linear, grad_format="e4m3")(x)
    y.backward(grad_y)
    x2, g2 = x.detach().reshape(-1, 128), grad_y.reshape(-1, 96)
    xq, wq, gq = (fp8_dequantize(*fp8_quantize(t)).double() for t in (x2, linear.weight.detach(), g2))
    torch.testing.assert_close(y.detach().reshape(-1, 96).double(), xq @ wq.t() + linear.bias.detach().double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.reshape(-1, 128).double(), gq @ wq, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(linear.weight.grad.double(), gq.t() @ xq, rtol=1e-5, atol=1e-5)


def test_nvfp4_linear_without_randomness_is_exactly_the_gemm_of_quantized_operands():
    linear, x, grad_y, _ = fp32_run()
    y = NVFP4Linear.from_linear(linear, stochastic_rounding=False, hadamard=False)(x)
    y.backward(grad_y)
    x2, g2, w = x.detach().reshape(-1, 128), grad_y.reshape(-1, 96), linear.weight.detach()
    q = lambda t, **kw: nvfp4_dequantize(nvfp4_quantize(t, **kw))  # noqa: E731
    torch.testing.assert_close(y.detach().reshape(-1, 96), q(x2) @ q(w, block_2d=True).t() + linear.bias.detach())
    torch.testing.assert_close(x.grad.reshape(-1, 128), q(g2) @ q(w, block_2d=True))
    torch.testing.assert_close(linear.weight.grad, q(g2.t()) @ q(x2.t()).t())


def test_nvfp4_hadamard_is_applied_to_wgrad_only():
    linear, x, grad_y, (_, gx_ref, gw_ref, _) = fp32_run()
    grads = {}
    for hadamard in (False, True):
        linear.weight.grad, x.grad = None, None
        NVFP4Linear.from_linear(linear, stochastic_rounding=False, hadamard=hadamard)(x).backward(grad_y)
        grads[hadamard] = (x.grad.clone(), linear.weight.grad.clone())
    assert torch.equal(grads[False][0], grads[True][0])  # dgrad untouched
    assert not torch.equal(grads[False][1], grads[True][1])  # wgrad operands rotated before quantization
    assert relative_error(grads[True][1], gw_ref) < 0.2


def test_nvfp4_stochastic_rounding_is_seeded():
    grads = []
    for _ in range(2):
        linear, x, grad_y, _ = fp32_run()
        NVFP4Linear.from_linear(linear, seed=7)(x).backward(grad_y)
        grads.append((x.grad.clone(), linear.weight.grad.clone()))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


@pytest.mark.parametrize("cls", [Float8Linear, NVFP4Linear])
def test_autocast_output_dtype_and_fp32_master_gradients(cls):
    linear, x, grad_y, (y_ref, _, _, _) = fp32_run()
    layer = cls.from_linear(linear)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    assert relative_error(y.detach().float(), y_ref) < 0.2
    y.float().backward(grad_y)
    assert linear.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_float8_linear_native_on_gpu_matches_cpu_emulation():
    linear, x, grad_y, _ = fp32_run()
    cpu = Float8Linear.from_linear(linear)
    y_cpu = cpu(x)
    y_cpu.backward(grad_y)
    cpu_grads = (x.grad.clone(), linear.weight.grad.clone())
    gpu_linear = nn.Linear(128, 96).cuda()
    gpu_linear.load_state_dict(linear.state_dict())
    x_gpu = x.detach().cuda().requires_grad_()
    y_gpu = Float8Linear.from_linear(gpu_linear)(x_gpu)  # 64 x 128 x 96: all /16, so torch._scaled_mm
    y_gpu.backward(grad_y.cuda())
    # Same FP8 operands on both sides; only the accumulation differs: Hopper's FP8 tensor cores keep fewer
    # mantissa bits than fp32 (relative error ~1.3e-4 against exact products, measured on an H100).
    for got, want in ((y_gpu, y_cpu), (x_gpu.grad, cpu_grads[0]), (gpu_linear.weight.grad, cpu_grads[1])):
        assert relative_error(got.detach().cpu(), want.detach()) < 5e-4
