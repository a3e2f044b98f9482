"""Minitron activation importance of a transformers `NemotronHForCausalLM`, measured on calibration windows.

Every score is a mean over the calibration tokens of an activation magnitude (Minitron, arXiv 2407.14679):

    hidden         [H]       |x| of the outputs of every norm that feeds a layer (each block's norm, norm_f), summed
    mlp[i]         [I]       |x| of the input of layer i's down_proj (one score per neuron)
    attn_heads[i]  [nh]      L2 over head_dim of the input of layer i's o_proj (one score per query head)
    mamba_heads[i] [mh]      L2 over head_dim of the x slice of layer i's in_proj output ([z | x | B,C | dt])
    mamba_dims[i]  [hd]      |x| of the same x slice, summed over heads (one score per head_dim channel)
    block_influence [L]      1 - cos(input, output) of each block, averaged over tokens (ShortGPT)
    loss_increase   [L]      LM loss with block i skipped minus the full model's loss

Ranking inside KV groups and Mamba groups happens in `factory.stages.compress.surgery`; this module only measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from factory.model.checkpoints import lm_loss


@dataclass
class Importance:
    """Per-component activation scores; dict keys are layer indices of the measured model."""

    hidden: torch.Tensor
    mlp: dict[int, torch.Tensor] = field(default_factory=dict)
    attn_heads: dict[int, torch.Tensor] = field(default_factory=dict)
    mamba_heads: dict[int, torch.Tensor] = field(default_factory=dict)
    mamba_dims: dict[int, torch.Tensor] = field(default_factory=dict)
    block_influence: torch.Tensor | None = None
    loss_increase: torch.Tensor | None = None
    base_loss: float = float("nan")


class _Accumulator:
    """Running sums of per-channel scores and the number of tokens they cover."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, int] = {}

    def add(self, key: str, value: torch.Tensor, tokens: int) -> None:
        value = value.detach().float()
        self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.tokens[key] = self.tokens.get(key, 0) + tokens

    def mean(self, key: str) -> torch.Tensor:
        return self.sums[key] / max(self.tokens[key], 1)

    # The hooks every architecture's importance pass registers (NemotronH here, dense transformers in dense.py).
    def channels_out(self, key: str):
        """Forward hook: the mean |output| of each channel (a norm's output (B, T, H): residual channels)."""
        def hook(_m, _inp, out):
            self.add(key, out.abs().sum(dim=(0, 1)), out.shape[0] * out.shape[1])
        return hook

    def channels_in(self, key: str):
        """Forward pre-hook: the mean |input| of each channel (a down projection's input (B, T, I): MLP neurons)."""
        def hook(_m, args):
            x = args[0]
            self.add(key, x.abs().sum(dim=(0, 1)), x.shape[0] * x.shape[1])
        return hook

    def heads_in(self, key: str, heads: int):
        """Forward pre-hook: the mean L2 norm of each head's slice of the input (an output projection's (B, T, nh x hd))."""
        def hook(_m, args):
            x = args[0]
            self.add(key, x.unflatten(-1, (heads, -1)).norm(dim=-1).sum(dim=(0, 1)), x.shape[0] * x.shape[1])
        return hook

    def influence(self, key: str):
        """Forward hook on a layer: its mean 1 - cos(input, output) per token (block influence)."""
        def hook(_m, args, out):
            x_in, x_out = args[0].float(), (out[0] if isinstance(out, tuple) else out).float()
            cos = F.cosine_similarity(x_in, x_out, dim=-1)  # (B, T)
            self.add(key, (1 - cos).sum(), cos.numel())
        return hook


def measure_importance(model: nn.Module, windows: torch.Tensor, batch_size: int = 8, layer_loss: bool = True) -> Importance:
    """Run `model` (a NemotronHForCausalLM) over calibration `windows` (N, T+1) and return its `Importance`.

    `layer_loss` also measures each block's LM-loss increase when skipped (one extra pass per layer).
    """
    cfg = model.config
    layers = model.model.layers
    acc = _Accumulator()
    hooks = []

    def in_proj_hook(i, inner):
        def hook(_m, _inp, out):
            # out (B, T, inner + conv_dim + mh) = [z | x | B,C | dt]; x = out[..., inner:2*inner]
            x = out[..., inner : 2 * inner].unflatten(-1, (cfg.mamba_num_heads, cfg.mamba_head_dim))  # (B, T, mh, hd)
            n = x.shape[0] * x.shape[1]
            acc.add(f"mamba_heads.{i}", x.norm(dim=-1).sum(dim=(0, 1)), n)
            acc.add(f"mamba_dims.{i}", x.abs().sum(dim=(0, 1, 2)), n)
        return hook

    for i, block in enumerate(layers):
        hooks.append(block.norm.register_forward_hook(acc.channels_out("hidden")))
        hooks.append(block.register_forward_hook(acc.influence(f"influence.{i}")))
        kind = block.block_type
        if kind == "mlp":
            hooks.append(block.mixer.down_proj.register_forward_pre_hook(acc.channels_in(f"mlp.{i}")))
        elif kind == "full_attention":
            hooks.append(block.mixer.o_proj.register_forward_pre_hook(acc.heads_in(f"attn.{i}", cfg.num_attention_heads)))
        elif kind == "linear_attention":
            hooks.append(block.mixer.in_proj.register_forward_hook(in_proj_hook(i, block.mixer.intermediate_size)))
    hooks.append(model.model.norm_f.register_forward_hook(acc.channels_out("hidden")))
    was_training = model.training
    model.eval()
    try:
        base = lm_loss(model, windows, batch_size)
    finally:
        for h in hooks:
            h.remove()

    imp = Importance(hidden=acc.mean("hidden"), base_loss=base)
    for key in acc.sums:
        name, _, idx = key.partition(".")
        target = {"mlp": imp.mlp, "attn": imp.attn_heads, "mamba_heads": imp.mamba_heads, "mamba_dims": imp.mamba_dims}.get(name)
        if target is not None:
            target[int(idx)] = acc.mean(key)
    imp.block_influence = torch.stack([acc.mean(f"influence.{i}") for i in range(len(layers))])
    if layer_loss:
        imp.loss_increase = torch.tensor([lm_loss_without(model, windows, i, batch_size) - base for i in range(len(layers))])
    model.train(was_training)
    return imp


def lm_loss_without(model: nn.Module, windows: torch.Tensor, layer: int, batch_size: int = 8) -> float:
    """LM loss with block `layer` skipped (its output replaced by its input: the residual stream passes by)."""
    handle = model.model.layers[layer].register_forward_hook(lambda _m, args, _out: args[0])
    try:
        return lm_loss(model, windows, batch_size)
    finally:
        handle.remove()
