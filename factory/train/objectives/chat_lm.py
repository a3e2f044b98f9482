"""The masked chat LM objective (SFT): next-token cross entropy on the assistant's tokens only.

A chat example is one conversation per row, right-padded to a fixed length P:

    input_ids       (P,)  the rendered conversation, then pad ids
    labels          (P,)  input_ids where the chat template's assistant mask is 1, IGNORE_INDEX (-100) elsewhere
    attention_mask  (P,)  1 on the conversation's tokens, 0 on padding

`CausalLMObjective` shifts the labels itself (position t is trained on token t + 1), so the loss counts
exactly the assistant tokens (their content and closing end-of-turn marker), never the prompt, the
template's headers or the padding. The model is causal, so right padding changes no logit of a real token.

Rows are not packed: transformers' NemotronH Mamba mixer takes no sequence boundaries, so a second
conversation in the same row would start from the first one's SSM and convolution state (leakage across
documents). One conversation per row costs padding compute and needs no state resets.

`ChatLMObjective.label_tokens` doubles as the preflight of every micro-batch the trainer draws: a batch
whose mask is empty would train on nothing, and one whose mask covers every real token would train on the
prompts too (the template or the data is broken); both fail the step with one message naming the data set.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from factory.errors import InputError
from factory.train.objectives.causal_lm import IGNORE_INDEX, Batch, CausalLMObjective

__all__ = ["ChatLMObjective", "chat_example"]


def chat_example(input_ids: Sequence[int], assistant_mask: Sequence[int], length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """One conversation as a right-padded row of `length` tokens (see the module docstring)."""
    n = len(input_ids)
    if n > length or len(assistant_mask) != n:
        raise ValueError(f"a conversation of {n} tokens (mask {len(assistant_mask)}) does not fit a row of {length}")
    ids = torch.full((length,), pad_id, dtype=torch.long)
    ids[:n] = torch.tensor(list(input_ids), dtype=torch.long)
    labels = torch.full((length,), IGNORE_INDEX, dtype=torch.long)
    mask = torch.tensor(list(assistant_mask), dtype=torch.bool)
    labels[:n][mask] = ids[:n][mask]
    attention = torch.zeros((length,), dtype=torch.long)
    attention[:n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": attention}


class ChatLMObjective(CausalLMObjective):
    """`CausalLMObjective` on chat rows, with the mask preflight; `where` names the data set in errors."""

    def __init__(self, model: torch.nn.Module, where: str) -> None:
        super().__init__(model)
        self.where = where

    def label_tokens(self, batch: Batch) -> int:
        targets = self.targets(batch)  # (B, T)
        trained = targets != IGNORE_INDEX
        n = int(trained.sum())
        if n == 0:
            raise InputError(f"{self.where}: a batch holds no assistant tokens (the assistant mask is empty); "
                             "every conversation must end with an assistant turn")
        real = batch["attention_mask"][:, 1:].bool() if "attention_mask" in batch else torch.ones_like(trained)
        if bool((trained == real).all()):
            raise InputError(f"{self.where}: the assistant mask covers every token of a batch, prompts included; "
                             "the chat template's generation markers or the data are broken")
        return n
