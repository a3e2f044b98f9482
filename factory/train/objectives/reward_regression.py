"""Reward-model regression (SteerLM / HelpSteer): mean squared error of a `RewardModel`'s attribute scores.

A batch (samples stacked by the trainer, right-padded to one length T):

    input_ids   (B, T) int64    prompt + response tokens
    length      (B,)   int64    tokens before the padding (the pooled token is at length - 1)
    scores      (B, A) float32  target attribute scores
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from factory.model.reward_head import RewardModel
from factory.train.objectives.causal_lm import Batch, LossOutput


class RewardRegressionObjective(nn.Module):
    """Mean squared error of the predicted attribute scores, summed over samples (the trainer divides by the
    step's sample count); `model` is the `RewardModel`, so checkpoints hold backbone and head."""

    def __init__(self, model: RewardModel) -> None:
        super().__init__()
        self.model = model

    def label_tokens(self, batch: Batch) -> int:
        return int(batch["input_ids"].shape[0])

    def forward(self, batch: Batch) -> LossOutput:
        predicted = self.model(batch["input_ids"], batch["length"])  # (B, A)
        loss = F.mse_loss(predicted, batch["scores"].float(), reduction="none").mean(dim=1).sum()
        return LossOutput(loss, int(batch["input_ids"].shape[0]))
