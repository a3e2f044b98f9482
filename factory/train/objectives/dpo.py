"""Preference optimisation on the factory's trainer: DPO (sigmoid) and RPO (Nemotron-4 340B, NeMo-Aligner's form).

A pair is a prompt with a chosen and a rejected completion. With the policy pi, the frozen reference pi_ref
and beta, each completion y has the implicit reward

    r(y) = beta * (log pi(y | x) - log pi_ref(y | x))          (log-probabilities summed over y's tokens)

and the pair the margin  m = r(chosen) - r(rejected). The losses, per pair:

    dpo  (sigmoid, Rafailov et al.; label smoothing eps as cDPO):
         -(1 - eps) * log sigmoid(m) - eps * log sigmoid(-m)
    rpo  (reward-aware, Nemotron-4 340B): the policy's margin is matched to the pair's reward gap
         g = eta * (reward(chosen) - reward(rejected)) by a distance D(m, g):
         sq      (m - g)^2
         bwd_kl  KL(Bernoulli(sigmoid(g)) || Bernoulli(sigmoid(m)))   (the paper's D; NeMo-Aligner `rpo_bwd_kl`)
         fwd_kl  KL(Bernoulli(sigmoid(m)) || Bernoulli(sigmoid(g)))   (NeMo-Aligner `rpo_fwd_kl`)

Reference log-probabilities are computed once, before training, and stored with the pairs (`ref_*_logp`),
so the reference model is never held during training and a resumed run sees the very same numbers.

A batch (the trainer stacks samples key by key; every pair is right-padded to one length T):

    chosen_ids, rejected_ids        (B, T) int64  prompt + completion tokens, right-padded
    chosen_mask, rejected_mask      (B, T) bool   True on the completion tokens that are scored
    ref_chosen_logp, ref_rejected_logp  (B,) float32
    chosen_reward, rejected_reward  (B,) float32  (RPO only; the verifier's or reward model's score)

The objective returns the summed loss over pairs and the number of pairs, so the trainer's loss is the mean
over the step's pairs, as TRL's DPOTrainer and NeMo-Aligner average it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from factory.train.objectives.causal_lm import Batch, LossOutput

Loss = Literal["dpo", "rpo"]
Distance = Literal["sq", "bwd_kl", "fwd_kl"]


def sequence_logps(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) float32: sum over the tokens where `mask` (B, T) is True of log p(token | the tokens before it).

    Token t is predicted from position t - 1, so the first position is never scored. Right padding is safe:
    a causal model's (attention or Mamba) outputs at a position do not depend on the tokens after it.
    """
    logits = model(input_ids=input_ids[:, :-1], use_cache=False).logits.float()  # (B, T-1, V)
    targets = input_ids[:, 1:]  # (B, T-1)
    token_logps = torch.gather(F.log_softmax(logits, dim=-1), 2, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return (token_logps * mask[:, 1:].to(token_logps.dtype)).sum(dim=1)


def preference_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                    ref_rejected: torch.Tensor, *, loss: Loss = "dpo", beta: float = 0.1, label_smoothing: float = 0.0,
                    distance: Distance = "bwd_kl", eta: float = 1.0, chosen_reward: torch.Tensor | None = None,
                    rejected_reward: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) per-pair loss from sequence log-probabilities (N,) of policy and reference (see the module docstring)."""
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))  # (N,)
    if loss == "dpo":
        return -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
    if loss != "rpo":
        raise ValueError(f"loss must be 'dpo' or 'rpo', got {loss!r}")
    if chosen_reward is None or rejected_reward is None:
        raise ValueError("rpo needs chosen_reward and rejected_reward")
    gap = eta * (chosen_reward - rejected_reward).to(margin.dtype)  # (N,)
    if distance == "sq":
        return (margin - gap) ** 2
    # Bernoulli distributions (p, 1 - p) with p = sigmoid(x), in log space: log(1 - sigmoid(x)) = logsigmoid(-x)
    log_q, log_q_not = F.logsigmoid(margin), F.logsigmoid(-margin)  # the policy's
    log_p, log_p_not = F.logsigmoid(gap), F.logsigmoid(-gap)  # the target's
    if distance == "bwd_kl":  # KL(target || policy)
        return log_p.exp() * (log_p - log_q) + log_p_not.exp() * (log_p_not - log_q_not)
    if distance == "fwd_kl":  # KL(policy || target)
        return log_q.exp() * (log_q - log_p) + log_q_not.exp() * (log_q_not - log_p_not)
    raise ValueError(f"distance must be 'sq', 'bwd_kl' or 'fwd_kl', got {distance!r}")


class PreferenceObjective(nn.Module):
    """DPO or RPO on a policy (a transformers causal LM) against stored reference log-probabilities.

    Every forward adds the batch's implicit-reward margins and accuracies to `stats` (sums); `pop_stats()` returns
    and clears them (the preference stage's metrics callback, once per step).
    """

    def __init__(self, model: nn.Module, loss: Loss = "dpo", beta: float = 0.1, label_smoothing: float = 0.0,
                 distance: Distance = "bwd_kl", eta: float = 1.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.model = model
        self.loss, self.beta, self.label_smoothing, self.distance, self.eta = loss, beta, label_smoothing, distance, eta
        self.stats = self._zero_stats()

    @staticmethod
    def _zero_stats() -> dict[str, float]:
        return {"pairs": 0.0, "margin": 0.0, "correct": 0.0, "chosen_reward": 0.0, "rejected_reward": 0.0}

    def pop_stats(self) -> dict[str, float]:
        """The sums since the last call (once per optimizer step), cleared."""
        stats, self.stats = self.stats, self._zero_stats()
        return stats

    def label_tokens(self, batch: Batch) -> int:
        return int(batch["chosen_ids"].shape[0])  # the loss is averaged over pairs

    def policy_logps(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,), (B,): the policy's log-probabilities of the chosen and rejected completions, in one forward."""
        ids = _pad_cat(batch["chosen_ids"], batch["rejected_ids"])  # (2B, T)
        mask = _pad_cat(batch["chosen_mask"], batch["rejected_mask"])
        logps = sequence_logps(self.model, ids, mask)
        return logps.chunk(2)

    def forward(self, batch: Batch) -> LossOutput:
        chosen, rejected = self.policy_logps(batch)
        ref_chosen, ref_rejected = batch["ref_chosen_logp"].float(), batch["ref_rejected_logp"].float()
        per_pair = preference_loss(
            chosen, rejected, ref_chosen, ref_rejected, loss=self.loss, beta=self.beta,
            label_smoothing=self.label_smoothing, distance=self.distance, eta=self.eta,
            chosen_reward=batch.get("chosen_reward"), rejected_reward=batch.get("rejected_reward"))
        with torch.no_grad():
            r_chosen = self.beta * (chosen - ref_chosen)
            r_rejected = self.beta * (rejected - ref_rejected)
            self.stats["pairs"] += float(chosen.shape[0])
            self.stats["margin"] += float((r_chosen - r_rejected).sum())
            self.stats["correct"] += float((r_chosen > r_rejected).sum())
            self.stats["chosen_reward"] += float(r_chosen.sum())
            self.stats["rejected_reward"] += float(r_rejected.sum())
        return LossOutput(per_pair.sum(), int(chosen.shape[0]))


def _pad_cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Stack (B, Ta) and (B, Tb) into (2B, max(Ta, Tb)), right-padding with zeros (masked out)."""
    width = max(a.shape[1], b.shape[1])
    return torch.cat([F.pad(a, (0, width - a.shape[1])), F.pad(b, (0, width - b.shape[1]))])


@torch.no_grad()
def reference_logps(model: nn.Module, ids: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                    batch_size: int = 8) -> list[float]:
    """Sequence log-probabilities of 1-D token sequences (each with its completion mask) under `model`.

    Each batch is right-padded to its longest sequence; the result does not depend on the batching (up to
    float rounding), since padding follows every scored token."""
    was_training = model.training
    model.eval()
    out: list[float] = []
    for start in range(0, len(ids), batch_size):
        chunk_ids, chunk_masks = ids[start : start + batch_size], masks[start : start + batch_size]
        width = max(int(t.shape[0]) for t in chunk_ids)
        batch_ids = torch.stack([F.pad(t.long(), (0, width - t.shape[0])) for t in chunk_ids])
        batch_mask = torch.stack([F.pad(m.bool(), (0, width - m.shape[0])) for m in chunk_masks])
        out += sequence_logps(model, batch_ids, batch_mask).tolist()
    model.train(was_training)
    return out
