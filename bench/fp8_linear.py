"""FP8 training linear against the BF16 `nn.Linear` a user would otherwise train with, side by side.

For each GEMM shape (tokens M, features in K, features out N) it times one forward + backward of
`factory.precision.Float8Linear` (E4M3 forward, E5M2 gradients, `torch._scaled_mm` on GPUs with FP8 tensor
cores) and of `nn.Linear` under BF16 autocast, on the same input, and prints milliseconds, achieved TFLOP/s
(3 GEMMs of 2*M*K*N each) and the output's relative error against an FP32 reference.

    python bench/fp8_linear.py                       # GPU: Nemotron-H 8B-sized GEMMs; CPU: small ones (emulated FP8)
    python bench/fp8_linear.py --shapes 8192x4096x4096 --iters 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from factory.precision.fp8 import native_fp8_available  # noqa: E402
from factory.precision.linear import Float8Linear  # noqa: E402

# Nemotron-H 8B: hidden 4096, MLP 21504, Mamba in_proj 4096 -> 2*8192 + 2*8*128 + 128 heads ~ 18560.
GPU_SHAPES = ["8192x4096x4096", "8192x4096x21504", "8192x21504x4096", "16384x8192x8192"]
CPU_SHAPES = ["512x256x256", "1024x512x512"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(layer: nn.Module, x: torch.Tensor, iters: int, warmup: int) -> float:
    """Median milliseconds of one forward + backward (bf16 autocast on, as the trainer runs)."""
    device = x.device
    times = []
    for i in range(warmup + iters):
        x.grad = None
        layer.zero_grad(set_to_none=True)
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            y = layer(x)
        y.float().sum().backward()
        _sync(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def measure(shape: str, device: torch.device, iters: int, warmup: int, compile: bool = False) -> dict:
    m, k, n = (int(v) for v in shape.split("x"))
    torch.manual_seed(0)
    base = nn.Linear(k, n, bias=False, device=device)  # fp32 master weights, as in training
    fp8 = Float8Linear.from_linear(base)
    x = torch.randn(m, k, device=device, requires_grad=True)
    with torch.no_grad():
        ref = x @ base.weight.t()  # fp32 reference output
        with torch.autocast(device.type, dtype=torch.bfloat16):
            err_bf16 = ((base(x).float() - ref).norm() / ref.norm()).item()
            err_fp8 = ((fp8(x).float() - ref).norm() / ref.norm()).item()
    if compile:  # as the trainer's `compile` converter does: fuses FP8 scaling and casts into few kernels
        base, fp8 = torch.compile(base, dynamic=False), torch.compile(fp8, dynamic=False)
    ms_bf16 = time_step(base, x, iters, warmup)
    ms_fp8 = time_step(fp8, x, iters, warmup)
    flops = 3 * 2 * m * k * n
    return {"shape": shape, "bf16_ms": ms_bf16, "fp8_ms": ms_fp8, "speedup": ms_bf16 / ms_fp8,
            "bf16_tflops": flops / ms_bf16 / 1e9, "fp8_tflops": flops / ms_fp8 / 1e9,
            "bf16_rel_err": err_bf16, "fp8_rel_err": err_fp8}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", help="MxKxN GEMM shapes (tokens x in x out)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile both layers (as `compile: true` in pretrain)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shapes = args.shapes or (GPU_SHAPES if device.type == "cuda" else CPU_SHAPES)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}; FP8 GEMMs {'in hardware (torch._scaled_mm)' if native_fp8_available(device) else 'emulated'}; "
          f"median of {args.iters} forward+backward steps"
          f"{', torch.compile' if args.compile else ', eager'}")
    print(f"{'M x K x N':>18} {'bf16 ms':>8} {'fp8 ms':>8} {'speedup':>7} {'bf16 TF/s':>9} {'fp8 TF/s':>9} {'bf16 err':>9} {'fp8 err':>9}")
    rows = []
    for shape in shapes:
        r = measure(shape, device, args.iters, args.warmup, args.compile)
        rows.append(r)
        print(f"{shape:>18} {r['bf16_ms']:8.3f} {r['fp8_ms']:8.3f} {r['speedup']:6.2f}x {r['bf16_tflops']:9.1f} "
              f"{r['fp8_tflops']:9.1f} {r['bf16_rel_err']:9.2e} {r['fp8_rel_err']:9.2e}")
    if args.out:
        args.out.write_text(json.dumps({"device": name, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
