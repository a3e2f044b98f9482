"""bench/gpu_check.sh, dry: its first line names what the machine has, the plan lists the runs, and on a
machine without CUDA a real run stops at once with a message instead of measuring CPU figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def gpu_check(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "WHEELS": str(tmp_path / "wheels")}
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_dry_run_prints_inventory_and_plan(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "mamba_ssm-2.2.4-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    run = gpu_check("--dry-run", tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    first, *plan = run.stdout.splitlines()
    fields = dict(field.split("=", 1) for field in first.split(" ") if "=" in field)
    assert {"torch", "cuda", "transformer_engine", "triton", "mamba_ssm", "nvcc"} <= set(fields)
    assert fields["torch"] == torch.__version__
    assert any("pip install --no-index" in line and "mamba_ssm-2.2.4" in line for line in plan)
    assert any("bench/train.py --compile" in line for line in plan)
    assert any("bench/megatron_parity.py --preset small_20m" in line for line in plan)
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_real_run_without_cuda_stops_with_a_message(tmp_path):
    run = gpu_check(tmp_path=tmp_path)
    assert run.returncode == 2
    assert "no CUDA device" in run.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_argument_is_refused(tmp_path):
    run = gpu_check("--steps", tmp_path=tmp_path)
    assert run.returncode == 2 and "usage" in run.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_megatron_parity_refuses_without_cuda(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "megatron_parity.py"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 2 and "needs a CUDA GPU" in run.stderr
    assert not (tmp_path / "out").exists()
