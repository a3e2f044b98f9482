"""Logit distillation (Minitron): the student learns the teacher's next-token distribution.

    loss = kl_weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))  +  lm_weight * CE(student, labels)

summed over label tokens (labels != -100), as every objective on the factory's trainer returns it
(`LossOutput`): the trainer divides by the step's label-token count. Forward KL with temperature T; the T^2
factor keeps gradient magnitudes comparable across temperatures (Hinton et al.).

The teacher is frozen, in eval mode, and deliberately *not* a registered submodule: the trainer's optimizer,
its checkpoints and its resume see only the student's parameters.

    objective = DistillationObjective(student, teacher, temperature=1.0, lm_weight=0.0)
    Trainer(objective, windows, TrainConfig(...), callbacks=[CheckpointCallback(...)]).fit()
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from factory.train.objectives.causal_lm import IGNORE_INDEX, Batch, CausalLMObjective, LossOutput


def kl_distillation_sum(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum over masked tokens of T^2 * KL(p_teacher,T || p_student,T); logits (N, V), mask (N,) bool."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(dim=-1)  # (N,)
    return (kl * mask).sum() * temperature**2


class DistillationObjective(nn.Module):
    """Forward-KL logit distillation from a frozen teacher, with an optional LM loss on the labels."""

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float = 1.0, kl_weight: float = 1.0, lm_weight: float = 0.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.model = student
        teacher.eval().requires_grad_(False)
        self._teacher = (teacher,)  # a tuple hides it from parameters(), state_dict() and train()
        self.temperature, self.kl_weight, self.lm_weight = temperature, kl_weight, lm_weight

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def label_tokens(self, batch: Batch) -> int:
        return CausalLMObjective.targets(batch).ne(IGNORE_INDEX).sum().item()

    def forward(self, batch: Batch) -> LossOutput:
        """batch: `input_ids` (B, T + 1) token windows, optional `labels` (B, T + 1) masked with -100; the
        targets are shifted here, as `CausalLMObjective` does."""
        input_ids = batch["input_ids"][:, :-1]  # (B, T)
        labels = CausalLMObjective.targets(batch)  # (B, T)
        with torch.no_grad():
            teacher_logits = self.teacher(input_ids=input_ids, use_cache=False).logits  # (B, T, V)
        logits = self.model(input_ids=input_ids, use_cache=False).logits  # (B, T, V)
        mask = (labels != IGNORE_INDEX).flatten()
        loss = self.kl_weight * kl_distillation_sum(logits.flatten(0, 1), teacher_logits.flatten(0, 1), mask, self.temperature)
        if self.lm_weight:
            loss = loss + self.lm_weight * F.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            )
        return LossOutput(loss, int(mask.sum()))
