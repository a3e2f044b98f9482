"""Megatron-Core on a CPU: why this module exists, and everything the CPU path needs, in one place.

megatron-core 0.16.1 builds and trains its hybrid `MambaModel` on CPU with gloo once four CUDA assumptions are met
by CPU stand-ins (measured on these machines; DESIGN.md, "Facts measured"):

1. The Mamba mixer. The stock `MambaMixer` imports Triton and mamba-ssm kernels, and mamba-ssm does not build without
   CUDA. `Mamba2Mixer` below is a pure-PyTorch Mamba-2 mixer with `MambaMixer`'s parameter names (`in_proj`,
   `conv1d`, `dt_bias`, `A_log`, `D`, `norm.weight`, `out_proj`) and its tensor-parallel layout, written in the order
   of operations of transformers' `NemotronHMamba2Mixer` (PyTorch path): with the same weights the two outputs are
   equal (tests/engines/test_megatron_cpu.py).
2. Transformer Engine. The local layer specs (`cpu_stack_spec`) take megatron-core's own column / row parallel
   linears and dot-product attention, with torch norms; the stack's final norm, which `MambaStack` hard-codes to
   Transformer Engine's `TENorm`, is a torch norm (`CpuMambaStack`). Tensor parallelism on CPU therefore runs
   without sequence parallelism (Megatron's torch norms refuse it).
3. The CUDA device and its RNG. Megatron allocates buffers on `torch.cuda.current_device()` (DDP's gradient
   buffers, attention buffers) and draws model-parallel randomness from a CUDA RNG tracker; `cpu_runtime()` points
   the first at the CPU and installs a tracker over the CPU generator, and makes `torch.cuda.synchronize` (called by
   `dist_checkpointing`) a no-op. All three are put back when the run ends: nothing leaks outside a Megatron run.
4. Megatron's optimizer and pipeline schedules (`get_megatron_optimizer`, `get_forward_backward_func`) create CUDA
   tensors unconditionally, so on CPU the optimizer step and the micro-batch loop are the factory's own
   (`factory.engines.megatron.engine`), and pipeline parallelism is refused.

Tests and laptops run this path; GPUs run the stock Transformer Engine specs and mamba-ssm kernels instead.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory
from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
from megatron.core.models.gpt.moe_module_specs import get_moe_module_spec
from megatron.core.ssm.mamba_block import MambaStack, MambaStackSubmodules
from megatron.core.ssm.mamba_layer import MambaLayer, MambaLayerSubmodules
from megatron.core.ssm.mlp_layer import MLPLayer
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.tensor_parallel import random as megatron_random
from megatron.core.transformer.attention import SelfAttention, SelfAttentionSubmodules
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.moe import moe_utils
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_layer import MoETransformerLayer, TransformerLayer, TransformerLayerSubmodules
from megatron.core.transformer.utils import ensure_metadata_has_dp_cp_group, make_sharded_tensors_for_checkpoint
from torch import nn

# transformers' NemotronHMamba2Mixer clamps the step size from below at `NemotronHConfig.time_step_min` (its default,
# which `ModelConfig.to_hf` keeps); the stock MambaMixer does not clamp. The CPU mixer follows transformers.
TIME_STEP_MIN = 1e-3


def segment_sum(x: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T, T): out[..., i, j] = x[..., j+1] + ... + x[..., i] for j < i, 0 on the diagonal, -inf
    above it (the log of the decay from position j to position i)."""
    t = x.size(-1)
    x = x[..., None].expand(*x.size(), t)
    x = x.masked_fill(~torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=-1), 0)
    x = torch.cumsum(x, dim=-2)
    return x.masked_fill(~torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=0), -torch.inf)


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor,
        chunk_size: int) -> torch.Tensor:
    """Mamba-2's state-space duality scan, chunked (state-spaces/mamba `ssd_minimal`), in float32.

        x  (b, l, h, p)  the heads' inputs          dt (b, l, h)     step sizes (softplus'd and clamped)
        A  (h,)          decay rates (negative)     B, C (b, l, g, n) input / output projections of g groups
        D  (h,)          skip weights               returns y (b, l, h, p) float32

    Chunks of `chunk_size` positions: attention-like within a chunk (1), a state per chunk (2), the recurrence
    between chunks (3), and each chunk's start state read out (4).
    """
    b, l, h, p = x.shape
    B = B.float().repeat_interleave(h // B.shape[2], dim=2, output_size=h)  # (b, l, h, n)
    C = C.float().repeat_interleave(h // C.shape[2], dim=2, output_size=h)
    x = x.float()
    pad = (chunk_size - l % chunk_size) % chunk_size
    skip = D[..., None] * F.pad(x, (0, 0, 0, 0, 0, pad))  # (b, l + pad, h, p)
    x = x * dt[..., None].float()
    A = A.float() * dt.float()  # (b, l, h)

    def chunks(t: torch.Tensor) -> torch.Tensor:  # (b, l, ...) -> (b, c, chunk, ...)
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        return t.reshape(b, -1, chunk_size, *t.shape[2:])

    x, A, B, C = chunks(x), chunks(A), chunks(B), chunks(C)
    A = A.permute(0, 3, 1, 2)  # (b, h, c, chunk)
    A_cumsum = torch.cumsum(A, dim=-1)
    L = torch.exp(segment_sum(A))  # (b, h, c, chunk, chunk)
    y_diag = torch.einsum("bclsh,bcshp->bclhp", torch.einsum("bclhn,bcshn->bclsh", C, B) * L.permute(0, 2, 3, 4, 1), x)
    decay = torch.exp(A_cumsum[:, :, :, -1:] - A_cumsum)  # (b, h, c, chunk)
    states = torch.einsum("bclhn,bclhp->bchpn", B * decay.permute(0, -2, -1, 1)[..., None], x)  # (b, c, h, p, n)
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
    decay_chunk = torch.exp(segment_sum(F.pad(A_cumsum[:, :, :, -1], (1, 0)))).transpose(1, 3)  # (b, c+1, c+1, h)
    states = torch.einsum("bzch,bzhpn->bchpn", decay_chunk, states)[:, :-1]  # each chunk's start state
    y_off = torch.einsum("bclhn,bchpn->bclhp", C, states) * torch.exp(A_cumsum).permute(0, 2, 3, 1)[..., None]
    y = (y_diag + y_off).contiguous().reshape(b, -1, h, p) + skip
    return y[:, :l]


class GatedRMSNorm(nn.Module):
    """Mamba-2's gated RMSNorm: `weight * rmsnorm(y * silu(z))` over groups of `group_size` channels, in float32
    (transformers' `NemotronHRMSNormGated`). Its weight is split over tensor-parallel ranks like the channels."""

    def __init__(self, hidden_size: int, group_size: int, eps: float, tp_group: Any) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.weight.tensor_model_parallel, self.weight.partition_dim = True, 0
        self.group_size, self.eps, self.tp_group = group_size, eps, tp_group

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = y.dtype
        y = y.float() * F.silu(z.float())
        groups = y.view(*y.shape[:-1], -1, self.group_size)
        groups = groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * groups.view(y.shape).to(dtype)

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata: dict | None = None) -> dict:
        return make_sharded_tensors_for_checkpoint(self.state_dict(prefix="", keep_vars=True), prefix, {"weight": 0},
                                                   sharded_offsets, tp_group=self.tp_group,
                                                   dp_cp_group=(metadata or {}).get("dp_cp_group"))


@dataclass
class MixerSubmodules:
    """The mixer's input and output linears (`MambaMixerSubmodules`, whose module imports Triton)."""

    in_proj: type = ColumnParallelLinear
    out_proj: type = RowParallelLinear


class Mamba2Mixer(MegatronModule):
    """A Mamba-2 mixer in pure PyTorch with `MambaMixer`'s parameters, tensor-parallel layout and checkpoint layout.

    Input and output (s, b, d_model), as every Megatron layer. Per tensor-parallel rank r of `tp`, `in_proj` (a
    column-parallel linear) produces [z_r | x_r | B_r | C_r | dt_r]: the rank's heads (`H / tp`), their inner width
    and its share of the B / C groups (`G / tp`); the convolution, the scan and the gated norm run on them alone, and
    `out_proj` (row-parallel) sums the ranks' outputs. Initialisation draws every tensor at full size from the
    default generator and keeps the rank's rows, so a model built with any `tp` holds the same weights.
    """

    def __init__(self, config: Any, submodules: MixerSubmodules, d_model: int, d_conv: int = 4,
                 chunk_size: int = 128, layer_number: int | None = None, pg_collection: Any = None,
                 pp_layer_offset: int = 0, **_: Any) -> None:
        super().__init__(config)
        self.layer_number, self.pp_layer_offset, self.chunk_size = layer_number, pp_layer_offset, chunk_size
        self.tp_group = pg_collection.tp
        tp, rank = self.tp_group.size(), self.tp_group.rank()
        self.d_state, self.headdim, self.ngroups = config.mamba_state_dim, config.mamba_head_dim, config.mamba_num_groups
        self.nheads = config.mamba_num_heads
        self.d_inner = self.nheads * self.headdim
        if self.nheads % tp or self.ngroups % tp:
            raise ValueError(f"tensor parallel size {tp} must divide the Mamba heads ({self.nheads}) and groups "
                             f"({self.ngroups})")
        self.nheads_local_tp, self.ngroups_local_tp = self.nheads // tp, self.ngroups // tp
        self.d_inner_local_tp = self.d_inner // tp
        gn = self.ngroups * self.d_state
        # full widths of in_proj's parts, and of the convolution's
        self.in_proj_parts = (self.d_inner, self.d_inner, gn, gn, self.nheads)
        self.conv_parts = (self.d_inner, gn, gn)

        self.in_proj = submodules.in_proj(
            d_model, sum(self.in_proj_parts), config=config, init_method=config.init_method, gather_output=False,
            bias=False, skip_bias_add=False, is_expert=False, tp_comm_buffer_name="fc1", tp_group=self.tp_group)
        conv_dim = sum(self.conv_parts) // tp
        # allocated without drawing (its own init would draw a local-size tensor): `_initialise` fills it
        self.conv1d = nn.utils.skip_init(nn.Conv1d, conv_dim, conv_dim, kernel_size=d_conv, groups=conv_dim,
                                         padding=d_conv - 1, bias=True, dtype=config.params_dtype)
        self.dt_bias = nn.Parameter(torch.empty(self.nheads_local_tp, dtype=config.params_dtype))
        self.A_log = nn.Parameter(torch.empty(self.nheads_local_tp, dtype=torch.float32))  # fp32, as MambaMixer
        self.D = nn.Parameter(torch.ones(self.nheads_local_tp))
        self.norm = GatedRMSNorm(self.d_inner_local_tp, self.d_inner // self.ngroups, config.layernorm_epsilon,
                                 self.tp_group)
        self.out_proj = submodules.out_proj(
            self.d_inner, d_model, config=config, init_method=config.output_layer_init_method, bias=False,
            input_is_parallel=True, skip_bias_add=True, is_expert=False, tp_comm_buffer_name="fc2",
            tp_group=self.tp_group)
        for p in (*self.conv1d.parameters(), self.dt_bias, self.A_log, self.D):
            p.tensor_model_parallel, p.partition_dim = True, 0
        if config.perform_initialization:
            self._initialise(rank, tp)

    @torch.no_grad()
    def _initialise(self, rank: int, tp: int) -> None:
        """MambaMixer's initialisation, drawn at full size and sliced to this rank."""
        full = torch.empty(sum(self.in_proj_parts), self.in_proj.weight.shape[1])
        self.config.init_method(full)
        self.in_proj.weight.copy_(local_rows(full, self.in_proj_parts, rank, tp))
        conv = nn.Conv1d(sum(self.conv_parts), sum(self.conv_parts), self.conv1d.kernel_size[0],
                         groups=sum(self.conv_parts))  # kaiming-uniform weight and bias, as nn.Conv1d draws them
        self.conv1d.weight.copy_(local_rows(conv.weight, self.conv_parts, rank, tp))
        self.conv1d.bias.copy_(local_rows(conv.bias, self.conv_parts, rank, tp))
        dt_min, dt_max = 1e-3, 1e-1  # softplus(dt_bias) uniform in log space between these, as MambaMixer
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=1e-4)
        self.dt_bias.copy_((dt + torch.log(-torch.expm1(-dt))).chunk(tp)[rank])
        self.A_log.copy_(torch.log(torch.empty(self.nheads).uniform_(1, 16)).chunk(tp)[rank])

    def forward(self, hidden_states: torch.Tensor, inference_context: Any = None, *, inference_params: Any = None,
                packed_seq_params: Any = None) -> tuple[torch.Tensor, None]:
        if inference_context is not None or inference_params is not None or packed_seq_params is not None:
            raise NotImplementedError("the CPU Mamba mixer trains on whole sequences: no inference cache or packing")
        s, b, _ = hidden_states.shape
        zxbcdt, _ = self.in_proj(hidden_states)  # (s, b, local in_proj width)
        zxbcdt = zxbcdt.transpose(0, 1)  # (b, s, .)
        d, gn, h = self.d_inner_local_tp, self.ngroups_local_tp * self.d_state, self.nheads_local_tp
        z, xbc, dt = zxbcdt.split([d, d + 2 * gn, h], dim=-1)
        xbc = F.conv1d(xbc.transpose(1, 2).to(self.conv1d.weight.dtype), self.conv1d.weight, self.conv1d.bias,
                       padding=self.conv1d.padding[0], groups=xbc.shape[-1])[..., :s]
        xbc = F.silu(xbc).to(zxbcdt.dtype).transpose(1, 2)  # (b, s, d + 2 gn)
        x, B, C = xbc.split([d, gn, gn], dim=-1)
        dt = F.softplus(dt + self.dt_bias.to(dt.dtype)).clamp(min=TIME_STEP_MIN)  # (b, s, h)
        y = ssd(x.reshape(b, s, h, self.headdim), dt, -torch.exp(self.A_log.float()),
                B.reshape(b, s, self.ngroups_local_tp, self.d_state), C.reshape(b, s, self.ngroups_local_tp, self.d_state),
                self.D, self.chunk_size)
        y = self.norm(y.reshape(b, s, d), z)
        out, bias = self.out_proj(y.to(hidden_states.dtype).transpose(0, 1).contiguous())  # (s, b, d_model)
        return out, bias

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata: dict | None = None) -> dict:
        """The stock mixer's distributed-checkpoint layout: `in_proj` saved as its parts z, x, B, C, dt and `conv1d`
        as x, B, C, each split over the tensor-parallel ranks, so a checkpoint reshards to another tensor-parallel
        size (a rank's rows of the whole matrix are not a contiguous block)."""
        metadata = ensure_metadata_has_dp_cp_group(metadata)
        groups = {"tp_group": self.tp_group, "dp_cp_group": metadata["dp_cp_group"]}
        own = {name: p for name, p in self.named_parameters(recurse=False)}
        out = make_sharded_tensors_for_checkpoint(own, prefix, {name: 0 for name in own}, sharded_offsets, **groups)
        out.update(make_sharded_tensors_for_checkpoint(self.conv1d.state_dict(keep_vars=True), f"{prefix}conv1d.",
                                                       {"weight": 0, "bias": 0}, sharded_offsets, **groups))
        for name in ("in_proj", "out_proj", "norm"):
            out.update(getattr(self, name).sharded_state_dict(f"{prefix}{name}.", sharded_offsets, metadata))
        d, gn, h = self.d_inner_local_tp, self.ngroups_local_tp * self.d_state, self.nheads_local_tp
        out[f"{prefix}in_proj.weight"] = split_parts(out[f"{prefix}in_proj.weight"], [d, d, gn, gn, h], "zxBCd")
        for name in ("conv1d.weight", "conv1d.bias"):
            out[f"{prefix}{name}"] = split_parts(out[f"{prefix}{name}"], [d, gn, gn], "xBC")
        return out


def split_parts(whole: ShardedTensor, sizes: list[int], names: str) -> ShardedTensorFactory:
    """`whole`, a sharded tensor whose local rows are parts of `sizes` stacked, saved as one sharded tensor per part
    (`KEY.z`, `KEY.x`, ...; `names` one letter each, `d` for dt) and concatenated again on load."""
    template = whole.without_data()

    def build(key: str, data: torch.Tensor, replica_id: Any, flattened_range: Any) -> list[ShardedTensor]:
        sharded = replace(template, key=key, data=data, dtype=data.dtype, replica_id=replica_id,
                          flattened_range=flattened_range)
        parts, start = [], 0
        for size, name in zip(sizes, names):
            for part in sharded.narrow(0, start, size):
                part.key = f"{key}.{'dt' if name == 'd' else name}"
                parts.append(part)
            start += size
        return parts

    return ShardedTensorFactory(whole.key, whole.data, build, torch.cat, whole.replica_id)


def local_rows(full: torch.Tensor, parts: tuple[int, ...], rank: int, tp: int) -> torch.Tensor:
    """Rank `rank`'s rows of a tensor made of `parts` stacked along dim 0 (each split over `tp` ranks)."""
    return torch.cat([part.chunk(tp)[rank] for part in full.split(list(parts))])


class RMSNorm(nn.Module):
    """RMSNorm in float32 with the weight multiplied before the cast back (transformers' `NemotronHRMSNorm`), built
    as Megatron builds a norm: `(config, hidden_size, eps)`."""

    def __init__(self, config: Any, hidden_size: int, eps: float | None = None, **_: Any) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, dtype=config.params_dtype))
        self.eps = config.layernorm_epsilon if eps is None else eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight.float() * h).to(x.dtype)


class CpuMambaStack(MambaStack):
    """`MambaStack` whose final norm is a torch `RMSNorm` (the stock stack builds Transformer Engine's)."""

    def __init__(self, config: Any, submodules: MambaStackSubmodules, *args: Any, post_layer_norm: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(config, submodules, *args, post_layer_norm=False, **kwargs)
        self.post_layer_norm = post_layer_norm
        if self.post_process and post_layer_norm:
            self.final_norm = RMSNorm(config, config.hidden_size, config.layernorm_epsilon)


def cpu_stack_spec(chunk_size: int, conv_kernel: int, num_experts: int | None = None) -> ModuleSpec:
    """The hybrid stack's layer specs from megatron-core's own modules (no Transformer Engine): the layer kinds of
    the pattern (M, *, -, E) with pre-norms kept apart from the linears (`MegatronAdapter(fused_norms=False)`)."""
    linear = MLPSubmodules(linear_fc1=ColumnParallelLinear, linear_fc2=RowParallelLinear)
    moe = get_moe_module_spec(use_te=False, num_experts=num_experts or 1, moe_grouped_gemm=False)
    return ModuleSpec(
        module=CpuMambaStack,
        submodules=MambaStackSubmodules(
            mamba_layer=ModuleSpec(module=MambaLayer, submodules=MambaLayerSubmodules(
                norm=RMSNorm,
                mixer=ModuleSpec(module=Mamba2Mixer, params={"chunk_size": chunk_size, "d_conv": conv_kernel},
                                 submodules=MixerSubmodules(in_proj=ColumnParallelLinear, out_proj=RowParallelLinear)),
                mamba_bda=get_bias_dropout_add)),
            attention_layer=ModuleSpec(module=TransformerLayer, submodules=TransformerLayerSubmodules(
                input_layernorm=RMSNorm,
                self_attention=ModuleSpec(module=SelfAttention, params={"attn_mask_type": AttnMaskType.causal},
                                          submodules=SelfAttentionSubmodules(linear_qkv=ColumnParallelLinear,
                                                                             core_attention=DotProductAttention,
                                                                             linear_proj=RowParallelLinear)),
                self_attn_bda=get_bias_dropout_add)),
            mlp_layer=ModuleSpec(module=MLPLayer, submodules=TransformerLayerSubmodules(
                pre_mlp_layernorm=RMSNorm, mlp=ModuleSpec(module=MLP, submodules=linear), mlp_bda=get_bias_dropout_add)),
            moe_layer=ModuleSpec(module=MoETransformerLayer, submodules=TransformerLayerSubmodules(
                pre_mlp_layernorm=RMSNorm, mlp=moe, mlp_bda=get_bias_dropout_add)),
        ),
    )


class CpuRNGStatesTracker(megatron_random.CudaRNGStatesTracker):
    """Megatron's RNG tracker over the CPU generator: `fork(name)` swaps the named state in for the block."""

    def add(self, name: str, seed: int) -> None:
        if seed in self.seeds_ or name in self.states_:
            raise ValueError(f"RNG state {name!r} or seed {seed} already tracked")
        self._is_initialized = True
        self.seeds_.add(seed)
        self.states_[name] = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def fork(self, name: str = megatron_random._MODEL_PARALLEL_RNG_TRACKER_NAME) -> Iterator[None]:
        if name not in self.states_:
            raise ValueError(f"RNG state {name!r} is not tracked")
        outside = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(outside)


@contextlib.contextmanager
def cpu_runtime(seed: int, tp_rank: int) -> Iterator[None]:
    """Inside: `torch.cuda.current_device()` is the CPU, `torch.cuda.synchronize()` does nothing, and Megatron's
    RNG tracker draws from CPU generators seeded as `model_parallel_cuda_manual_seed` seeds its CUDA ones. Each is
    restored on exit, error or not."""
    tracker = CpuRNGStatesTracker()
    tracker.add(megatron_random._DATA_PARALLEL_RNG_TRACKER_NAME, seed)
    tracker.add(megatron_random._MODEL_PARALLEL_RNG_TRACKER_NAME, seed + 2718 + tp_rank)
    tracker.add(megatron_random._EXPERT_PARALLEL_RNG_TRACKER_NAME, seed + 1024)
    patches = [
        (torch.cuda, "current_device", lambda: "cpu"),
        (torch.cuda, "synchronize", lambda device=None: None),
        (megatron_random, "_CUDA_RNG_STATE_TRACKER", tracker),
        (megatron_random, "_CUDA_RNG_STATE_TRACKER_INITIALIZED", True),
        # megatron-core 0.16.1 leaves this name undefined without Transformer Engine, then tests it for None (the
        # MoE router's gating linear)
        (moe_utils, "te_general_gemm", getattr(moe_utils, "te_general_gemm", None)),
    ]
    missing = object()
    saved = [(owner, name, getattr(owner, name, missing)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            if value is missing:
                delattr(owner, name)
            else:
                setattr(owner, name, value)
