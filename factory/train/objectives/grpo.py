"""GRPO as an objective on the factory's trainer (DeepSeekMath's GRPO in the form AceReason, DAPO and
NeMo-RL run it).

A rollout batch holds G completions per prompt. Each completion's reward becomes an advantage normalised
within its group (no value model):

    A_i = (r_i - mean(r_group)) / (std(r_group) + eps)         (std: unbiased; `scale=False` drops the division)

and every completion token t of sample i gets the clipped surrogate with separate bounds (DAPO's
clip-higher: eps_high > eps_low leaves room for unlikely tokens to grow) and an optional k3 KL estimate
against a frozen reference (Schulman's unbiased, always-positive estimator):

    ratio   = exp(logp - logp_old)
    loss_it = -min(ratio * A_i, clip(ratio, 1 - eps_low, 1 + eps_high) * A_i) + beta * k3
    k3      = exp(logp_ref - logp) - (logp_ref - logp) - 1

Aggregation is token-level (DAPO): the per-token losses are summed over the step's completion tokens and
divided by their count, so a long completion weighs by its length, not 1/G of a prompt. On the trainer
that is exactly its normalisation: `forward` returns the summed loss and `label_tokens` the count.

Strictly on-policy (one gradient step per rollout batch) the batch carries no `old_logprobs`: the old
log-probabilities are the current ones detached, so the ratio is exactly 1 and the clip never binds; the
gradient is the plain policy gradient A * grad(logp). With several steps per rollout the rollout's own
log-probabilities (`old_logprobs`, computed when it was sampled) make the ratio.

Log-probabilities are those of the sampling distribution: logits divided by the sampling temperature
(each sample carries its own, since the temperature controller moves it between rollouts), as TRL and
NeMo-RL do, so ratio 1 means "same policy as sampled".

Batch layout (right-padded, prompt and completion contiguous, so a Mamba state never sees padding):

    input_ids        (B, L) int64   prompt tokens, then completion tokens, then padding
    completion_mask  (B, L) float   1 where the token is a completion token that takes loss
    advantages       (B,)   float   group-normalised advantages
    temperature      (B,)   float   the sampling temperature of each sample
    old_logprobs     (B, L) float   optional: log pi_old(token t), aligned with input_ids (position 0 unused)
    ref_logprobs     (B, L) float   optional: log pi_ref(token t), needed when kl_coef > 0
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from factory.train.objectives.causal_lm import Batch, LossOutput


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(P * G,) rewards, groups contiguous -> (P * G,) advantages: reward minus the group mean, divided by
    the group's unbiased std + eps when `scale` (Dr. GRPO argues for `scale=False`)."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.float().view(-1, group_size)  # (P, G)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(centred[:, :1])
        centred = centred / (std + eps)
    return centred.flatten()


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): exp(d) - d - 1 with d = logp_ref - logp; >= 0."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


class GRPOTerms(NamedTuple):
    loss_sum: torch.Tensor  # () summed over masked tokens
    kl_sum: torch.Tensor  # () detached, summed k3 over masked tokens (0 without a reference)
    clipped: torch.Tensor  # () detached, tokens whose ratio the clip bound
    tokens: torch.Tensor  # () masked tokens


def clipped_surrogate_sum(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                          mask: torch.Tensor, eps_low: float, eps_high: float,
                          ref_logprobs: torch.Tensor | None = None, kl_coef: float = 0.0) -> GRPOTerms:
    """The GRPO per-token loss summed over `mask`: logprobs, old_logprobs, mask (B, T); advantages (B,)."""
    adv = advantages.unsqueeze(1).to(logprobs.dtype)  # (B, 1)
    ratio = torch.exp(logprobs - old_logprobs)
    clipped_ratio = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * adv, clipped_ratio * adv)  # (B, T)
    kl = torch.zeros_like(per_token)
    if kl_coef:
        if ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs ref_logprobs in the batch")
        kl = k3_kl(logprobs, ref_logprobs)
        per_token = per_token + kl_coef * kl
    mask = mask.to(per_token.dtype)
    bound = ((ratio < 1 - eps_low) & (adv < 0)) | ((ratio > 1 + eps_high) & (adv > 0))
    return GRPOTerms((per_token * mask).sum(), (kl.detach() * mask).sum(), (bound.to(mask.dtype) * mask).sum(),
                     mask.sum())


def token_logprobs(model: nn.Module, input_ids: torch.Tensor, temperature: torch.Tensor,
                   with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, L) log pi(input_ids[t] | input_ids[:t]) at each sample's temperature, position 0 set to 0; and the
    per-token entropy of that tempered distribution (B, L) when asked."""
    logits = model(input_ids=input_ids[:, :-1], use_cache=False).logits.float()  # (B, L-1, V)
    logits = logits / temperature.view(-1, 1, 1).float()
    logp_all = torch.log_softmax(logits, dim=-1)
    picked = logp_all.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, L-1)
    logp = torch.nn.functional.pad(picked, (1, 0))
    if not with_entropy:
        return logp, None
    entropy = -(logp_all.exp() * logp_all).sum(-1)  # (B, L-1)
    return logp, torch.nn.functional.pad(entropy.detach(), (1, 0))


class GRPOObjective(nn.Module):
    """GRPO loss of `model` on rollout batches (layout in the module docstring).

    Every forward adds detached sums to `stats` (kl_sum, clipped, entropy_sum, tokens) for logging;
    `pop_stats()` returns and clears them (once per optimizer step).
    """

    def __init__(self, model: nn.Module, eps_low: float = 0.2, eps_high: float = 0.28, kl_coef: float = 0.0) -> None:
        super().__init__()
        if eps_low < 0 or eps_high < 0:
            raise ValueError(f"clip bounds must be >= 0, got eps_low={eps_low}, eps_high={eps_high}")
        self.model = model
        self.eps_low, self.eps_high, self.kl_coef = eps_low, eps_high, kl_coef
        self.stats: dict[str, float] = {}

    def pop_stats(self) -> dict[str, float]:
        stats, self.stats = self.stats, {}
        return stats

    def label_tokens(self, batch: Batch) -> int:
        return int(batch["completion_mask"].sum().item())

    def forward(self, batch: Batch) -> LossOutput:
        logp, entropy = token_logprobs(self.model, batch["input_ids"], batch["temperature"], with_entropy=True)
        old = batch.get("old_logprobs")
        old = logp.detach() if old is None else old  # strictly on-policy: ratio 1
        mask = batch["completion_mask"]
        terms = clipped_surrogate_sum(logp, old, batch["advantages"], mask, self.eps_low, self.eps_high,
                                      batch.get("ref_logprobs"), self.kl_coef)
        for key, value in (("kl_sum", terms.kl_sum.item()), ("clipped", terms.clipped.item()),
                           ("entropy_sum", float((entropy * mask).sum())), ("tokens", terms.tokens.item())):
            self.stats[key] = self.stats.get(key, 0.0) + value
        return LossOutput(terms.loss_sum, int(terms.tokens.item()))
