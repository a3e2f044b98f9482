"""Scoring by log-likelihood, encoded and computed as lm-evaluation-harness 0.4's HF model does, so the two agree:
the factory's multiple-choice task files (its own prompt) and lm-eval task files (theirs).

    results = loglikelihoods(model, tokenizer, [("Question: 2+2?\\nAnswer:", " 4")], max_length=2048, batch_size=8)
    acc, acc_norm, lls = score_multiple_choice(model, tokenizer, items)      # items: MultipleChoiceItem
    scored = score_lm_eval_task(model, tokenizer, read_lm_eval_task(path), batch_size=8)

Encoding follows lm-eval's `HFLM`: trailing spaces of the context move to the continuation; the pair is encoded
whole and the continuation's tokens are those after the context's own encoding, both with the tokenizer's default
special tokens (none when the text already starts with the prefix token's text); an empty context is the prefix token
alone (BOS, else EOS). Each sequence keeps its last `max_length + 1` tokens and drops the last one; sequences are
batched longest first, padded on the right with no attention mask (a causal model's outputs at real positions never
see the padding after them). A continuation's log-likelihood is the sum of its tokens' log-softmax in the logits'
dtype; it is greedy when every token is the argmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from factory.errors import InputError
from factory.stages.evaluate.metrics import Estimate, likelihood_accuracy, loglikelihood_perplexity, mean_estimate
from factory.tasks.files import MultipleChoiceItem
from factory.tasks.lm_eval_task import LmEvalTask, build_requests, doc_scores

DELIMITER = " "  # lm-eval's default target delimiter, between the factory's prompt and each option
DEFAULT_MAX_LENGTH = 2048  # lm-eval's when neither the model config nor the tokenizer names a context
TOKENIZER_INFINITY = 1000000000000000019884624838656  # transformers' model_max_length when a tokenizer sets none


def mc_context(item: MultipleChoiceItem) -> str:
    """The factory's default prompt for its own multiple-choice files: the question, then "Answer:" (options are
    scored, not shown). An lm-eval task file brings its own."""
    return f"Question: {item.question}\nAnswer:"


def _prefix_token(tokenizer) -> int:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def _encode(tokenizer, text: str) -> list[int]:
    # lm-eval's `tok_encode`: the tokenizer's own special tokens, unless the text already begins with the prefix token
    begins = text.startswith(tokenizer.decode(_prefix_token(tokenizer)))
    return tokenizer.encode(text, **({"add_special_tokens": False} if begins else {}))


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-eval's HFLM makes them."""
    if not context:
        ids = tokenizer.encode(continuation, add_special_tokens=False)
        prefix = _prefix_token(tokenizer)
        return ([prefix], ids) if prefix != ids[0] else (ids[:1], ids[1:])
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = _encode(tokenizer, context + continuation)
    context_ids = _encode(tokenizer, context)
    return context_ids, whole[len(context_ids):]


def model_max_length(model: torch.nn.Module, tokenizer) -> int:
    """The context lm-eval's HFLM gives a model: its config's n_positions, max_position_embeddings or n_ctx, else the
    tokenizer's model_max_length when set, else 2048."""
    config = getattr(model.config, "text_config", None) or model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        if getattr(config, name, None) is not None:
            return int(getattr(config, name))
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit is not None and limit != TOKENIZER_INFINITY else DEFAULT_MAX_LENGTH


def loglikelihoods(model: torch.nn.Module, tokenizer, pairs: Sequence[tuple[str, str]], max_length: int,
                   batch_size: int) -> list[tuple[float, bool]]:
    """(summed natural-log probability, greedy) of each continuation after its context, in the order given."""
    return _score(model, [encode_pair(tokenizer, context, continuation) for context, continuation in pairs],
                  max_length, batch_size)


@torch.no_grad()
def _score(model: torch.nn.Module, encoded: Sequence[tuple[list[int], list[int]]], max_length: int,
           batch_size: int) -> list[tuple[float, bool]]:
    device = next(model.parameters()).device
    for _, cont in encoded:
        if not cont or len(cont) > max_length:
            raise InputError(f"a continuation is {len(cont)} tokens; it must be 1 to {max_length}")
    inputs = [(ctx + cont)[-(max_length + 1):][:-1] for ctx, cont in encoded]
    order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))  # longest first: each batch pads little
    out: list[tuple[float, bool]] = [(0.0, False)] * len(inputs)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(inputs[i]) for i in rows)
        batch = torch.zeros((len(rows), width), dtype=torch.long)  # (B, L), padded on the right with id 0
        for r, i in enumerate(rows):
            batch[r, :len(inputs[i])] = torch.tensor(inputs[i])
        logits = model(input_ids=batch.to(device), use_cache=False).logits  # (B, L, V)
        for r, i in enumerate(rows):
            cont = encoded[i][1]
            n, end = len(cont), len(inputs[i])
            scored = F.log_softmax(logits[r, end - n:end], dim=-1)  # (n, V): the positions that predict the continuation
            target = torch.tensor(cont, device=device)
            greedy = bool(torch.equal(scored.argmax(dim=-1), target))
            out[i] = (float(scored.gather(1, target[:, None]).sum()), greedy)
    return out


def score_multiple_choice(model: torch.nn.Module, tokenizer, items: Sequence[MultipleChoiceItem],
                          max_len: int = 2048, batch_size: int = 8) -> tuple[Estimate, Estimate, list[list[float]]]:
    """(acc, acc_norm, per-item log-likelihoods) of the factory's multiple-choice items, each option scored after
    `mc_context` with the default delimiter; sequences keep their last `max_len` tokens."""
    pairs = [(mc_context(item), DELIMITER + o) for item in items for o in item.options]
    flat = iter(ll for ll, _ in loglikelihoods(model, tokenizer, pairs, max_len, batch_size))
    lls = [[next(flat) for _ in item.options] for item in items]
    gold = [ord(item.answer) - ord("A") for item in items]
    acc, acc_norm = likelihood_accuracy(lls, [item.options for item in items], gold)
    return acc, acc_norm, lls


@dataclass(frozen=True)
class TaskScore:
    """An lm-eval task's metrics (each an Estimate) and one record per doc (context, continuations, results)."""

    metrics: dict[str, Estimate]
    records: list[dict[str, Any]]
    max_length: int
    truncated: int  # docs whose context lost its start to fit max_length


def score_lm_eval_task(model: torch.nn.Module, tokenizer, task: LmEvalTask, batch_size: int) -> TaskScore:
    """Score every doc of an lm-eval task as lm-eval does: its requests' log-likelihoods at the model's context (as
    lm-eval takes it), each doc's metrics, then their aggregates (perplexity: exp(-mean log-likelihood))."""
    requests = build_requests(task)
    max_length = model_max_length(model, tokenizer)
    encoded = [[encode_pair(tokenizer, r.context, c) for c in r.continuations] for r in requests]
    results = iter(_score(model, [pair for doc in encoded for pair in doc], max_length, batch_size))
    per_doc: dict[str, list[float]] = {}
    records = []
    for request in requests:
        got = [next(results) for _ in request.continuations]
        scores = doc_scores(task, request, got)
        for name, value in scores.items():
            per_doc.setdefault(name, []).append(value)
        records.append({"task": task.name, "doc_id": request.doc_id, "context": request.context,
                        "continuations": request.continuations, "loglikelihoods": [ll for ll, _ in got],
                        "greedy": [g for _, g in got], "gold": request.gold, **scores})
    truncated = sum(any(len(ctx) + len(cont) > max_length + 1 for ctx, cont in doc) for doc in encoded)
    metrics = {name: loglikelihood_perplexity(values) if name == "perplexity" else mean_estimate(values)
               for name, values in per_doc.items()}
    return TaskScore(metrics, records, max_length, truncated)
