"""One line naming what this machine has for GPU training: torch, CUDA and the GPU, Transformer Engine,
Triton, mamba-ssm, causal-conv1d, megatron-core, torchao and nvcc (`absent` where missing).

    .venv/bin/python bench/gpu_inventory.py [--require-cuda]   # the flag: exit 2 after the line when no GPU
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def nvcc() -> str:
    if shutil.which("nvcc") is None:
        return "absent"
    out = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"release ([\d.]+)", out)
    return match.group(1) if match else "unknown"


def main() -> None:
    import torch

    cuda = torch.version.cuda or "absent"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    fields = {"torch": torch.__version__, "cuda": f"{cuda} ({gpu})",
              "transformer_engine": version("transformer_engine"), "triton": version("triton"),
              "mamba_ssm": version("mamba_ssm"), "causal_conv1d": version("causal_conv1d"),
              "megatron_core": version("megatron_core"), "torchao": version("torchao"), "nvcc": nvcc()}
    print(" ".join(f"{name}={value}" for name, value in fields.items()), flush=True)
    if "--require-cuda" in sys.argv[1:] and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --dry-run to see the plan", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
