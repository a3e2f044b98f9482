"""G-Vendi's arithmetic: per-example loss gradients of the proxy, their Rademacher projection, and the score.

    features = gradient_features(examples, proxy, settings)   # (n, dim), unit rows
    gvendi_score(features)                                     # exp(H(eig(G^T G / n))), in [1, min(n, dim)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from factory.errors import InputError
from factory.gvendi.examples import Example
from factory.gvendi.proxy import Proxy
from factory.gvendi.config import ProxySettings
from factory.logs import get_logger

__all__ = ["gradient_features", "gvendi_score", "per_example_gradients", "rademacher_project"]

log = get_logger("factory.gvendi")

_PROJECTION_ROWS = 4096  # parameters per block of the random projection (fixed: the matrix depends on it)


def per_example_gradients(model: Any, examples: Sequence[Example], batch_size: int = 16) -> torch.Tensor:
    """(n, P) float32: each example's gradient of its mean completion-token loss, over every trainable parameter
    (in `named_parameters` order). `torch.func.vmap(grad(...))` a batch at a time (right-padded, the padding
    masked out: the model is causal, so trailing pads change nothing before them); a backward pass per example
    when the model's ops cannot be vmap'd."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    rows = []
    for start in range(0, len(examples), batch_size):
        ids, mask = _pad(examples[start : start + batch_size])
        try:
            rows.append(_vmap_gradients(model, names, ids, mask))
        except (RuntimeError, NotImplementedError) as e:  # an op without a batching rule
            log.info("gvendi.vmap_fallback", reason=str(e).splitlines()[0][:200])
            rows.append(_loop_gradients(model, names, ids, mask))
    if not rows:
        return torch.zeros((0, sum(p.numel() for n, p in model.named_parameters() if n in set(names))))
    return torch.cat(rows)


def _pad(batch: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(e.ids) for e in batch)
    ids = torch.zeros((len(batch), length), dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.float32)
    for row, example in enumerate(batch):
        ids[row, : len(example.ids)] = torch.tensor(example.ids)
        mask[row, : len(example.mask)] = torch.tensor(example.mask, dtype=torch.float32)
    return ids, mask


def _completion_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy of the completion targets: logits (T-1, V), ids (T,), mask (T,)."""
    weights = mask[1:]
    losses = F.cross_entropy(logits.float(), ids[1:], reduction="none")
    return (losses * weights).sum() / weights.sum().clamp_min(1.0)


def _vmap_gradients(model: Any, names: list[str], ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    params = {n: p.detach() for n, p in model.named_parameters() if n in set(names)}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss(p: dict[str, Any], x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (x[None, :-1],), {"use_cache": False}).logits[0]
        return _completion_loss(logits, x, m)

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, ids, mask)
    return torch.cat([grads[n].reshape(ids.shape[0], -1) for n in names], dim=1)


def _loop_gradients(model: Any, names: list[str], ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    params = dict(model.named_parameters())
    rows = []
    for x, m in zip(ids, mask):
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=x[None, :-1], use_cache=False).logits[0]
        _completion_loss(logits, x, m).backward()
        rows.append(torch.cat([(params[n].grad if params[n].grad is not None else torch.zeros_like(params[n])).reshape(-1)
                               for n in names]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def rademacher_project(grads: Any, dim: int, seed: int) -> torch.Tensor:
    """(n, P) -> (n, dim): grads @ R / sqrt(dim), R a (P, dim) matrix of +-1 signs drawn from `seed`.

    R is generated in blocks of rows (8 signs per random byte) and never held whole, and it depends only on
    (P, dim, seed), so two datasets measured with the same proxy share it.
    """
    grads = torch.as_tensor(grads, dtype=torch.float32)
    n, params = grads.shape
    generator = torch.Generator().manual_seed(seed)
    shifts = torch.arange(8, dtype=torch.uint8)
    out = torch.zeros((n, dim), dtype=torch.float32)
    for start in range(0, params, _PROJECTION_ROWS):
        rows = min(_PROJECTION_ROWS, params - start)
        bits = torch.randint(0, 256, (rows, (dim + 7) // 8), generator=generator, dtype=torch.uint8)
        signs = ((bits.unsqueeze(-1) >> shifts) & 1).reshape(rows, -1)[:, :dim].float().mul_(2.0).sub_(1.0)
        out.addmm_(grads[:, start : start + rows], signs)
    return out / math.sqrt(dim)


def gradient_features(examples: Sequence[Example], proxy: Proxy, settings: ProxySettings) -> torch.Tensor:
    """(n, dim) float32 unit rows: projected, L2-normalised per-example gradients. An example whose gradient is
    zero (no completion token left in its window) cannot be normalised: InputError naming it."""
    grads = per_example_gradients(proxy.model, examples, settings.batch_size)
    features = rademacher_project(grads, settings.dim, settings.seed)
    norms = features.norm(dim=1, keepdim=True)
    if len(examples) and float(norms.min()) == 0.0:
        bad = int(norms.squeeze(1).argmin())
        raise InputError(f"gvendi: example {bad} has a zero gradient (no completion tokens in its window?)")
    return features / norms if len(examples) else torch.zeros((0, settings.dim))


def gvendi_score(features: Any) -> float:
    """exp(entropy of the normalised eigenvalues of G^T G / n), G the rows of `features` L2-normalised.

    Computed in float64 from whichever of G^T G / n (d x d) and G G^T / n (n x n) is smaller: they share
    their nonzero eigenvalues. 1 when every row points the same way, n when the rows are orthogonal.
    """
    g = torch.as_tensor(features, dtype=torch.float64)
    if g.ndim != 2 or g.shape[0] == 0:
        raise ValueError(f"gvendi_score: features must be (n >= 1, d), got shape {tuple(g.shape)}")
    norms = g.norm(dim=1, keepdim=True)
    if float(norms.min()) == 0.0:
        raise ValueError(f"gvendi_score: row {int(norms.squeeze(1).argmin())} is zero and has no direction")
    g = g / norms
    n, d = g.shape
    kernel = g @ g.T if n <= d else g.T @ g
    eigenvalues = torch.linalg.eigvalsh(kernel / n).clamp_min(0.0)
    p = eigenvalues / eigenvalues.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
