"""Training objectives as modules: a train module owns the loss, the trainer owns the loop.

Pretraining uses `CausalLMObjective`; SFT reuses it with labels masked to -100 outside answers, and
distillation wraps it with a teacher. An objective returns the summed loss and the number of label
tokens, so the trainer normalises over the whole accumulated batch (exact under masking).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


class LossOutput(NamedTuple):
    loss_sum: torch.Tensor  # () float32, summed over label tokens
    tokens: int  # label tokens that count (labels != IGNORE_INDEX)


class CausalLMObjective(nn.Module):
    """Next-token cross entropy of a causal LM (a transformers `*ForCausalLM`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """input_ids, labels: (B, T) int64, labels already shifted (labels[t] = next token of input t)."""
        logits = self.model(input_ids=input_ids, use_cache=False).logits  # (B, T, V)
        loss_sum = F.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return LossOutput(loss_sum, int((labels != IGNORE_INDEX).sum()))
