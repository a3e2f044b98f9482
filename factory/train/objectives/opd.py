"""On-policy distillation (Thinking Machines' on-policy distillation; Nemotron 3 Ultra's MOPD with one teacher): the
student samples completions, the teacher scores the student's own tokens, and the loss is the per-token reverse KL
from the student to the teacher over the whole vocabulary, at every position the student sampled:

    loss = sum over completion positions t of KL(pi_s(. | x_<t) || pi_t(. | x_<t))
         = sum_t sum_v pi_s(v | x_<t) * (log pi_s(v | x_<t) - log pi_t(v | x_<t))

summed over the completion tokens (the trainer divides by their count). Reverse KL is mode-seeking: the student is
pushed off tokens the teacher finds unlikely, on the prefixes the student itself reaches, which is what makes it
on-policy (the teacher corrects the student's own mistakes, not a fixed corpus's). The prefixes are sampled, so their
distribution is not differentiated through (as in GKD and NeMo-RL's distillation loss): each position's KL is an exact,
dense target given its prefix. Both distributions are the models' own (temperature 1), whatever temperature the
student sampled at. When the student is the teacher the loss is exactly 0.

The teacher is frozen and not a registered submodule (as in `logit_distill`): the optimizer, checkpoints and resume
see only the student.

Batch layout (right-padded, prompt and completion contiguous):

    input_ids        (B, L) int64   prompt tokens, then completion tokens, then padding
    completion_mask  (B, L) float   1 where the token is a sampled completion token (its position takes loss)

    objective = OnPolicyDistillationObjective(student, teacher)
    out = objective(batch)          # LossOutput(sum of per-token reverse KL, completion tokens)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from factory.train.objectives.causal_lm import Batch, LossOutput


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL(softmax(student) || softmax(teacher)) over the vocabulary: logits (..., V) -> (...)."""
    s = F.log_softmax(student_logits.float(), dim=-1)
    t = F.log_softmax(teacher_logits.float(), dim=-1)
    return (s.exp() * (s - t)).sum(dim=-1)


class OnPolicyDistillationObjective(nn.Module):
    """Per-token reverse KL to a frozen teacher on the student's sampled completions (layout in the module docstring).

    Every forward adds detached sums to `stats` for logging (`pop_stats()` once per optimizer step): `kl_sum`, and
    `student_logprob_sum` / `teacher_logprob_sum`, the log-probability each model gives the sampled tokens, over
    `tokens` completion tokens."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.model = student
        teacher.eval().requires_grad_(False)
        self._teacher = (teacher,)  # a tuple hides it from parameters(), state_dict() and train()
        self.stats: dict[str, float] = {}

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def pop_stats(self) -> dict[str, float]:
        stats, self.stats = self.stats, {}
        return stats

    def label_tokens(self, batch: Batch) -> int:
        return int(batch["completion_mask"][:, 1:].sum().item())

    def forward(self, batch: Batch) -> LossOutput:
        ids = batch["input_ids"]  # (B, L)
        mask = batch["completion_mask"][:, 1:].float()  # (B, L-1): position t-1 predicts token t
        logits = self.model(input_ids=ids[:, :-1], use_cache=False).logits  # (B, L-1, V)
        with torch.no_grad():
            teacher_logits = self.teacher(input_ids=ids[:, :-1], use_cache=False).logits  # (B, L-1, V)
        kl = reverse_kl(logits, teacher_logits)  # (B, L-1)
        loss = (kl * mask).sum()
        with torch.no_grad():
            target = ids[:, 1:].unsqueeze(-1)  # (B, L-1, 1)
            student_lp = torch.log_softmax(logits.detach().float(), -1).gather(-1, target).squeeze(-1)
            teacher_lp = torch.log_softmax(teacher_logits.float(), -1).gather(-1, target).squeeze(-1)
        for key, value in (("kl_sum", loss.detach()), ("student_logprob_sum", (student_lp * mask).sum()),
                           ("teacher_logprob_sum", (teacher_lp * mask).sum()), ("tokens", mask.sum())):
            self.stats[key] = self.stats.get(key, 0.0) + float(value)
        return LossOutput(loss, int(mask.sum().item()))
