"""AdamW with decoupled weight decay, not applied to norms, biases or embeddings."""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: matrices (and conv kernels) decay; 1-D tensors (norm gains, biases, Mamba's
    A_log / D / dt_bias) and embedding tables do not."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float, eps: float = 1e-8,
                    fused: bool = False) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, weight_decay)`; `fused` picks torch's fused kernel (CPU and CUDA) over
    the multi-tensor (foreach) one."""
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, **kwargs)
