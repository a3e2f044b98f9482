"""Training objectives as modules: a train module turns a batch into a loss, the trainer owns the loop
(OLMo-core's `train_batch`).

A batch is a dict of tensors. `CausalLMObjective` reads `input_ids` (B, T + 1), token windows, and an
optional `labels` (B, T + 1) aligned with them, IGNORE_INDEX (-100) where no loss is taken (SFT masks
everything but the assistant's answers); without `labels` every next token counts, as in pretraining.
The objective builds the shifted targets itself: position t is trained to predict token t + 1.

An objective returns the summed loss and the number of label tokens, so the trainer normalises over the
whole accumulated batch (exact under masking); `label_tokens(batch)` gives that count before the
forward passes, so every micro-batch's gradient is scaled by the step's total.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100

Batch = Mapping[str, torch.Tensor]


class LossOutput(NamedTuple):
    loss_sum: torch.Tensor  # () float32, summed over label tokens
    tokens: int  # label tokens that count (labels != IGNORE_INDEX)


class CausalLMObjective(nn.Module):
    """Next-token cross entropy of a causal LM (a transformers `*ForCausalLM`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @staticmethod
    def targets(batch: Batch) -> torch.Tensor:
        """(B, T) int64: the token each input position predicts, IGNORE_INDEX where `labels` masks it."""
        labels = batch["labels"] if "labels" in batch else batch["input_ids"]
        return labels[:, 1:]

    def label_tokens(self, batch: Batch) -> int:
        return int((self.targets(batch) != IGNORE_INDEX).sum())

    def forward(self, batch: Batch) -> LossOutput:
        input_ids = batch["input_ids"][:, :-1]  # (B, T)
        targets = self.targets(batch)  # (B, T)
        logits = self.model(input_ids=input_ids, use_cache=False).logits  # (B, T, V)
        loss_sum = F.cross_entropy(
            logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return LossOutput(loss_sum, int((targets != IGNORE_INDEX).sum()))
