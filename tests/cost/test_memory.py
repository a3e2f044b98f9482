"""Training memory: the plan against what autograd saves and what a real step's process grows by."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from factory.cost.layout import ParallelLayout, default_layout
from factory.cost.memory import activation_elements, autocast_activation_bytes, training_memory
from factory.cost.param_count import parameter_counts
from factory.cost.published import SHAPES
from factory.cost.shape import as_shape
from factory.model import PRESETS, build_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name,seq_len,autocast", [("tiny", 128, False), ("tiny", 64, False), ("tiny_moe", 128, False),
                                                   ("tiny", 128, True), ("small_20m", 256, True)])
def test_activation_formula_equals_the_bytes_autograd_saves(name, seq_len, autocast):
    """Per block, the formula against the storage of every tensor autograd saves in a real forward (FP32, or
    under BF16 autocast, whose casts of the weights count with the weights, not here)."""
    torch.manual_seed(0)
    cfg = PRESETS[name]()
    model = build_model(cfg, 2048)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    weight_shapes = {tuple(p.shape) for p in model.parameters()} | {tuple(p.shape)[::-1] for p in model.parameters()}
    saved: dict[int, tuple[int, int]] = {}
    where = [-1]
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_pre_hook(lambda mod, args, i=i: where.__setitem__(0, i))
    model.model.norm_f.register_forward_pre_hook(lambda mod, args: where.__setitem__(0, -1))  # the final norm's own

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and where[0] >= 0 and not (t.dtype == torch.bfloat16 and tuple(t.shape) in weight_shapes):
            saved.setdefault(ptr, (where[0], t.untyped_storage().nbytes()))
        return t

    batch = 4 if seq_len < 256 else 2
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        model(torch.randint(0, 2048, (batch, seq_len)), use_cache=False)
    per_layer = [0] * len(cfg.pattern)
    for layer, nbytes in saved.values():
        per_layer[layer] += nbytes
    shape = as_shape(cfg, 2048)
    for i, kind in enumerate(cfg.pattern):
        per_token = autocast_activation_bytes(shape, kind, seq_len) if autocast else 4 * activation_elements(shape, kind, seq_len)
        planned = per_token * batch * seq_len
        assert planned == pytest.approx(per_layer[i], rel=0.02), (i, kind)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident size from /proc")
def test_training_memory_matches_the_peak_rss_growth_of_real_steps():
    """Two real AdamW steps of the factory's trainer per preset, in a fresh process (tests/cost/measure_step.py):
    the plan's peak is within 15% of how far the process's resident memory grew."""
    runs = {"tiny": (2048, 8, 256), "small_20m": (16384, 2, 256)}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONPATH": str(ROOT)}
    args = [f"{name}:{v}:{b}:{t}" for name, (v, b, t) in runs.items()]
    out = subprocess.run([sys.executable, str(ROOT / "tests/cost/measure_step.py"), *args], env=env,
                         capture_output=True, text=True, timeout=600, check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    for name, (vocab, batch, seq_len) in runs.items():
        plan = training_memory(PRESETS[name](), seq_len=seq_len, micro_batch=batch, vocab_size=vocab)
        assert plan.total == pytest.approx(measured[name], rel=0.15), (name, plan.terms(), measured[name])
        assert plan.largest() == "activations"


def test_state_bytes_per_parameter_and_sharding():
    cfg, n = SHAPES["nemotron_h_8b"](), parameter_counts(SHAPES["nemotron_h_8b"]()).total
    megatron = training_memory(cfg, seq_len=8192, micro_batch=1, engine="megatron", precision="bf16")
    assert megatron.weights + megatron.grads + megatron.optimizer == 18 * n  # bf16 + fp32 grads + master + 2 moments
    dist_opt = training_memory(cfg, seq_len=8192, micro_batch=1, engine="megatron", precision="bf16",
                               layout=ParallelLayout(data=8, sharding="optimizer"))
    assert dist_opt.optimizer == round(12 * n / 8) and dist_opt.weights == megatron.weights
    fsdp = training_memory(cfg, seq_len=8192, micro_batch=1, layout=ParallelLayout(data=8, sharding="fsdp"))
    assert fsdp.weights + fsdp.grads + fsdp.optimizer == pytest.approx(16 * n / 8, abs=3)


def test_tensor_pipeline_and_context_parallel_split_the_step():
    cfg = SHAPES["nemotron_nano_12b_v2"]()
    one = training_memory(cfg, seq_len=8192, micro_batch=1, engine="megatron", precision="fp8")
    tp = training_memory(cfg, seq_len=8192, micro_batch=1, engine="megatron", precision="fp8", layout=ParallelLayout(tensor=4))
    assert tp.weights == pytest.approx(one.weights / 4, rel=1e-6)
    assert tp.activations < one.activations / 3
    cp = training_memory(cfg, seq_len=8192, micro_batch=1, engine="megatron", precision="fp8", layout=ParallelLayout(context=2))
    assert cp.weights == one.weights and cp.transient == one.transient // 2
    pp = training_memory(cfg, seq_len=8192, micro_batch=1, engine="megatron", precision="fp8", layout=ParallelLayout(pipeline=2))
    # each stage holds half the blocks and one end of the model (embedding or head; equal here)
    assert pp.weights == pytest.approx(one.weights / 2, rel=1e-6)
    # a 12B FP8 step at 8k fits an 80 GB GPU only with tensor parallel and the distributed optimizer
    assert one.total_gib > 80
    sharded = training_memory(cfg, seq_len=8192, micro_batch=1, engine="megatron", precision="fp8",
                              layout=ParallelLayout(data=8, tensor=4, sharding="optimizer"))
    assert sharded.total_gib < 80


def test_recompute_and_precision_change_activations():
    cfg = SHAPES["nemotron_h_8b"]()
    full = training_memory(cfg, seq_len=8192, micro_batch=1, precision="bf16")
    again = training_memory(cfg, seq_len=8192, micro_batch=1, precision="bf16", recompute=True)
    assert again.activations < full.activations / 5
    fp32 = training_memory(cfg, seq_len=8192, micro_batch=1, precision="fp32")
    assert fp32.activations > full.activations
    nvfp4 = training_memory(cfg, seq_len=8192, micro_batch=1, precision="nvfp4", engine="megatron")
    fp8 = training_memory(cfg, seq_len=8192, micro_batch=1, precision="fp8", engine="megatron")
    assert nvfp4.activations < fp8.activations  # smaller cached weight copies


def test_default_layout_is_data_parallel_over_every_gpu():
    assert default_layout(2, 8) == ParallelLayout(data=16)
    assert default_layout(1, 0).gpus == 1


def test_bad_arguments_name_what_to_fix():
    with pytest.raises(ValueError, match="engine"):
        training_memory(PRESETS["tiny"](), seq_len=8, micro_batch=1, engine="jax")
    with pytest.raises(ValueError, match="precision"):
        training_memory(PRESETS["tiny"](), seq_len=8, micro_batch=1, precision="int8")
