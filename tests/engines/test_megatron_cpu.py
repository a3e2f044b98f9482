"""The Megatron engine's CPU path (factory/engines/megatron/cpu.py): the pure-PyTorch Mamba-2 mixer against
transformers' NemotronH mixer, tensor parallelism of its layout, and CPU stand-ins that never leak out of a run."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.tensor_parallel import random as megatron_random
from megatron.core.transformer.moe import moe_utils
from megatron.core.transformer.transformer_config import TransformerConfig
from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHMamba2Mixer

from factory.engines.megatron.cpu import Mamba2Mixer, MixerSubmodules, cpu_runtime, ssd
from factory.engines.megatron.model_args import model_config_of
from factory.errors import InputError
from factory.model import PRESETS
from factory.cost.published import SHAPES


@pytest.fixture
def one_rank():
    """A one-process group with Megatron's parallel state inside the CPU runtime."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with cpu_runtime(seed=0, tp_rank=0):
            parallel_state.initialize_model_parallel(1, 1)
            yield
            parallel_state.destroy_model_parallel()
    finally:
        dist.destroy_process_group()


def mixer(preset: str, seed: int = 0) -> tuple[Mamba2Mixer, NemotronHMamba2Mixer]:
    """The CPU mixer of `preset`'s Mamba layer, and transformers' mixer holding the same weights."""
    c = PRESETS[preset]()
    config = TransformerConfig(num_layers=1, hidden_size=c.hidden_size, num_attention_heads=c.num_attention_heads,
                               mamba_num_heads=c.mamba_num_heads, mamba_head_dim=c.mamba_head_dim,
                               mamba_num_groups=c.mamba_groups, mamba_state_dim=c.ssm_state_size,
                               layernorm_epsilon=c.norm_eps, use_cpu_initialization=True)
    torch.manual_seed(seed)
    ours = Mamba2Mixer(config, MixerSubmodules(), c.hidden_size, d_conv=c.conv_kernel, chunk_size=c.chunk_size,
                       pg_collection=ProcessGroupCollection.use_mpu_process_groups())
    theirs = NemotronHMamba2Mixer(c.to_hf(64), layer_idx=0)
    # the same names (MambaMixer's); Megatron's linears add an empty `_extra_state` (Transformer Engine's FP8 metadata)
    theirs.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.endswith("_extra_state")}, strict=True)
    return ours, theirs


# seq 300 spans three 128-chunks of small_20m (the last one padded) and ten 32-chunks of tiny
@pytest.mark.parametrize("preset,length", [("tiny", 300), ("small_20m", 300), ("small_20m", 5)])
def test_mixer_equals_transformers_mixer(one_rank, preset, length):
    ours, theirs = mixer(preset)
    x = torch.randn(2, length, ours.in_proj.weight.shape[1])  # (b, s, d_model)
    want = theirs(x)
    got = ours(x.transpose(0, 1).contiguous())[0].transpose(0, 1)  # Megatron layers take (s, b, d)
    assert torch.equal(got, want)  # bit for bit: the same operations in the same order
    want.pow(2).sum().backward()
    got.pow(2).sum().backward()
    theirs_grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        q = theirs_grads[name].grad
        assert (p.grad - q).abs().max() <= 1e-5 * q.abs().max(), name  # backward: matmul layouts differ in the last bits


def test_ssd_equals_the_recurrence():
    """The chunked scan against the SSM run one position at a time: h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,
    y_t = C_t h_t + D x_t (groups shared by their heads)."""
    torch.manual_seed(0)
    b, l, h, p, g, n = 2, 37, 4, 3, 2, 5
    x, dt = torch.randn(b, l, h, p), torch.rand(b, l, h) * 0.5
    A, B, C, D = -torch.rand(h) - 0.1, torch.randn(b, l, g, n), torch.randn(b, l, g, n), torch.randn(h)
    got = ssd(x, dt, A, B, C, D, chunk_size=8)
    Bh, Ch = B.repeat_interleave(h // g, dim=2), C.repeat_interleave(h // g, dim=2)  # (b, l, h, n)
    state = torch.zeros(b, h, p, n)
    want = []
    for t in range(l):
        state = state * torch.exp(dt[:, t] * A)[..., None, None] + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None]
        want.append(torch.einsum("bhpn,bhn->bhp", state, Ch[:, t]) + D[:, None] * x[:, t])
    assert torch.allclose(got, torch.stack(want, dim=1), atol=1e-5)




def test_cpu_runtime_puts_everything_back_even_on_error():
    before = (torch.cuda.current_device, torch.cuda.synchronize, megatron_random._CUDA_RNG_STATE_TRACKER,
              megatron_random._CUDA_RNG_STATE_TRACKER_INITIALIZED, hasattr(moe_utils, "te_general_gemm"))
    with pytest.raises(RuntimeError, match="inside"):
        with cpu_runtime(seed=1, tp_rank=0):
            assert torch.cuda.current_device() == "cpu" and torch.cuda.synchronize() is None
            tracker = megatron_random.get_cuda_rng_tracker()
            outside = torch.get_rng_state()
            with tracker.fork():  # the model-parallel stream: seeded seed + 2718 + tp_rank, as Megatron seeds CUDA's
                inside = torch.rand(3)
            assert torch.equal(torch.get_rng_state(), outside)  # the default stream is untouched
            assert torch.equal(inside, torch.rand(3, generator=torch.Generator().manual_seed(1 + 2718)))
            raise RuntimeError("inside")
    after = (torch.cuda.current_device, torch.cuda.synchronize, megatron_random._CUDA_RNG_STATE_TRACKER,
             megatron_random._CUDA_RNG_STATE_TRACKER_INITIALIZED, hasattr(moe_utils, "te_general_gemm"))
    assert after == before


def test_model_config_of_inverts_to_hf():
    for name, preset in {**SHAPES, **PRESETS}.items():
        assert model_config_of(preset().to_hf(1000)) == preset(), name
    hf = PRESETS["tiny"]().to_hf(1000)
    hf.time_step_min = 0.01
    with pytest.raises(InputError, match="time_step_min=0.001.*time_step_min=0.01"):
        model_config_of(hf)
