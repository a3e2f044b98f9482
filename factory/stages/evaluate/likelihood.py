"""Multiple choice by log-likelihood, encoded as lm-evaluation-harness encodes it, so the two agree.

    lls = choice_loglikelihoods(model, tokenizer, "Question: 2+2?\\nAnswer:", [" 3", " 4"])
    acc, acc_norm = score_multiple_choice(model, tokenizer, items)   # items: MultipleChoiceItem

For each choice the continuation is `" " + option` after the context (lm-eval's default target delimiter).
Encoding follows lm-eval's `HFLM._encode_pair`: trailing spaces of the context move to the continuation,
the pair is encoded whole and the continuation's tokens are those after the context's own encoding, with no
special tokens; an empty context is the EOS token. The log-likelihood is the sum over continuation tokens;
acc takes the best sum, acc_norm the best sum per character of the option (`factory.stages.evaluate.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from factory.stages.evaluate.metrics import Estimate, likelihood_accuracy
from factory.tasks.files import MultipleChoiceItem

DELIMITER = " "


def mc_context(item: MultipleChoiceItem) -> str:
    """The context an item is scored after: its question, then "Answer:" (options are scored, not shown)."""
    return f"Question: {item.question}\nAnswer:"


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-eval's HFLM makes them."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    context_ids = tokenizer(context, add_special_tokens=False).input_ids if context else []
    continuation_ids = whole[len(context_ids):]
    if not context_ids:
        context_ids = [tokenizer.eos_token_id]
    return context_ids, continuation_ids


@torch.no_grad()
def choice_loglikelihoods(model: torch.nn.Module, tokenizer, context: str, continuations: Sequence[str],
                          max_len: int = 2048) -> list[float]:
    """Summed natural-log probability of each continuation after `context` (one forward per choice)."""
    device = next(model.parameters()).device
    out = []
    for continuation in continuations:
        context_ids, continuation_ids = encode_pair(tokenizer, context, continuation)
        ids = (context_ids + continuation_ids)[-(max_len + 1):][:-1]
        logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0].float()  # (L, V)
        n = len(continuation_ids)
        logprobs = torch.log_softmax(logits[-n:], dim=-1)  # (n, V): positions that predict the continuation
        target = torch.tensor(continuation_ids, device=device)
        out.append(logprobs.gather(1, target[:, None]).sum().item())
    return out


def score_multiple_choice(model: torch.nn.Module, tokenizer, items: Sequence[MultipleChoiceItem],
                          max_len: int = 2048) -> tuple[Estimate, Estimate, list[list[float]]]:
    """(acc, acc_norm, per-item log-likelihoods) of multiple-choice items."""
    lls = [choice_loglikelihoods(model, tokenizer, mc_context(item), [DELIMITER + o for o in item.options], max_len)
           for item in items]
    gold = [ord(item.answer) - ord("A") for item in items]
    acc, acc_norm = likelihood_accuracy(lls, [item.options for item in items], gold)
    return acc, acc_norm, lls
