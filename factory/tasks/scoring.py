"""Score a causal LM on a set of (context, target) items with log-likelihoods, as NeMo-Skills and
lm-evaluation-harness score LAMBADA: is the greedy continuation exactly the target, and how likely is it.

    score = score_set(model, tokenizer, read_set(path), max_len=256, batch_size=8, device=torch.device("cpu"))
    score.accuracy, score.target_logprob

Each item is encoded as [eos] + context + target (context and target tokenized apart, so the target's
tokens are the same whatever precedes it; the leading EOS is the document boundary the model saw in
training, where documents are packed with EOS between them). Items are batched, padded on the right: a
causal model's outputs at real positions never see the padding after them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from factory.errors import InputError
from factory.tasks.sets import TaskItem


@dataclass(frozen=True)
class SetScore:
    """Totals over one set's items."""

    items: int
    correct: int  # items whose every target token is the argmax given the tokens before it
    target_tokens: int
    target_logprob_sum: float  # summed natural-log probability of every target token
    item_correct: tuple[bool, ...] = ()  # per item, in the order given: the greedy continuation is the target

    @property
    def accuracy(self) -> float:
        return self.correct / self.items

    @property
    def accuracy_stderr(self) -> float:
        """Standard error of the accuracy as a mean over independent items, std(ddof=1) / sqrt(n) (0 for one item)."""
        n, p = self.items, self.accuracy
        return (p * (1 - p) / (n - 1)) ** 0.5 if n > 1 else 0.0

    @property
    def target_logprob(self) -> float:
        """Mean log-probability per target token (nats; 0 is certain)."""
        return self.target_logprob_sum / self.target_tokens


def encode_item(tokenizer, item: TaskItem, max_len: int) -> tuple[list[int], int]:
    """(token ids, number of target tokens at their end), the context cut on the left to fit `max_len` ids."""
    context = tokenizer(item.context, add_special_tokens=False).input_ids
    target = tokenizer(item.target, add_special_tokens=False).input_ids
    if not target or len(target) >= max_len:
        raise InputError(f"evaluation item {item.id!r}: its target is {len(target)} tokens; it must be 1 to {max_len - 1}")
    prefix = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids = (prefix + context)[-(max_len - len(target)):] + target
    return ids, len(target)


@torch.no_grad()
def score_set(
    model: torch.nn.Module, tokenizer, items: Sequence[TaskItem], max_len: int, batch_size: int, device: torch.device
) -> SetScore:
    """Greedy-target accuracy and target log-likelihood of `items`; each sequence keeps at most `max_len` ids."""
    encoded = [encode_item(tokenizer, item, max_len) for item in items]
    # longest first, so each batch pads little and the first batch shows the peak memory
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    correct = n_tokens = 0
    logprob_sum = 0.0
    hits = [False] * len(encoded)
    for start in range(0, len(order), batch_size):
        batch = [encoded[i] for i in order[start:start + batch_size]]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, L)
        for row, (ids, _) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False).logits  # (B, L, V)
        for row, ((ids, n_target), index) in enumerate(zip(batch, order[start:start + batch_size])):
            # logits at position p predict token p + 1: the target's tokens are ids[-n:], predicted at [-n-1:-1]
            end = len(ids)
            predicted = logits[row, end - n_target - 1 : end - 1].float()  # (n, V)
            target = input_ids[row, end - n_target : end].to(device)  # (n,)
            logprobs = torch.log_softmax(predicted, dim=-1).gather(1, target[:, None])  # (n, 1)
            logprob_sum += logprobs.sum().item()
            n_tokens += n_target
            hits[index] = torch.equal(predicted.argmax(dim=-1), target)
            correct += int(hits[index])
    return SetScore(items=len(items), correct=correct, target_tokens=n_tokens, target_logprob_sum=logprob_sum,
                    item_correct=tuple(hits))
